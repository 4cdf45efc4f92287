#!/usr/bin/env bash
# A bounded run of the one-command suite on a GPU machine (about 9 minutes):
# the search grid for the hidden-256 MLP (9 then 64 actions, both
# policies, raw mctx and the fast backend), then two training presets.
# Usage: bash benchmarks/gpu_suite_check.sh OUT_DIR [MINUTES_PER_PART]
# Each part stops starting new configurations after MINUTES_PER_PART minutes
# (default 2.8) and is killed 40 s later; the device JSON is rewritten after
# every configuration, so a stopped part keeps what it measured.
set -u
out=${1:?usage: gpu_suite_check.sh OUT_DIR [MINUTES_PER_PART]}
minutes=${2:-2.8}
platform=${PLATFORM:-gpu}
limit=$(python3 -c "print(int(60 * $minutes) + 40)")
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -c "import jax, jaxlib, mctx; print(jax.__version__, jaxlib.__version__, mctx.__version__, jax.devices())"
common=(--out-dir "$out" --no-plots --max-minutes "$minutes")
for actions in 9 64; do
  timeout "$limit" python3 benchmarks/run_suite.py --platforms "$platform" --only search \
    --hidden 256 --actions "$actions" --budget 0.5 "${common[@]}" \
    2>&1 | tee "$out/search_a$actions.log"
done
timeout "$limit" python3 benchmarks/run_suite.py --platforms "$platform" --only train \
  --presets tictactoe/gumbel_alphazero connect4/gumbel_alphazero "${common[@]}" \
  2>&1 | tee "$out/train.log"
python3 benchmarks/run_suite.py --markdown-only --out-dir "$out" --no-plots
