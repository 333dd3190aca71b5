"""What Optuna's TPE sampler costs per round, as :mod:`capandex.research.search` asks it.

    .venv/bin/python benchmarks/tpe_cost.py

Each TPE round rebuilds the sampler from every set told so far and asks a round of sets, each ask
weighing all of them: a round's CPU time is about ``asks × told × c``. This prints ``c`` for spaces
of 2, 5 and 10 parameters at 500 and 2,000 sets told; ``TPE_SECONDS_PER_ASK_AND_TOLD`` (the cost
model's constant, :func:`capandex.research.search.sampler_seconds`) rounds the largest up.
"""

from __future__ import annotations

import random
import time

import harness  # noqa: F401  (the import path: shared/ and the repository root)

from capandex.engine import compile_flow
from capandex.research.search import Told, make_search
from capandex.research.space import parse_space
from tests.capandex.engine.test_cost import indicator_flow


def main() -> None:
    rng = random.Random(0)
    for parameters, count in ((2, 298), (5, 10), (10, 3)):  # each near the 100,000 combinations a space may have
        flow = compile_flow(indicator_flow(*[("sma", {"period": 10})] * parameters)).flow
        values = list(range(2, 2 + count))
        space = parse_space({f"i{k}.period": {"values": values} for k in range(parameters)}, flow)
        for told_count in (500, 2000):
            told = [Told(i, {name: rng.choice(values) for name in space.names}, rng.random())
                    for i in range(told_count)]
            search = make_search("tpe", space, trials=told_count + 64, seed=0, told=told, rounds=told_count // 64)
            began = time.process_time()
            asked = len(search.ask(64))
            spent = time.process_time() - began
            print(f"{parameters:>2} parameters × {count:>3} values, {told_count:>5} told: {asked} asks in "
                  f"{spent:.2f} s CPU, c = {spent / (asked * told_count):.2e} s per ask and set told")


if __name__ == "__main__":
    main()
