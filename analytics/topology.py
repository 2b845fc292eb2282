"""The topology: which spouts and bolts exist, and how they are wired (placeholder, runner follows)."""
from __future__ import annotations

#: (component name, "module:Class") of the default topology. Bolt authors add their bolts here.
DEFAULT_COMPONENTS: list[tuple[str, str]] = [
    ("gamelog", "spouts.gamelog:GamelogSpout"),
    ("payment", "spouts.payment:PaymentSpout"),
    ("syncuser", "spouts.syncuser:SyncUserSpout"),
]
