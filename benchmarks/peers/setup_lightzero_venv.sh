#!/usr/bin/env bash
# Builds the LightZero peer's venv (see README.md and requirements-lightzero.txt).
#
#   bash benchmarks/peers/setup_lightzero_venv.sh [VENV_DIR]
#
# VENV_DIR defaults to benchmarks/peers/.venv-peers (ignored by git; the
# driver's default --lz-python).  PYTHON picks the interpreter (default
# python3; LightZero 0.2.0's wheel has compiled ctrees for CPython 3.11 on
# x86_64 Linux).  Torch comes from the default index; set
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to use PyTorch's own
# CPU index instead.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${1:-$HERE/.venv-peers}"
PYTHON="${PYTHON:-python3}"
REQ="$HERE/requirements-lightzero.txt"

section() {  # the requirement lines of one [section] of $REQ
  awk -v s="[$1]" '
    /^# \[/ { on = ($2 == s) ; next }
    on && $0 !~ /^#/ && NF { print }' "$REQ"
}

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --upgrade pip
if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
  "${PIP[@]}" install --index-url "$TORCH_INDEX_URL" $(section torch)
else
  "${PIP[@]}" install $(section torch)
fi
"${PIP[@]}" install --no-deps $(section no-deps)
"${PIP[@]}" install $(section deps)

"$VENV/bin/python" - <<'PY'
import warnings
warnings.filterwarnings("ignore")
from lzero.mcts.ctree.ctree_muzero import mz_tree
from lzero.mcts.ctree.ctree_gumbel_muzero import gmz_tree
import lzero, numpy, torch
roots = mz_tree.Roots(2, [[0, 1, 2], [0, 1, 2]])
roots.prepare_no_noise([0.0, 0.0], [[0.0, 0.1, 0.2]] * 2, [-1, -1])
print("LightZero ctree OK:", mz_tree.__file__)
print("numpy", numpy.__version__, "torch", torch.__version__)
PY
echo "venv ready: $VENV  (run_peers.py --lz-python $VENV/bin/python)"
