"""The server process's garbage collector, tuned for many long-lived connections.

CPython runs a full collection, visiting every object of the process, whenever the objects that
survived into its oldest generation have grown by a quarter since the last one. Each connection
is hundreds of long-lived objects, so while players connect that happens again and again: at
Python's default thresholds (700, 10, 10) one instance spent 4.3 s of its 12 s of CPU in the
collector while 10,000 players connected (docs/benchmarks.md, "Connect path").

`GC_THRESHOLD` (default 2000,10,10) collects the young generations about three times less often,
so the oldest is looked at three times less often too; garbage cycles, which nearly all die
young, are still collected. The objects made at start (Django, the modules, the routes) are
frozen first: no collection visits them again. Higher thresholds connect faster still but leave
the cycles of closed connections to accumulate: at 10000,10,10 an instance grew by 117 MB over
eight rounds of 5,000 players connecting and leaving, at 2000,10,10 by 8 MB and then not at all,
as with Python's own (bench/churn.py). `GC_THRESHOLD=python` keeps Python's own behaviour.
"""

from __future__ import annotations

import gc
import logging

from realtime import metrics

logger = logging.getLogger(__name__)

PYTHON_DEFAULT = "python"


def parse_threshold(value: str) -> tuple[int, int, int] | None:
    """The three thresholds of `value` ("2000,10,10"), or None for "python". Raises ValueError."""
    text = str(value).strip()
    if text.lower() == PYTHON_DEFAULT:
        return None
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ValueError("must be three whole numbers greater than 0, comma separated, or python")
    first, second, third = (int(part) for part in parts)
    return first, second, third


def tune_garbage_collector(value: str) -> None:
    """Freeze what exists now and set the thresholds of `value`; called once the server has
    loaded everything and before it accepts connections. A bad value (which `manage.py check`
    reports) keeps Python's behaviour."""
    try:
        threshold = parse_threshold(value)
    except ValueError as exc:
        logger.warning("GC_THRESHOLD %r %s; keeping Python's garbage collector settings", value, exc)
        threshold = None
    if threshold is not None:
        gc.freeze()
        gc.set_threshold(*threshold)
    for generation, limit in enumerate(gc.get_threshold()):
        metrics.GC_THRESHOLD.labels(str(generation)).set(limit)
    metrics.GC_FROZEN_OBJECTS.set(gc.get_freeze_count())
