"""Cold start of every API function, measured as a user waits for it, on the ``sam build`` output.

A cold start is what the first request of a new container waits for: importing the handler's
module (Lambda's init) AND answering that request (the first invocation), each in a fresh Python
3.12 process with only the built layer and the function's folder on ``sys.path`` and bytecode
writes off (Lambda mounts both read-only). The process's own start-up is left out, as it is the
same for every function and for the baseline.

The baseline is a bare FastAPI + Mangum app (one ``GET`` answering a small JSON body) imported
from the same layer and answering its first request the same way; each function is reported as a
ratio to it. The target is ≤ 1.5×.

Each function answers one of its own ``events/`` (the environment ``sam local invoke`` gives it:
``tests/utils/sam.py``, ``CAPANDEX_ENV=local``) against a database that already exists: SQLite by
default, or with ``--postgres`` a migrated PostgreSQL database (tests/utils/postgres.py), which is
what a deployment's first request pays for (the driver's import, a connection). The events need
no exchange and no Anthropic.

With SnapStart the init runs when a version is published and a new container starts from its
snapshot: the user waits for the restore (Lambda's, not measurable here) and the first request.
The last table is that first request, after an init run as Lambda runs it before a snapshot
(``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``: ``capandex.runtime`` then imports what the first
request would).

Usage (a Python 3.12 and SAM CLI, see README "Deploy"; the driver itself runs on the project's venv)::

    PATH=/root/.pyenv/versions/3.12.1/bin:$PATH sam build      # .aws-sam/build
    .venv/bin/python benchmarks/cold_start.py --python "$(pyenv prefix 3.12)/bin/python3.12" [--runs 5] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import ROOT

from tests.utils import sam  # the driver resolves environments as SAM CLI does

#: function → the event its first request answers (auth, a database read, a JSON response)
FIRST_REQUESTS = {
    "FlowsFunction": "flows/list.json",
    "EngineFunction": "engine/backtest-status.json",
    "MarketFunction": "market/exchanges.json",
    "KeysFunction": "keys/exchange-keys-list.json",
    "AccountFunction": "account/notifications-list.json",
    "ChatFunction": "chat/get_messages.json",
}

BARE_APP = '''
from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/hello")
def hello() -> dict:
    return {"hello": "world"}


handler = Mangum(app, lifespan="off")
'''

#: runs in the fresh 3.12 process: time the import and the first invocation
CHILD = '''
import importlib, json, sys, time
clocks = (time.perf_counter, time.process_time)
started = [c() for c in clocks]
module = importlib.import_module(sys.argv[1])
imported = [c() for c in clocks]
response = module.handler(json.loads(sys.argv[2]), None)
answered = [c() for c in clocks]
assert response["statusCode"] < 500, response
print(json.dumps({"import": imported[0] - started[0], "first": answered[0] - imported[0],
                  "import_cpu": imported[1] - started[1], "first_cpu": answered[1] - imported[1],
                  "status": response["statusCode"]}))
'''


def bare_event() -> dict:
    event = json.loads((ROOT / "events" / "flows" / "list.json").read_text())
    event.update(path="/hello", resource="/hello")
    event["requestContext"].update(path="/prod/hello", resourcePath="/hello")
    return event


def runtime_packages(python: str, build: Path) -> Path:
    """What Lambda's Python runtime adds to the layer: boto3 (the layer leaves it out), installed
    once for this Python next to the build and compiled, as the runtime's own copy is."""
    target = build / "runtime-python"
    if not (target / "boto3").is_dir():
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--target", str(target), "boto3"], check=True)
    return target


