"""Where the `fast` backend's output differs from raw mctx's, leaf by leaf.

`run_suite.py` reports each search cell as "exact", "allclose" (rtol 1e-5)
or "differs".  This script takes one cell and says which outputs differ, by
how much, in how many batch rows, and from which index on (the tree node for
`[B, N, ...]` fields: a node's row, e.g. the parent whose `children_index`
changed), so that a
difference can be told apart: float rounding in the statistics (values
within a few ulps, same tree) or a flipped near-tie (a different tree from
some simulation on).  It runs on JAX's default backend under the XLA_FLAGS
in effect, so the same cell can be probed with and without a compiler
option, e.g. on a GPU:

    python benchmarks/exactness_probe.py --cell muzero 9 1024 256
    XLA_FLAGS=--xla_gpu_enable_triton_gemm=false \\
        python benchmarks/exactness_probe.py --cell muzero 9 1024 256

Prints one line per output leaf that is not bit-equal, then a summary line;
`--out FILE` also writes them as JSON.
"""

import argparse
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]

import jax  # noqa: E402
import numpy as np  # noqa: E402

import search_overhead  # noqa: E402
from suite import cells  # noqa: E402
from suite import search_bench  # noqa: E402


def _first_index_differing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For ``[B, K, ...]`` arrays: per batch row, the first index along axis 1
    (a node for the tree's ``[B, N, ...]`` fields, an action for ``[B, A]``
    outputs) whose entries differ, or -1 where the row is equal."""
    diff = (a != b).reshape(a.shape[0], a.shape[1], -1).any(axis=-1)
    first = np.argmax(diff, axis=1)
    return np.where(diff.any(axis=1), first, -1)


def compare(fast_out, raw_out):
    """One dict per output leaf that is not bit-equal."""
    if jax.tree.structure(fast_out) != jax.tree.structure(raw_out):
        raise ValueError("the two outputs have different tree structures: %s vs %s"
                         % (jax.tree.structure(fast_out), jax.tree.structure(raw_out)))
    rows = []
    flat_fast = jax.tree_util.tree_flatten_with_path(fast_out)[0]
    flat_raw = jax.tree.leaves(raw_out)
    for (path, x), y in zip(flat_fast, flat_raw):
        x, y = np.asarray(x), np.asarray(y)
        if np.array_equal(x, y):
            continue
        row = dict(leaf=jax.tree_util.keystr(path), shape=list(x.shape),
                   entries_differing=int(np.sum(x != y)))
        if x.ndim:
            row["batch_rows_differing"] = int(np.sum(
                (x != y).reshape(x.shape[0], -1).any(axis=1)))
        if np.issubdtype(x.dtype, np.floating):
            x64, y64 = x.astype(np.float64), y.astype(np.float64)
            # Equal entries count as 0, so that -inf (a masked logit) in both
            # outputs does not become inf - inf = NaN.
            with np.errstate(invalid="ignore"):
                d = np.where(x64 == y64, 0.0, np.abs(x64 - y64))
            row["max_abs_diff"] = float(np.max(d))
            # Relative to the larger magnitude, over entries not both zero.
            scale = np.maximum(np.abs(x64), np.abs(y64))
            nonzero = scale > 0
            row["max_rel_diff"] = float(np.max(d[nonzero] / scale[nonzero])
                                        if nonzero.any() else 0.0)
        if x.ndim >= 2:
            first = _first_index_differing(x, y)
            hit = first[first >= 0]
            row["first_index_differing_min"] = int(hit.min()) if hit.size else -1
        rows.append(row)
    return rows


def probe(policy, actions, batch, sims, hidden):
    raw, fast = search_overhead.POLICIES[policy]
    params, root, key = search_overhead.make_inputs(hidden, actions, batch)
    outs = [jax.jit(search_bench._search_fn(fn, sims))(params, key, root)
            for fn in (fast, raw)]
    return compare(*outs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cells.add_cell_args(parser, required=True, example="muzero 9 1024 256")
    args = parser.parse_args()
    policy, a, b, s = cells.parse_cell(parser, args.cell, search_overhead.POLICIES)
    flags = os.environ.get("XLA_FLAGS", "")
    print(jax.devices(), "jax", jax.__version__, "XLA_FLAGS=%r" % flags, flush=True)
    rows = probe(policy, a, b, s, args.hidden)
    for r in rows:
        print("  " + json.dumps(r), flush=True)
    actions_equal = not any(r["leaf"] == ".action" for r in rows)
    print("%s A=%d B=%d S=%d: %s; action %s" % (
        policy, a, b, s, "exact" if not rows else
        "%d leaves differ" % len(rows), "equal" if actions_equal else "DIFFERS"),
        flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(policy=policy, actions=a, batch=b, sims=s,
                           hidden=args.hidden, xla_flags=flags,
                           device=jax.devices()[0].device_kind,
                           jax=jax.__version__, leaves=rows), f, indent=1)


if __name__ == "__main__":
    main()
