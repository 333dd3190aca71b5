"""Compile every module of the built layer to bytecode, then check the layer imports and fits.

Lambda mounts layers read-only, so Python cannot write ``__pycache__`` there and compiles every
module it imports from source on every cold start (measured: ~2.5 s for a function's import
instead of ~0.7 s). Compiling only what an import walk reaches missed the modules the functions
load on a request path (36 of them once, halving Flows' first request when added), so every
``.py`` file is compiled: ~14 MB of bytecode more than the walk, and the layer still fits.

Bytecode is ``UNCHECKED_HASH``: valid whatever the files' timestamps (the zip's are not kept)
and never re-checked against the source. Run it with the Lambda runtime's Python (3.12):
bytecode is specific to the interpreter version.

Usage: ``python3.12 precompile.py LAYER_PYTHON_DIR``. Fails when a ``capandex`` module does not
import, or when the layer leaves too little of Lambda's 250 MB (function code and every layer,
unzipped) for the function code and the Web Adapter layer.
"""

from __future__ import annotations

import compileall
import importlib
import pkgutil
import py_compile
import sys
from pathlib import Path

#: bytes the layer may take: 250 MB, less the Web Adapter layer (~6 MB) and the function code
MAX_LAYER_BYTES = 240 * 1024 * 1024


def compile_everything(layer: Path) -> int:
    """Compile every ``.py`` under ``layer``; returns how many files have bytecode now."""
    compileall.compile_dir(str(layer), quiet=2, workers=0,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return sum(1 for _ in layer.rglob("*.cpython-312.pyc"))


def import_capandex(layer: Path) -> int:
    """Import every ``capandex`` module from the layer (a broken build fails here, not in Lambda)."""
    sys.path.insert(0, str(layer))
    import capandex

    names = [m.name for m in pkgutil.walk_packages(capandex.__path__, "capandex.")
             if not m.name.endswith(".__main__")]  # importing __main__ would run the CLI
    for name in names:
        importlib.import_module(name)
    return len(names)


def layer_bytes(layer: Path) -> int:
    return sum(p.stat().st_size for p in layer.rglob("*") if p.is_file())


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve()
    compiled = compile_everything(target)
    imported = import_capandex(target)
    size = layer_bytes(target)
    print(f"compiled {compiled} modules for Python {sys.version.split()[0]}; imported {imported} capandex "
          f"modules; layer {size / 1024 / 1024:.0f} MiB")
    if size > MAX_LAYER_BYTES:
        sys.exit(f"the layer is {size / 1024 / 1024:.0f} MiB, over {MAX_LAYER_BYTES / 1024 / 1024:.0f} MiB: "
                 "with the function code and the Web Adapter layer it would not fit Lambda's 250 MB")
