"""Is the native MuZero search waiting on memory or on arithmetic?

MuZero's 64-action trees are deep (about 91 levels on average at S = 256
with this benchmark's MLP), so each simulation's backup and the next
descent walk about 180 node visits, and at B = 1024 the tree store does not
fit the caches. This script separates the memory walk from the rest, for
one configuration of `search_overhead.py` (same MLP, roots and key):

1. Runs the fast search once and takes the returned tree's parents: node
   ``s + 1`` is the node simulation ``s`` expanded, so its ancestors are
   that simulation's path.
2. Replays those exact paths in ``path_floor.cc`` (compiled here with
   ``$CXX`` or ``c++``): per step and example, the backup's walk up from the
   new node (a dependent load of each parent, a read-modify-write of its
   statistics) and the next descent's walk over its path, with no selection
   arithmetic, two threads meeting at a barrier after each step and 16
   examples' walks interleaved per thread, as the native kernel's lanes do.
   Two layouts: ``one_line`` (parent, statistics and selection row in one
   64-byte record per node, the leanest a per-node store can be) and
   ``three_arrays`` (the native store's links, statistics and rows, each in
   its own array, as now).
3. Times the search and the network-only baseline in the same process, and
   (unless ``--no-profile``) profiles one search for the native
   ``expand_descend`` calls, the kernel that does the backup and the next
   descent.

Printed per batch size: the walk's levels, the two floors, the kernel's
time and its nanoseconds per level. When the kernel's time per level is
the same at a batch whose store fits the caches (B = 64) as at B = 1024,
and far above the walks' floors, the search waits on arithmetic, and a
leaner store cannot bring it to the issue's ratio of 2.0.

    python benchmarks/path_floor.py                      # B = 64, 256, 1024
    python benchmarks/path_floor.py --batch 1024 --reps 7
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile

import jax
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import profile_search  # pylint: disable=wrong-import-position
import search_overhead as so  # pylint: disable=wrong-import-position
from mctx_planner import _native  # pylint: disable=wrong-import-position


def build_floor(tmp):
  """Compiles path_floor.cc into `tmp` with the compiler the native kernels
  use; returns the binary's path."""
  compiler = _native._compiler()  # pylint: disable=protected-access
  if not compiler:
    raise SystemExit("no C++ compiler found (set $CXX)")
  binary = os.path.join(tmp, "path_floor")
  subprocess.run([compiler, "-O3", "-march=native", "-std=c++17", "-pthread",
                  os.path.join(HERE, "path_floor.cc"), "-o", binary],
                 check=True)
  return binary


def run_floor(binary, parents, threads, group, reps, tmp):
  """{layout: [ms per search, ...]} and the backup walk's levels."""
  path = os.path.join(tmp, "parents.bin")
  parents.astype("<i4").tofile(path)
  batch, nodes = parents.shape
  out = subprocess.run([binary, path, str(batch), str(nodes), str(threads),
                        str(group), str(reps)], check=True,
                       capture_output=True, text=True).stdout
  times = collections.defaultdict(list)
  levels = 0
  for line in out.strip().splitlines():
    layout, ms, levels = line.split()
    times[layout].append(float(ms))
  return dict(times), int(levels)


def kernel_ms(search, args):
  """Profiled milliseconds of the native expand_descend calls in one search
  (None where the search has none)."""
  hlo = search.lower(*args).compile().as_text()
  names = {name for name, kernel in profile_search.native_calls(hlo).items()
           if kernel == "expand_descend"}
  if not names:
    return None
  events = profile_search.trace_events(search, *args)
  return sum(e.get("dur", 0.0) for e in events
             if e.get("ph") == "X" and e.get("name") in names) / 1e3


def measure(hidden, actions, batch, sims, threads, group, reps, profile,
            binary, tmp, budget_s=2.0):
  """One batch size's row (see the module docstring); `levels` counts the
  backup's node visits, ``depth + 1`` per simulation."""
  params, root, key = so.make_inputs(hidden, actions, batch)
  fast = so.POLICIES["muzero"][1]
  search = jax.jit(lambda p, k, r: fast(p, k, r, so.recurrent_fn, sims))
  net = jax.jit(lambda p, r: so.network_only(p, r, sims))
  tree = search(params, key, root).search_tree
  parents = np.asarray(tree.parents).astype(np.int32)  # the root's: -1
  search_s, net_s = so.time_interleaved(
      [(search, (params, key, root)), (net, (params, root))], budget_s)
  floors, levels = run_floor(binary, parents, threads, group, reps, tmp)
  row = dict(hidden=hidden, actions=actions, batch=batch, sims=sims,
             threads=threads, group=group, levels=levels,
             mean_depth=so.tree_depths(tree)[0],
             search_ms=search_s * 1e3, network_ms=net_s * 1e3,
             ratio=search_s / net_s)
  for layout, ms in floors.items():
    row[f"{layout}_ms"] = min(ms)
    row[f"{layout}_median_ms"] = statistics.median(ms)
  row["expand_descend_ms"] = (kernel_ms(search, (params, key, root))
                              if profile else None)
  return row


def markdown(rows):
  lines = ["| B | levels | search ms | network ms | ratio | one_line floor ms "
           "| three_arrays floor ms | expand_descend ms | ns per level: "
           "floors, kernel |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    per = lambda ms: ms * 1e6 / r["levels"]  # noqa: E731
    kernel = r["expand_descend_ms"]
    lines.append(
        f"| {r['batch']} | {r['levels'] / 1e6:.2f} M | {r['search_ms']:.1f} "
        f"| {r['network_ms']:.1f} | {r['ratio']:.2f} "
        f"| {r['one_line_ms']:.1f} | {r['three_arrays_ms']:.1f} "
        f"| {'-' if kernel is None else f'{kernel:.1f}'} "
        f"| {per(r['one_line_ms']):.2f}, {per(r['three_arrays_ms']):.2f}, "
        f"{'-' if kernel is None else f'{per(kernel):.2f}'} |")
  return "\n".join(lines)


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--hidden", type=int, default=256)
  p.add_argument("--actions", type=int, default=64)
  p.add_argument("--batch", nargs="+", type=int, default=[64, 256, 1024])
  p.add_argument("--sims", type=int, default=256)
  p.add_argument("--threads", type=int, default=2,
                 help="threads of the floor's walk (the kernel's are XLA's)")
  p.add_argument("--group", type=int, default=16,
                 help="examples walked in turns per thread (at most 64)")
  p.add_argument("--reps", type=int, default=5,
                 help="walks per layout; the least time is reported")
  p.add_argument("--budget", type=float, default=2.0,
                 help="seconds of timing of the search and the network")
  p.add_argument("--no-profile", action="store_true",
                 help="skip the profiled run of the native kernel")
  p.add_argument("--retain-memory", action="store_true",
                 help="first keep freed memory mapped "
                      "(mctx_planner.retain_freed_memory)")
  p.add_argument("--out", default=os.path.join(HERE, "results",
                                                "path_floor_cpu.json"))
  args = p.parse_args()
  if args.retain_memory:
    print("retain_freed_memory:", so.retain_freed_memory(), flush=True)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    binary = build_floor(tmp)
    for batch in args.batch:
      rows.append(measure(args.hidden, args.actions, batch, args.sims,
                          args.threads, args.group, args.reps,
                          not args.no_profile, binary, tmp, args.budget))
      print(json.dumps(rows[-1]), flush=True)
  record = dict(device=str(jax.devices()[0]), jax=jax.__version__,
                retain_freed_memory=args.retain_memory, results=rows)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(record, f, indent=1)
  print(markdown(rows))
  print("wrote", args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
