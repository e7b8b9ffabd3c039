"""The fast path's hot models: what this process notes and what others noted, the most recent kept."""

from __future__ import annotations

from extproc.fast.hot import HotModels
from tests.clock import Clock


def test_a_new_pair_tells_the_watchers_and_is_shared_once_a_known_one_only_refreshes() -> None:
    clock = Clock(100.0)
    hot, told = HotModels(clock), []
    hot.watch(lambda: told.append(True))
    hot.note("chat", "m1")
    clock.now += 1
    hot.note("chat", "m1")  # known: nothing to republish, only how recent it is to share
    assert told == [True] and hot.recent() == [("chat", "m1", False)]
    assert hot.take_noted() == {("chat", "m1", False): 101.0} and hot.take_noted() == {}


def test_what_others_noted_joins_and_the_newest_time_wins() -> None:
    hot, told = HotModels(Clock(100.0)), []
    hot.watch(lambda: told.append(True))
    hot.note("chat", "mine")
    hot.merge([(("messages", "theirs", False), 50.0), (("chat", "mine", False), 10.0)])
    assert hot.recent() == [("chat", "mine", False), ("messages", "theirs", False)]  # by when asked for
    assert len(told) == 2
    hot.merge([(("messages", "theirs", False), 60.0)])  # known already: no new route to publish
    assert len(told) == 2
    assert hot.take_noted() == {("chat", "mine", False): 100.0}  # only this process's own notes are its to share


def test_past_capacity_the_least_recently_asked_for_go() -> None:
    clock = Clock(0.0)
    hot = HotModels(clock, capacity=2)
    for model in ("a", "b"):
        clock.now += 1
        hot.note("chat", model)
    clock.now += 1
    hot.note("chat", "a")  # a is asked for again: b is now the oldest
    hot.merge([(("chat", "c", False), clock.now + 1)])
    assert hot.recent() == [("chat", "c", False), ("chat", "a", False)]  # the most recently asked for first
    hot.merge([(("chat", "old", False), 0.5)])  # older than all kept: it does not stay
    assert hot.recent() == [("chat", "c", False), ("chat", "a", False)]


def test_without_anyone_to_share_with_nothing_is_kept_for_sharing() -> None:
    hot = HotModels(Clock(1.0), shared=False)
    hot.note("chat", "m1")
    assert hot.recent() == [("chat", "m1", False)] and hot.take_noted() == {}
