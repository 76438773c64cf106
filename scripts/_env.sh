# Sourced by scripts/test and scripts/serve: make .venv with radixgate installed, once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RADIXGATE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.radixgate-installed-${EXTRAS:-base}"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    # torch first and pinned to a version that has a CPU build here, so no later requirement pulls
    # the multi-GB CUDA build onto a CPU machine; a machine that already has a torch keeps it.
    "$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/pip" install -q "torch==2.13.0"
    "$VENV/bin/pip" install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}"
    touch "$stamp"
fi
