"""analytics: a real-time game-analytics pipeline (spouts -> broker -> bolts -> store)."""

__version__ = "0.1.0"
