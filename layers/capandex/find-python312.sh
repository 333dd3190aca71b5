#!/bin/sh
# Print a Python 3.12 interpreter that really runs (the layer's bytecode must be 3.12's).
# A pyenv shim named python3.12 exists even when pyenv has no 3.12 installed, and fails when
# run: so every candidate is run, not just looked up. Exits 1 when there is none.
for candidate in "$RUNTIME_PYTHON" python3.12 \
        "$(pyenv prefix 3.12 2>/dev/null | head -n1)/bin/python3.12" \
        "$(uv python find 3.12 2>/dev/null)" \
        "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
        /usr/local/bin/python3.12 /usr/bin/python3.12; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
        command -v "$candidate" 2>/dev/null || echo "$candidate"
        exit 0
    fi
done
exit 1
