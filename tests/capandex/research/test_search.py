"""Grid, random and TPE: what they choose, reproducibly, and that a rebuilt search chooses the same."""

from __future__ import annotations

from capandex.engine import validate_flow
from capandex.research.search import Told, make_search
from capandex.research.space import parse_space
from tests.capandex.engine.factories import sma_cross_flow

FLOW = validate_flow(sma_cross_flow(10, 30, ("stop_loss", 2)))
SPACE = parse_space({"fast.period": {"min": 2, "max": 40}, "slow.period": {"min": 5, "max": 60},
                     "where": ["fast.period < slow.period"]}, FLOW)


def score(params: dict) -> float:
    """A smooth objective with its maximum at fast 12, slow 40."""
    return -((params["fast.period"] - 12) ** 2) - 0.5 * (params["slow.period"] - 40) ** 2


def drive(search, size: int = 1000) -> list[dict]:
    seen, number = [], 0
    while chosen := search.ask(size):
        told = []
        for params in chosen:
            told.append(Told(number, params, score(params)))
            number += 1
        search.tell(told)
        seen += chosen
    return seen


def test_grid_is_every_combination_satisfying_the_relations_in_order():
    seen = drive(make_search("grid", SPACE, trials=0, seed=0), size=100)
    assert seen == list(SPACE.combinations())
    assert len(seen) == sum(1 for f in range(2, 41) for s in range(5, 61) if f < s)


def test_random_draws_distinct_valid_sets_reproducibly():
    first = drive(make_search("random", SPACE, trials=50, seed=7))
    assert len(first) == 50 and len({tuple(p.values()) for p in first}) == 50
    assert all(SPACE.allows(p) for p in first)
    assert drive(make_search("random", SPACE, trials=50, seed=7)) == first
    assert drive(make_search("random", SPACE, trials=50, seed=8)) != first


def test_tpe_is_seeded_never_repeats_keeps_the_relations_and_homes_in():
    first = drive(make_search("tpe", SPACE, trials=80, seed=1))
    assert drive(make_search("tpe", SPACE, trials=80, seed=1)) == first
    assert len(first) == 80 and len({tuple(p.values()) for p in first}) == 80
    assert all(SPACE.allows(p) for p in first)
    best_random = max(score(p) for p in drive(make_search("random", SPACE, trials=80, seed=1)))
    assert max(score(p) for p in first) >= best_random  # learns: at least as good as 80 random draws


def test_a_tpe_search_rebuilt_from_what_it_was_told_continues_identically():
    search = make_search("tpe", SPACE, trials=40, seed=5)
    told: list[Told] = []
    for _ in range(2):  # two rounds in one process
        chosen = search.ask(1000)
        batch = [Told(len(told) + i, p, score(p)) for i, p in enumerate(chosen)]
        search.tell(list(reversed(batch)))  # completion order must not matter
        told += batch
    rebuilt = make_search("tpe", SPACE, trials=40, seed=5, told=told, rounds=2)  # as a Lambda rebuilds it
    assert rebuilt.ask(1000) == search.ask(1000)


def test_tpe_over_a_space_smaller_than_its_trials_evaluates_everything_once():
    small = parse_space({"fast.period": {"values": [5, 10]}, "slow.period": {"values": [20, 30]}}, FLOW)
    assert sorted(tuple(p.values()) for p in drive(make_search("tpe", small, trials=50, seed=0))) == [
        (5, 20), (5, 30), (10, 20), (10, 30)]
