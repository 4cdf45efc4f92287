"""A/B: `mctx_planner.top_k` (native kernel on CPU) against `jax.lax.top_k`.

Two measurements, each interleaved in one process and checked for equal
outputs:

1. the top-k alone, `R` rows of `n` items (`--rows`, `--items`, `--k`);
2. a search through the planner over the `recommendation` domain, whose
   model retrieves its candidates with a top-k in every step
   (`--planner B,S,candidates`, algorithm muzero, untrained `AlphaZeroNet`),
   with the domain's retrieval switched to `jax.lax.top_k` for the B side.

    python benchmarks/topk_ab.py --rows 64 --items 500 --k 8 32 64 \\
        --planner 64,128,64 256,64,32
"""

import argparse
import contextlib
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]

import jax  # noqa: E402
import numpy as np  # noqa: E402

import search_overhead as so  # noqa: E402
import mctx_planner as mp  # noqa: E402
from mctx_planner import _native  # noqa: E402
from mctx_planner.domains import recommendation  # noqa: E402
from suite import common, search_bench  # noqa: E402


def _same(a, b):
  return all(np.array_equal(np.asarray(x).view(np.uint8),
                            np.asarray(y).view(np.uint8))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def run_top_k(rows, items, k, budget_s):
  """One row: `mp.top_k` against `jax.lax.top_k` on normal scores."""
  x = jax.random.normal(jax.random.PRNGKey(0), (rows, items))
  native = jax.jit(lambda v: mp.top_k(v, k))
  xla = jax.jit(lambda v: jax.lax.top_k(v, k))
  same = _same(native(x), xla(x))
  native_s, xla_s = so.time_interleaved([(native, (x,)), (xla, (x,))],
                                        budget_s)
  return dict(kind="top_k", rows=rows, items=items, k=k,
              native_us=native_s * 1e6, xla_us=xla_s * 1e6,
              speedup=xla_s / native_s, same=same)


@contextlib.contextmanager
def _lax_retrieval():
  """Within: the recommendation domain retrieves with `jax.lax.top_k`."""
  kept = recommendation.top_k
  recommendation.top_k = lambda x, k: tuple(jax.lax.top_k(x, k))
  try:
    yield
  finally:
    recommendation.top_k = kept


def run_planner(batch, sims, candidates, budget_s):
  """One row: a recommendation search with either top-k."""
  planner, args, _ = search_bench.planner_cell(
      mp.domains.make("recommendation", num_candidates=candidates), "muzero",
      batch, sims)

  def with_lax(*a):  # another name: its own trace and program
    return planner.search(*a)

  native = jax.jit(planner.search).lower(*args).compile()
  with _lax_retrieval():
    xla = jax.jit(with_lax).lower(*args).compile()
  same = _same(native(*args), xla(*args))
  native_s, xla_s = so.time_interleaved([(native, args), (xla, args)],
                                        budget_s)
  return dict(kind="planner", domain="recommendation", algorithm="muzero",
              batch=batch, sims=sims, candidates=candidates,
              native_ms=native_s * 1e3, xla_ms=xla_s * 1e3,
              speedup=xla_s / native_s, same=same)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", type=int, default=64)
  parser.add_argument("--items", type=int, default=500)
  parser.add_argument("--k", type=int, nargs="*", default=[8, 32, 64])
  parser.add_argument("--planner", nargs="*", default=[],
                      help="batch,sims,candidates (e.g. 64,128,64)")
  parser.add_argument("--budget", type=float, default=3.0,
                      help="seconds of interleaved timing per row")
  parser.add_argument("--out", help="write the rows as JSON")
  args = parser.parse_args()
  if not _native.available():
    parser.error(f"the native CPU kernels are {_native.status()}")
  if jax.default_backend() != "cpu":
    jax.config.update("jax_default_device", jax.devices("cpu")[0])
  rows = []
  for k in args.k:
    if not 1 <= k <= args.items:
      parser.error(f"--k: each must be in [1, --items], got {k}")
    r = run_top_k(args.rows, args.items, k, args.budget)
    rows.append(r)
    print("top_k %d rows x %d items, k=%d: native %.1f us, jax.lax.top_k "
          "%.1f us (%.2fx); identical=%s" % (
              r["rows"], r["items"], r["k"], r["native_us"], r["xla_us"],
              r["speedup"], r["same"]), flush=True)
    common.write_ab_rows(args.out, rows, native=_native.status())
  for cell in args.planner:
    try:
      batch, sims, candidates = (int(v) for v in cell.split(","))
    except ValueError:
      parser.error(f"--planner: {cell!r} is not batch,sims,candidates")
    r = run_planner(batch, sims, candidates, args.budget)
    rows.append(r)
    print("recommendation muzero B=%d S=%d, %d candidates (planner): "
          "native top_k %.2f ms, jax.lax.top_k %.2f ms (%.2fx); identical=%s"
          % (r["batch"], r["sims"], r["candidates"], r["native_ms"],
             r["xla_ms"], r["speedup"], r["same"]), flush=True)
    common.write_ab_rows(args.out, rows, native=_native.status())


if __name__ == "__main__":
  main()
