"""Load the function apps (``functions/<group>/app.py``) outside Lambda.

In AWS each group is deployed on its own with its folder as the code root, so its ``app.py`` is
a top-level module there. ``capandex serve`` and the tests load the same files by path, under
distinct module names, and route each request to the app that owns its path prefix, exactly as
API Gateway does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

#: Function group → path prefixes it serves behind API Gateway. A path with ``{parameters}`` is a
#: whole route, more specific than any prefix (API Gateway picks the most specific resource too).
ROUTES: dict[str, tuple[str, ...]] = {
    "report": ("/api/engine/backtest/{backtestId}/report",),
    "flows": ("/api/flows",),
    "engine": ("/api/engine", "/api/webhooks"),
    "market": ("/api/market", "/api/exchanges"),
    "keys": ("/api/exchange-keys", "/api/ai-keys"),
    "account": ("/api/notifications", "/api/profile", "/api/dashboard"),
    "chat": ("/api/chat",),
}


def functions_dir() -> Path:
    """``functions/`` of this checkout (the package is installed in editable mode)."""
    return Path(__file__).resolve().parents[3] / "functions"


def load_function(group: str) -> ModuleType:
    """Import ``functions/<group>/app.py`` as ``capandex_functions.<group>`` (once)."""
    name = f"capandex_functions.{group}"
    if name in sys.modules:
        return sys.modules[name]
    folder = functions_dir() / group
    path = folder / "app.py"
    # In Lambda the function's folder is the code root, so its app imports sibling modules
    # (``import backtest_routes``) as top-level names; module names are unique across functions.
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def available_groups() -> list[str]:
    return [g for g in ROUTES if (functions_dir() / g / "app.py").exists()]
