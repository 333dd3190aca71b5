"""Compile to bytecode, inside the built layer, the modules the functions import.

Lambda mounts layers read-only, so Python cannot write ``__pycache__`` there and would compile
every imported module from source on every cold start (measured: ~2.5 s for a function's import
instead of ~0.7 s). Compiling the whole layer would push it past the 250 MB ceiling, so this
imports what the functions use — every ``capandex`` module, then the heavy dependencies they load
lazily (ccxt with the supported exchanges, numpy, anthropic, the Postgres driver) — and writes a
``.pyc`` for exactly those modules.

Run it with the Lambda runtime's Python (3.12): bytecode is specific to the interpreter version.
Usage: ``python3.12 precompile.py LAYER_PYTHON_DIR``.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import py_compile
import sys
from pathlib import Path

#: What the functions import lazily, on their first request (not at cold start).
LAZY_IMPORTS = (
    "ccxt", "ccxt.binance", "ccxt.okx", "ccxt.bybit", "ccxt.mexc", "ccxt.coinbase", "ccxt.kraken",
    "numpy", "anthropic", "mangum", "uvicorn", "psycopg", "sqlalchemy.dialects.postgresql.psycopg",
    "sqlalchemy.dialects.sqlite.pysqlite", "aws_lambda_powertools.logging.formatter", "optuna.samplers",
)


def import_everything(layer: Path) -> None:
    sys.path.insert(0, str(layer))
    import capandex

    for module in pkgutil.walk_packages(capandex.__path__, "capandex."):
        if not module.name.endswith(".__main__"):  # importing it would run the CLI
            importlib.import_module(module.name)
    for name in LAZY_IMPORTS:
        importlib.import_module(name)


def compile_imported(layer: Path) -> int:
    count = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py") or layer not in Path(source).resolve().parents:
            continue
        py_compile.compile(source, cfile=importlib.util.cache_from_source(source), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        count += 1
    return count


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve()
    import_everything(target)
    print(f"precompiled {compile_imported(target)} modules for Python {sys.version.split()[0]}")
