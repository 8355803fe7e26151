"""The worker's GC policy (streams/gcpolicy.py): live state frozen out of the scans, garbage
cycles still collected by the periodic full collection."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streams.gcpolicy import THRESHOLDS, GcPolicy


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class _Node:
    def __init__(self) -> None:
        self.other: object = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # unreachable once we return: only the cyclic GC frees it
    return weakref.ref(a)


def test_frozen_state_is_out_of_the_scans_and_cycles_wait_for_the_full_collection(
    restore_gc: None,
) -> None:
    now = [1000.0]
    policy = GcPolicy(600.0, clock=lambda: now[0])
    policy.start()
    assert gc.get_threshold() == THRESHOLDS
    state = [[i, [i]] for i in range(1000)]  # what a batch leaves alive
    garbage = _cycle()
    assert policy.tick() is None  # not due: a freeze only
    assert gc.get_freeze_count() > len(state)
    gc.collect(0), gc.collect(1), gc.collect(2)  # the scans skip frozen objects...
    assert garbage() is not None  # ... so the frozen cycle is still there
    now[0] += 599.0
    assert policy.tick() is None and garbage() is not None
    now[0] += 1.0
    took = policy.tick()  # due: unfreeze, collect everything, freeze again
    assert took is not None and took >= 0.0
    assert garbage() is None and policy.full_collections == 1
    assert gc.get_freeze_count() > len(state)  # the live state, frozen again
    assert state[999] == [999, [999]]  # live objects are untouched
    now[0] += 10.0
    assert policy.tick() is None  # the interval counts from the last full collection


def test_reference_counting_still_frees_frozen_objects(restore_gc: None) -> None:
    policy = GcPolicy(600.0)
    policy.start()
    obj = _Node()
    ref = weakref.ref(obj)
    policy.tick()
    del obj  # no cycle: freed at once, frozen or not
    assert ref() is None


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GcPolicy(0.0)


def test_the_interval_is_a_setting() -> None:
    from streams.settings import Settings, from_env

    assert Settings().gc_full_interval == 600.0
    assert from_env({"CX_GC_FULL_INTERVAL": "60"}).gc_full_interval == 60.0
