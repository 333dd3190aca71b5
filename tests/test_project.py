"""Project-wide checks: lint, the API Gateway events cover the API, cold-start imports, every state
machine executed, the README's configuration table matches the settings. (The template:
tests/test_template.py; `sam local invoke`: tests/test_sam_local.py.)"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = sorted(p for p in (ROOT / "events").glob("*/*.json"))
API_GROUPS = ("flows", "engine", "market", "keys", "account", "chat", "report")


def test_template_passes_cfn_lint() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), str(ROOT / "template.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    folders = [f for f in ("shared", "functions", "layers", "tests", "benchmarks") if (ROOT / f).is_dir()]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *folders],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]


def test_mypy_is_clean() -> None:
    """Types as configured in pyproject.toml ([tool.mypy]: shared/capandex and functions/, strict
    for the engine, live engine, exchanges, vault, research and report). The cache in .mypy_cache makes a re-run
    take about a second; a cold run about half a minute."""
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_readme_configuration_table_lists_every_setting() -> None:
    """Every variable ``Settings`` reads is in the README's configuration table, and the table
    names no variable that does not exist (a renamed or removed setting would leave it lying)."""
    from capandex.config import Settings, env_name

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):readme.index("## Limits and quotas")]
    listed = {name for row in table.splitlines() if row.startswith("| `")
              for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split(" | ")[0])}
    settings = {env_name(field) for field in Settings.model_fields}
    read_elsewhere = {"LOG_LEVEL"}  # capandex.logs, before any settings are read
    assert settings - listed == set()
    assert listed - settings - read_elsewhere == set()


def _event_route(event: dict) -> tuple[str, str]:
    return event["httpMethod"], event["path"]  # API Gateway REST (payload v1), chat included


def test_every_route_has_an_event() -> None:
    """`sam local invoke` has an event for every route of the merged OpenAPI document."""
    from capandex.api.gateway import Gateway

    events = [_event_route(json.loads(p.read_text())) for p in EVENTS if p.parent.name in API_GROUPS]
    missing = []
    for path, operations in Gateway().openapi()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        for method in operations:
            if not any(m == method.upper() and pattern.match(p) for m, p in events):
                missing.append(f"{method.upper()} {path}")
    assert missing == []


@pytest.mark.parametrize("group", API_GROUPS)
def test_function_import_is_lean(group: str) -> None:
    """Cold start: importing a function's app must not import ccxt, numpy or boto3 (their first
    request pays for them). The chat function alone imports anthropic while it starts: every
    message needs it, and SnapStart snapshots the import (functions/chat/README.md)."""
    if not (ROOT / "functions" / group / "app.py").exists():
        pytest.skip(f"{group} not built")
    code = (f"import sys; from capandex.api.functions import load_function; load_function({group!r}); "
            "heavy = [m for m in ('ccxt', 'anthropic', 'numpy', 'boto3', 'pandas', 'bokeh', 'matplotlib') "
            "if m in sys.modules]; "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    expected = "anthropic" if group == "chat" else ""
    assert result.stdout.strip() == expected, f"{group} imports {result.stdout.strip()} at cold start"


def _python_modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_only_the_exchanges_package_touches_ccxt() -> None:
    """ccxt's semantics stay behind ``capandex.exchanges``: no other module imports ccxt or reaches
    a client's raw ``.ccxt`` instance (callers get Capandex errors and plain data instead)."""
    exchanges = ROOT / "shared" / "capandex" / "exchanges"
    offenders = []
    for path in _python_modules("shared", "functions"):
        if exchanges in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            imported = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "ccxt" for name in imported) or (
                    isinstance(node, ast.Attribute) and node.attr == "ccxt"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


#: the longest a module may be without saying, at its top, why it is longer (STYLE.md: one job per module)
MAX_MODULE_LINES = 450


def test_long_modules_say_why_at_their_top() -> None:
    """A module of ``shared/capandex`` over :data:`MAX_MODULE_LINES` lines starts with a docstring
    containing "Longer than 450 lines:" and the reason."""
    unexplained = []
    for path in _python_modules("shared/capandex"):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES and "Longer than 450 lines:" not in (
                ast.get_docstring(ast.parse(text)) or ""):
            unexplained.append(f"{path.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    assert unexplained == []
