"""GC_THRESHOLD: the server's garbage collector tuned for many long-lived connections (realtime/gc_tuning.py)."""

from __future__ import annotations

import gc
import logging

import pytest

from realtime import metrics
from realtime.gc_tuning import parse_threshold, tune_garbage_collector


@pytest.fixture
def restore_gc():
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10000,10,10", (10000, 10, 10)), (" 700, 10 ,10 ", (700, 10, 10)), ("python", None), ("Python", None)],
)
def test_thresholds_parse(text, expected):
    assert parse_threshold(text) == expected


@pytest.mark.parametrize("bad", ["", "fast", "10000", "10000,10", "10000,10,10,10", "0,10,10", "-1,10,10", "1e4,10,10"])
def test_anything_else_is_refused(bad):
    with pytest.raises(ValueError, match="three whole numbers"):
        parse_threshold(bad)


def test_tuning_freezes_what_exists_and_sets_the_thresholds(restore_gc):
    tune_garbage_collector("5000,7,9")
    assert gc.get_threshold() == (5000, 7, 9)
    assert gc.get_freeze_count() > 10_000  # everything imported so far
    assert metrics.GC_THRESHOLD.labels("0")._value.get() == 5000
    assert metrics.GC_FROZEN_OBJECTS._value.get() > 10_000


def test_python_keeps_pythons_own_collector(restore_gc):
    before = gc.get_threshold()
    tune_garbage_collector("python")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_bad_value_keeps_pythons_collector_and_says_so(restore_gc, caplog):
    before = gc.get_threshold()
    with caplog.at_level(logging.WARNING, logger="realtime.gc_tuning"):
        tune_garbage_collector("lots")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert "GC_THRESHOLD 'lots'" in caplog.text
