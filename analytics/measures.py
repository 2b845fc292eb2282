"""The arithmetic of reported figures, shared by the bolts that store them and the dashboard that sums them.

Pure: rates as percentages, money sums without binary float noise, money per
user, and the day offsets the retention and lifetime-value tables report. The
web layer recomputes rates over summed counts with the same functions, so a
dashboard total agrees with the stored per-server figures.
"""
from __future__ import annotations

import math
from typing import Iterable

__all__ = ["RETENTION_OFFSETS", "LTV_OFFSETS", "rate", "money_sum", "money_ratio"]

#: Days after the cohort day whose activity the retention tables report: d1..d7, d14, d30.
RETENTION_OFFSETS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 14, 30)
#: Days after the cohort day at which the cumulative lifetime value is reported.
LTV_OFFSETS: tuple[int, ...] = (1, 7, 14, 30)


def rate(part: int, whole: int) -> float:
    """`part` as a percentage of `whole`, two decimals; 0.0 when `whole` is 0.

    >>> rate(109, 214), rate(105, 214), rate(3, 0)
    (50.93, 49.07, 0.0)
    """
    if not whole:
        return 0.0
    return round(100 * part / whole, 2)


def money_sum(amounts: Iterable[float]) -> float:
    """A sum of amounts without binary float noise (0.1 + 0.2 == 0.3): exact sum, 6 decimals."""
    return round(math.fsum(amounts), 6)


def money_ratio(amount: float, n: int) -> float:
    """amount / n rounded to two decimals (a money figure per user); 0.0 when n is 0.

    >>> money_ratio(66.0, 7), money_ratio(5.0, 0)
    (9.43, 0.0)
    """
    return round(amount / n, 2) if n else 0.0
