#!/usr/bin/env bash
# Create .venv/ with the project installed (editable) and the given extras; a no-op when
# pyproject.toml has not changed since the last install. Sourced by scripts/serve and scripts/test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extras="${1:-}"
python=""
for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python="$candidate"; break
    fi
done
[ -n "$python" ] || { echo "error: Python 3.11 or newer is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv/ with $("$python" --version) ..." >&2
    "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)${extras:+-$extras}"
if [ ! -f "$stamp" ]; then
    # the first install downloads ~100 packages (a few minutes): pip's "Collecting …" lines show
    # the progress (its errors go to stderr unfiltered; pipefail makes a failed install fail here)
    echo "Installing capandex${extras:+[$extras]} and its dependencies into .venv/ (first run: a few minutes) ..." >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --progress-bar off -e ".${extras:+[$extras]}" \
        | { grep --line-buffered -E "^(Collecting|Processing|Installing|Successfully)" >&2 || true; }
    touch "$stamp"
    echo "Set-up done." >&2
fi