def run_once(python: str, paths: list[Path], module: str, event: dict, env: dict[str, str]) -> dict:
    child_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env,
                 "PYTHONPATH": os.pathsep.join(str(p) for p in paths), "PYTHONDONTWRITEBYTECODE": "1",
                 "PYTHONNOUSERSITE": "1"}
    result = subprocess.run([python, "-S", "-c", CHILD, module, json.dumps(event)], env=child_env,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def function_env(function_id: str, data_dir: Path, database_url: str | None, *,
                 snapshot: bool = False) -> dict[str, str]:
    env_json = json.loads((ROOT / "events" / "env.json").read_text())
    env = sam.local_environment(ROOT, function_id, env_json, shell={})
    env["CAPANDEX_DATA_DIR"] = str(data_dir)
    if database_url:
        env["DATABASE_URL"] = database_url
    if snapshot:
        env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
    return env


def report(results: dict[str, list[dict]], clock: str, title: str) -> None:
    def total(run: dict) -> float:
        return run[f"import{clock}"] + run[f"first{clock}"]

    baseline = statistics.median(total(r) for r in results["bare FastAPI + Mangum"])
    runs = len(results["bare FastAPI + Mangum"])
    print(f"\n{title}, median of {runs} fresh processes")
    print(f"{'function':<24} {'import':>8} {'first request':>14} {'total':>8} {'× bare':>7}")
    for name, measured in results.items():
        imported = statistics.median(r[f"import{clock}"] for r in measured)
        first = statistics.median(r[f"first{clock}"] for r in measured)
        whole = statistics.median(total(r) for r in measured)
        print(f"{name:<24} {imported * 1000:>6.0f}ms {first * 1000:>12.0f}ms {whole * 1000:>6.0f}ms "
              f"{whole / baseline:>6.2f}×")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default="python3.12", help="a Python 3.12 (the layer's bytecode is 3.12's)")
    parser.add_argument("--build", type=Path, default=ROOT / ".aws-sam" / "build")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per function (median reported)")
    parser.add_argument("--postgres", action="store_true", help="a migrated PostgreSQL database instead of SQLite")
    args = parser.parse_args()
    database_url = None
    if args.postgres:
        from tests.utils import postgres

        server, _cluster = postgres.server_url()
        database_url = postgres.create_test_database(server)
    layer = args.build / "CapandexLayer" / "python"
    if not layer.is_dir():
        sys.exit(f"{layer} is missing: run `sam build` first")
    results: dict[str, list[dict]] = {}
    runtime = runtime_packages(args.python, args.build)
    with tempfile.TemporaryDirectory() as scratch:
        bare = Path(scratch) / "bare"
        bare.mkdir()
        (bare / "bare_app.py").write_text(BARE_APP)
        data = Path(scratch) / "data"
        for function_id, event_name in FIRST_REQUESTS.items():  # create the database once, untimed
            run_once(args.python, [layer, args.build / function_id, runtime], "app",
                     json.loads((ROOT / "events" / event_name).read_text()),
                     function_env(function_id, data, database_url))
        snapshots: dict[str, list[dict]] = {}
        for _ in range(args.runs):
            results.setdefault("bare FastAPI + Mangum", []).append(
                run_once(args.python, [layer, bare], "bare_app", bare_event(), {}))
            for function_id, event_name in FIRST_REQUESTS.items():
                event = json.loads((ROOT / "events" / event_name).read_text())
                path = [layer, args.build / function_id, runtime]
                results.setdefault(function_id, []).append(
                    run_once(args.python, path, "app", event, function_env(function_id, data, database_url)))
                snapshots.setdefault(function_id, []).append(run_once(
                    args.python, path, "app", event, function_env(function_id, data, database_url, snapshot=True)))
    print(f"database: {'PostgreSQL' if database_url else 'SQLite'}")
    report(results, "", "wall clock")
    report(results, "_cpu", "CPU time (less sensitive to other load on the machine)")
    print(f"\nSnapStart: the first request after a snapshotted init, median of {args.runs} (wall / CPU)")
    for function_id, measured in snapshots.items():
        print(f"{function_id:<24} {statistics.median(r['first'] for r in measured) * 1000:>6.0f}ms "
              f"{statistics.median(r['first_cpu'] for r in measured) * 1000:>6.0f}ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
