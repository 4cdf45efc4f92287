"""Loop compaction of the `fast` backend, on and off, against raw mctx.

The lockstep descent and backup loops of `mctx_planner._fast_search` can go
on with a compacted quarter of the batch once few examples are still active
(`_compacted_loop`).  That pays on XLA:CPU and cost time on a GPU, so the
backend compacts only where the platform it is traced for is in
`_fast_search._COMPACT_BACKENDS` (CPU).  This script measures, in one process
and interleaved, on JAX's default backend:

* raw `mctx` (muzero_policy / gumbel_muzero_policy),
* `fast` with compaction on,
* `fast` with compaction off,

on the plain-jnp MLP of `search_overhead.py` (hidden 256 unless `--hidden`),
and checks that both `fast` variants choose the same actions.

    python benchmarks/compaction_ab.py            # 8 cells, about 2 min on an H200
    python benchmarks/compaction_ab.py --cells 2  # the first two
    python benchmarks/compaction_ab.py --cell gumbel 64 256 128
"""

import argparse
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import search_overhead  # noqa: E402
from mctx_planner import _fast_search, _native  # noqa: E402
from suite import cells as cells_args  # noqa: E402
from suite import search_bench  # noqa: E402

# (policy, actions, batch, sims)
CELLS = [("muzero", 9, 64, 64), ("muzero", 9, 64, 256), ("muzero", 9, 256, 64),
         ("muzero", 9, 256, 256), ("muzero", 9, 1024, 64), ("muzero", 9, 1024, 256),
         ("gumbel", 9, 64, 64), ("gumbel", 64, 64, 64)]


def measure(policy, actions, batch, sims, hidden, budget_s):
    """Seconds per search of (mctx, fast compacting, fast not compacting),
    whether both fast variants choose the same actions, and the while loops
    of each fast program (compaction adds loops; below `_COMPACT_MIN`
    examples both are the same program)."""
    raw, fast = search_overhead.POLICIES[policy]
    params, root, key = search_overhead.make_inputs(hidden, actions, batch)
    saved = _fast_search._COMPACT_BACKENDS
    fns, loops = [], []
    try:
        compacting = ("cpu", _fast_search._ACCELERATOR)  # either platform
        for fn, backends in ((raw, saved), (fast, compacting), (fast, ())):
            _fast_search._COMPACT_BACKENDS = backends  # read when tracing
            # Compaction is a choice of the XLA loops, which the native CPU
            # kernels replace (MuZero's descent, every backup).
            with _native.disabled():
                compiled, _, _ = search_overhead.compile_fn(
                    search_bench._search_fn(fn, sims), params, key, root)
            fns.append((compiled, (params, key, root)))
            loops.append(compiled.as_text().count(" while("))  # XLA's loops
    finally:
        _fast_search._COMPACT_BACKENDS = saved
    on, off = (f(*args) for f, args in fns[1:])
    same = bool(jnp.all(on.action == off.action))
    return search_overhead.time_interleaved(fns, budget_s), same, loops[1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=len(CELLS),
                        help="measure the first N cells of CELLS")
    cells_args.add_cell_args(parser)
    parser.add_argument("--budget", type=float, default=1.5,
                        help="seconds of interleaved timing per cell")
    args = parser.parse_args()
    print(jax.devices(), "jax", jax.__version__, flush=True)
    cells = CELLS[:args.cells]
    if args.cell:
        cells = [cells_args.parse_cell(parser, args.cell, search_overhead.POLICIES)]
    rows = []
    for policy, actions, batch, sims in cells:
        (t_raw, t_on, t_off), same, loops = measure(policy, actions, batch, sims,
                                                     args.hidden, args.budget)
        rows.append(dict(policy=policy, actions=actions, batch=batch, sims=sims,
                         hidden=args.hidden, mctx_s=t_raw, compact_s=t_on,
                         no_compact_s=t_off, same_actions=same,
                         while_loops_compacting=loops[0],
                         while_loops_not_compacting=loops[1],
                         device=jax.devices()[0].device_kind, jax=jax.__version__))
        print("%s A=%d B=%d S=%d: mctx %.2f ms, fast compacting %.2f ms (%.2fx mctx), "
              "not compacting %.2f ms (%.2fx), same actions %s, while loops %d / %d"
              % (policy, actions, batch, sims, 1e3 * t_raw, 1e3 * t_on, t_raw / t_on,
                 1e3 * t_off, t_raw / t_off, same, *loops), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
