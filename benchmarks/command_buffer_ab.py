"""A/B on a GPU: XLA's command buffers (CUDA graphs) for while loops.

XLA:GPU records runs of kernels into command buffers (CUDA graphs), which
the GPU then launches as one unit. By default (jax 0.11) only fusions,
library calls and custom calls are recorded. A ``while`` loop then runs
from the host: every iteration brings its condition back to the host before
it launches the body's kernels, and a search is loops of small kernels
("GPU, current code" in docs/benchmarks.md). ``WHILE`` and ``CONDITIONAL``
in ``xla_gpu_enable_command_buffer`` put whole loops in the graph (CUDA
conditional nodes; ``mctx_planner.gpu_loop_graphs()``). This script compiles
the same search with XLA's default and with those options, per program
(``compiler_options``; XLA:CPU ignores them), for raw mctx
and the fast backend, checks that the outputs are bit-identical, and times
all four with the network-only program, interleaved in one process.

    python benchmarks/command_buffer_ab.py --cells muzero,9,1024,64 gumbel,9,1024,64

Each cell is ``policy,actions,batch,sims`` on ``search_overhead.py``'s MLP
(``--hidden``, default 256).
"""

import argparse
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]

import jax  # noqa: E402

import search_overhead as so  # noqa: E402
from mctx_planner import gpu_loop_graphs  # noqa: E402
from suite import cells, search_bench  # noqa: E402


def run_cell(policy, actions, batch, sims, hidden, budget_s):
  params, root, key = so.make_inputs(hidden, actions, batch)
  args = (params, key, root)
  net, _, _ = so.compile_fn(lambda p, r: so.network_only(p, r, sims, policy),
                            params, root)
  row = dict(policy=policy, actions=actions, batch=batch, sims=sims, hidden=hidden)
  fns, outs = [], {}
  variants = (("default", None), ("loops", gpu_loop_graphs()))
  for backend, fn in (("mctx", so.POLICIES[policy][0]), ("fast", so.POLICIES[policy][1])):
    for name, options in variants:
      # A function of its own per variant: JAX caches compiled programs by
      # function, and the options must not be served from that cache.
      def search(*a, fn=fn):
        return search_bench._search_fn(fn, sims)(*a)  # pylint: disable=protected-access
      compiled, seconds, _ = so.compile_fn(search, *args, compiler_options=options)
      tag = f"{backend}_{name}"
      row[f"{tag}_compile_s"] = seconds
      outs[tag] = jax.block_until_ready(compiled(*args))
      fns.append((tag, compiled))
  for backend in ("mctx", "fast"):
    row[f"{backend}_loops_identical"] = so.outputs_identical(
        outs[f"{backend}_default"], outs[f"{backend}_loops"])
  row["fast_vs_mctx_identical"] = so.outputs_identical(outs["mctx_default"],
                                                       outs["fast_default"])
  times = so.time_interleaved([(net, (params, root))] + [(c, args) for _, c in fns],
                              budget_s)
  row["net_ms"] = times[0] * 1e3
  for (tag, _), t in zip(fns, times[1:]):
    row[f"{tag}_ms"] = t * 1e3
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cells", nargs="+", required=True,
                      help="policy,actions,batch,sims (e.g. muzero,9,1024,64)")
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--budget", type=float, default=3.0,
                      help="seconds of interleaved timing per cell")
  parser.add_argument("--out", help="write the rows as JSON")
  args = parser.parse_args()
  if not gpu_loop_graphs():
    raise SystemExit("this XLA does not know the command buffer options by "
                     "name (older jaxlib): nothing to compare")
  print(jax.__version__, jax.devices(), flush=True)
  rows = []

  def save():  # after every cell: a stopped run keeps its rows
    if args.out:
      with open(args.out, "w") as f:
        json.dump(dict(device=jax.devices()[0].device_kind, jax=jax.__version__,
                       rows=rows), f, indent=1, default=str)

  for cell in args.cells:
    policy, a, b, s = cells.parse_cell(parser, cell.split(","), so.POLICIES)
    try:
      r = run_cell(policy, a, b, s, args.hidden, args.budget)
    except Exception as e:  # pylint: disable=broad-except
      # Recorded, and the next cell runs: a variant XLA cannot compile here
      # is a result too.
      rows.append(dict(cell=cell, error=f"{type(e).__name__}: {e}"[:2000]))
      print(f"{cell}: {rows[-1]['error']}", flush=True)
      save()
      continue
    rows.append(r)
    save()
    print(json.dumps(r, default=str), flush=True)
    print("%s A=%s B=%s S=%s: net %.2f ms | mctx %.2f -> %.2f ms (%.2fx) | fast %.2f"
          " -> %.2f ms (%.2fx) | identical mctx %s fast %s"
          % (policy, a, b, s, r["net_ms"], r["mctx_default_ms"], r["mctx_loops_ms"],
             r["mctx_default_ms"] / r["mctx_loops_ms"], r["fast_default_ms"],
             r["fast_loops_ms"], r["fast_default_ms"] / r["fast_loops_ms"],
             r["mctx_loops_identical"], r["fast_loops_identical"]), flush=True)


if __name__ == "__main__":
  main()
