"""A/B: the fast search compiled by XLA's default against one task per kernel.

`mctx_planner.single_task_compile` compiles a program whose XLA:CPU kernels
each run as one task (see `mctx_planner/_cpu_tasks.py`); the planner uses it
where `_cpu_tasks.prefers_single_task` says so. This script measures that
choice: for each cell it compiles the same fast search both ways, checks that
the outputs are bit-identical, and times both with the network-only program
(`search_overhead.py`'s MLP), interleaved in one process.

    python benchmarks/single_task_ab.py --cells muzero,9,64,64 gumbel,64,256,128
    python benchmarks/single_task_ab.py --grid --out benchmarks/results/single_task_ab_cpu.json

`--grid` runs the issue's cells at B = 64 and 256 (muzero and gumbel, 9 and
64 actions, S = 64, 128, 256); B = 1024 is left out since the planner does
not use one task there (measured 0.78x to 0.99x).
"""

import argparse
import functools
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]

import jax  # noqa: E402
import numpy as np  # noqa: E402

import search_overhead as so  # noqa: E402
from suite import cells as cell_args, common, search_bench  # noqa: E402


def run_cell(policy, actions, batch, sims, hidden, budget_s):
  """One row: times (s) of network-only, default and single-task searches."""
  search, args = search_bench.fast_cell(policy, actions, batch, sims, hidden)
  params, _, root = args

  def single_task_search(*args):  # another name: its own compiled program
    return search(*args)

  net, _, _ = so.compile_fn(functools.partial(
      so.network_only, num_simulations=sims, policy=policy), params, root)
  default, compile_default_s, _ = so.compile_fn(search, *args)
  single, compile_single_s, _ = so.compile_fn(single_task_search, *args,
                                              single_task="require")
  same = all(np.array_equal(x, y) for x, y in zip(
      jax.tree.leaves(default(*args)), jax.tree.leaves(single(*args))))
  net_s, default_s, single_s = so.time_interleaved(
      [(net, (params, root)), (default, args), (single, args)], budget_s)
  return dict(policy=policy, actions=actions, batch=batch, sims=sims,
              hidden=hidden, net_ms=net_s * 1e3, default_ms=default_s * 1e3,
              single_ms=single_s * 1e3, speedup=default_s / single_s,
              ratio_default=default_s / net_s, ratio_single=single_s / net_s,
              same=same, compile_default_s=compile_default_s,
              compile_single_s=compile_single_s)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cells", nargs="*", default=[],
                      help="policy,actions,batch,sims (e.g. muzero,9,64,128)")
  parser.add_argument("--grid", action="store_true",
                      help="the issue's cells at B = 64 and 256")
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--budget", type=float, default=2.5,
                      help="seconds of interleaved timing per cell")
  parser.add_argument("--out", help="write the rows as JSON")
  args = parser.parse_args()
  cells = [tuple(c.split(",")) for c in args.cells]
  if args.grid:
    cells += [(p, a, b, s) for p in ("muzero", "gumbel") for a in (9, 64)
              for b in (64, 256) for s in (64, 128, 256)]
  if not cells:
    parser.error("give --cells or --grid")
  rows = []
  for cell in cells:
    policy, a, b, s = cell_args.parse_cell(parser, [str(x) for x in cell], so.POLICIES)
    r = run_cell(policy, a, b, s, args.hidden, args.budget)
    rows.append(r)
    print("%s A=%d B=%d S=%d: network %.2f ms, default %.2f ms, one task %.2f ms"
          " (%.2fx); search/network %.2f -> %.2f; identical=%s; compile %.1f / %.1f s"
          % (r["policy"], r["actions"], r["batch"], r["sims"], r["net_ms"],
             r["default_ms"], r["single_ms"], r["speedup"], r["ratio_default"],
             r["ratio_single"], r["same"], r["compile_default_s"],
             r["compile_single_s"]), flush=True)
    common.write_ab_rows(args.out, rows)


if __name__ == "__main__":
  main()
