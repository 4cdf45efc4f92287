"""Raw mctx left to XLA's automatic partitioning over CPU devices vs one device.

`make_planner(..., mesh=mesh)` needs `backend="fast"`: only the fast backend
has a split search (`shard_map`, one independent search per device).  This
script measures the alternative for the mctx backend: the same
`mctx.muzero_policy` / `gumbel_muzero_policy` program with its root and
output constrained to the batch axis of a mesh over `--devices` CPU devices
(JAX's own sharding, `with_sharding_constraint`), against one device, timed
in interleaved rounds in one process, with the fast backend on one device
for scale.  It also checks that both mctx programs give the same result and
counts the collectives XLA inserted.

    python benchmarks/mctx_partitioned.py                  # 3 cells, ~1 min
    python benchmarks/mctx_partitioned.py --cell muzero 9 1024 64
"""

import argparse
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]

CELLS = [("muzero", 9, 256, 64), ("gumbel", 9, 256, 64), ("muzero", 9, 1024, 64)]
COLLECTIVES = ("all-reduce", "all-gather", "collective-permute", "all-to-all")


def _parse():
  # Importing JAX does not start its backends: `main` can still set the
  # device count in XLA_FLAGS afterwards.
  import search_overhead  # pylint: disable=g-import-not-at-top
  from suite import cells  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--devices", type=int, default=2, help="CPU devices to create")
  cells.add_cell_args(p, example="muzero 9 256 64")
  p.add_argument("--budget", type=float, default=6.0,
                 help="seconds of interleaved timing per cell")
  args = p.parse_args()
  if args.cell:
    args.cell = cells.parse_cell(p, args.cell, search_overhead.POLICIES)
  return args


def measure(policy, actions, batch, sims, hidden, budget_s, mesh):
  """ms of (mctx on one device, mctx partitioned, fast on one device), the
  two mctx programs' agreement and the partitioned one's collectives."""
  import jax
  from jax.sharding import NamedSharding, PartitionSpec
  import search_overhead
  from suite import search_bench

  raw, fast = search_overhead.POLICIES[policy]
  params, root, key = search_overhead.make_inputs(hidden, actions, batch)
  by_batch = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))

  one = search_bench._search_fn(raw, sims)

  def partitioned(params, key, root):
    root = jax.lax.with_sharding_constraint(root, by_batch)
    return jax.lax.with_sharding_constraint(one(params, key, root), by_batch)

  sharded_root = jax.device_put(root, by_batch)
  single = jax.jit(one).lower(params, key, root).compile()
  fast_one = jax.jit(search_bench._search_fn(fast, sims)).lower(
      params, key, root).compile()
  split = jax.jit(partitioned).lower(params, key, sharded_root).compile()
  same = search_bench._identical(single(params, key, root),
                                 split(params, key, sharded_root))
  times = search_overhead.time_interleaved(
      [(single, (params, key, root)), (split, (params, key, sharded_root)),
       (fast_one, (params, key, root))], budget_s)
  text = split.as_text()
  collectives = {c: text.count(" %s(" % c) for c in COLLECTIVES}
  return [t * 1e3 for t in times], same, collectives


def main():
  args = _parse()
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=%d"
                             % args.devices)
  import jax
  import numpy as np
  from jax.sharding import Mesh

  mesh = Mesh(np.array(jax.devices("cpu")[:args.devices]), ("batch",))
  print(jax.devices("cpu"), "jax", jax.__version__, flush=True)
  cells = [args.cell] if args.cell else CELLS
  rows = []
  for policy, a, b, s in cells:
    (one, split, fast), same, coll = measure(policy, a, b, s, args.hidden,
                                             args.budget, mesh)
    print("%s A=%d B=%d S=%d: mctx one device %.1f ms, partitioned over %d "
          "%.1f ms (%.2fx one device's time, %s, collectives %s); fast one "
          "device %.1f ms" % (policy, a, b, s, one, args.devices, split,
                              split / one, same, coll, fast), flush=True)
    rows.append(dict(policy=policy, actions=a, batch=b, sims=s,
                     hidden=args.hidden, devices=args.devices, mctx_one_ms=one,
                     mctx_partitioned_ms=split, fast_one_ms=fast, same=same,
                     collectives=coll, jax=jax.__version__))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
