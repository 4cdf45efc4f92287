#!/usr/bin/env bash
# A bounded run of the one-command suite on a GPU machine (about 9 minutes):
# the issue's search grid for the hidden-256 MLP (muzero and gumbel, 9 and 64
# actions, raw mctx and the fast backend; 6.5 minutes on an H100), then two
# training presets.
# Usage: bash benchmarks/gpu_suite_check.sh OUT_DIR [SEARCH_MINUTES] [TRAIN_MINUTES]
# Each part stops starting new configurations after its minutes (default 6.8
# and 1.2) and is killed 40 s later (at most 9.4 minutes in all, inside a
# 10-minute device call); the device JSON is rewritten after every
# configuration, so a stopped part keeps what it measured. The script exits
# non-zero when either part failed or was killed.
set -u -o pipefail
out=${1:?usage: gpu_suite_check.sh OUT_DIR [SEARCH_MINUTES] [TRAIN_MINUTES]}
search_minutes=${2:-6.8}
train_minutes=${3:-1.2}
platform=${PLATFORM:-gpu}
limit() { python3 -c "print(int(60 * $1) + 40)"; }
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -c "import jax, jaxlib, mctx; print(jax.__version__, jaxlib.__version__, mctx.__version__, jax.devices())"
common=(--out-dir "$out" --no-plots)
timeout "$(limit "$search_minutes")" python3 benchmarks/run_suite.py --platforms "$platform" \
  --only search --hidden 256 --actions 9 64 --budget 0.5 --max-minutes "$search_minutes" \
  "${common[@]}" 2>&1 | tee "$out/search.log"
search_status=$?
timeout "$(limit "$train_minutes")" python3 benchmarks/run_suite.py --platforms "$platform" \
  --only train --presets tictactoe/gumbel_alphazero connect4/gumbel_alphazero \
  --max-minutes "$train_minutes" "${common[@]}" 2>&1 | tee "$out/train.log"
train_status=$?
python3 benchmarks/run_suite.py --markdown-only --out-dir "$out" --no-plots
# Non-zero when a part failed (a configuration raised: run_suite exits 1) or
# was killed by its time limit (124); each part's results are kept either way.
echo "search part: exit $search_status; training part: exit $train_status"
[ "$search_status" -eq 0 ] && [ "$train_status" -eq 0 ]
