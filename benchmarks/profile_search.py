"""Where one fast search spends its time on CPU: XLA kernels per phase.

Runs one configuration of `search_overhead.py` (same MLP, same roots) through
the `fast` backend under `jax.profiler`, reads the trace (Perfetto JSON) and
attributes every XLA:CPU kernel launch ("thunk") to the computation it runs
in: the descent loops (full batch, then compacted), the backup loops, the
loop conditions, the rest of the simulation (root step, expansion with the
network, key splitting, compaction) and the program outside the simulation
loop.  It prints, per phase, kernels per simulation and profiled time.

  python benchmarks/profile_search.py --policy muzero --hidden 256 \
      --actions 9 --batch 256 --sims 128

The profiler adds about a microsecond to every kernel, so the profiled times
overstate small kernels; the unprofiled wall time is printed first.  Last, it
lists every copy of a whole `[B, S + 1, ...]` tree array that XLA put inside
the loops (there should be none: such a copy cost stochastic_muzero up to 3.4x
until its embedding stores were updated in place).  The
phase of a while loop is read from the HLO: the backup writes the tree store
(scatters), the descent only reads it.  Where the native CPU kernels are in
use (`mctx_planner.native_cpu_kernels()`), MuZero's and Gumbel MuZero's
descents and every expansion's store writes with the backup are one custom
call each per simulation ("native descent", "native expand_backup"; MuZero
from 20 actions without masks, the first descent "native descent (selection
cache)" and then, per simulation, "native expand_descend": the backup and
the next descent in one call);
`--xla-loops` profiles the pure-XLA loops instead.  `--top N` lists the N
kernels that took the most time.
"""

import argparse
import collections
import contextlib
import glob
import gzip
import json
import os
import re
import sys
import tempfile

import jax

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import search_overhead as so  # pylint: disable=g-import-not-at-top
from mctx_planner import _fast_search, _native  # pylint: disable=g-import-not-at-top


def native_calls(hlo: str) -> dict:
  """`{instruction name: kernel}` of the native custom calls in compiled
  HLO text (the kernel without its ``mctx_planner_`` prefix)."""
  return dict(re.findall(r'%([\w.\-]+) = .*custom_call_target='
                         r'"mctx_planner_(\w+)"', hlo))


def trace_events(fn, *args) -> list:
  """The Perfetto trace events of one call `fn(*args)` under
  `jax.profiler`."""
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp, create_perfetto_trace=True):
      jax.block_until_ready(fn(*args))
    path = glob.glob(os.path.join(tmp, "**", "*perfetto_trace.json.gz"),
                     recursive=True)[0]
    with gzip.open(path) as f:
      trace = json.load(f)
  return trace["traceEvents"] if isinstance(trace, dict) else trace


def _computations(hlo: str):
  """(computation of each instruction, while loops' bodies and conditions)."""
  owner, current = {}, None
  loops = {}  # body or condition computation -> (while name, carried shapes)
  for line in hlo.split("\n"):
    if line and not line.startswith(" ") and line.rstrip().endswith("{"):
      current = "ENTRY" if line.startswith("ENTRY") else line.split()[0].lstrip("%")
    elif current and " = " in line:
      name = line.strip().split(" = ")[0].replace("ROOT ", "").lstrip("%")
      owner[name] = current
      m = re.search(r"%(while[.\d]*) = (\(.*?\)) while\(.*condition=%([\w.\-]+), "
                    r"body=%([\w.\-]+)", line)
      if m:
        loops[m.group(4)] = (m.group(1), m.group(2), "body")
        loops[m.group(3)] = (m.group(1), m.group(2), "condition")
  return owner, loops


_STORE = re.compile(r"s32\[\d+,\d+,\d+,6\]")  # the packed edge records


def _phase(computation, loops, sim_loop, writers, batch):
  """The phase of a computation that launches kernels (`writers`: the
  computations that scatter)."""
  if computation == "ENTRY":
    return ("outside the simulation loop" if sim_loop else
            "outside the loops (the simulation loop was unrolled)")
  if computation not in loops:
    return "other (branches of conditionals, calls)"
  name, shapes, part = loops[computation]
  if name == sim_loop:
    return ("rest of the simulation (root step, expansion, keys, compaction)"
            if part == "body" else "loop conditions")
  if not _STORE.search(shapes):
    return "other loops (root noise, key splitting)"
  if part == "condition":
    return "loop conditions"
  # The backup writes the store (scatters); the descent only reads it. The
  # rows: the examples' keys (u32[K, 2]) or node ids (s32[K]) carried.
  kind = "backup" if computation in writers else "descent"
  rows = re.search(r"u32\[(\d+),2\]", shapes) or re.search(r"s32\[(\d+)\]", shapes)
  rows = int(rows.group(1)) if rows else batch
  return f"{kind} ({'full batch' if rows == batch else f'compacted to {rows}'})"


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--policy", default="muzero", choices=sorted(so.POLICIES))
  p.add_argument("--hidden", type=int, default=256)
  p.add_argument("--actions", type=int, default=9)
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--sims", type=int, default=128)
  p.add_argument("--xla-loops", action="store_true",
                 help="trace the search without the native CPU kernels "
                      "(mctx_planner._native), i.e. with the pure-XLA tree "
                      "loops")
  p.add_argument("--top", type=int, default=0,
                 help="also list the N kernels that took the most time, "
                      "with their phase")
  p.add_argument("--retain-memory", action="store_true",
                 help="first keep freed memory mapped "
                      "(mctx_planner.retain_freed_memory)")
  args = p.parse_args()
  if args.retain_memory:
    print("retain_freed_memory:", so.retain_freed_memory(), flush=True)

  params, root, _ = so.make_inputs(args.hidden, args.actions, args.batch)
  fast = so.POLICIES[args.policy][1]
  search = jax.jit(lambda p_, k, r: fast(p_, k, r, so.recurrent_fn, args.sims))
  net = jax.jit(lambda p_, r: so.network_only(p_, r, args.sims, args.policy))
  key = jax.random.PRNGKey(0)
  with (_native.disabled() if args.xla_loops else contextlib.nullcontext()):
    search.lower(params, key, root)  # traced now, with or without kernels
  search_s, net_s = so.time_interleaved(
      [(search, (params, key, root)), (net, (params, root))], 2.0)
  print(f"{args.policy} H={args.hidden} A={args.actions} B={args.batch} "
        f"S={args.sims}: search {search_s * 1e3:.1f} ms, network-only "
        f"{net_s * 1e3:.1f} ms (ratio {search_s / net_s:.2f}), unprofiled")

  hlo = search.lower(params, key, root).compile().as_text()
  owner, loops = _computations(hlo)
  # The simulation loop: a loop over the tree store whose body runs other
  # loops over the store (the descent and the backup). None if XLA unrolled
  # it (very few simulations).
  store_bodies = {c: v[0] for c, v in loops.items()
                  if v[2] == "body" and _STORE.search(v[1])}
  sim_loop = next((store_bodies[owner[w]] for w in owner
                   if w.startswith("while") and owner[w] in store_bodies
                   and any(v[0] == w for v in loops.values()
                           if _STORE.search(v[1]))), None)
  # The native kernels (custom calls) replace the descent and backup loops;
  # the simulation loop is then the store loop that calls them.
  native = native_calls(hlo)
  if sim_loop is None:
    sim_loop = next((store_bodies[owner[n]] for n in native
                     if owner.get(n) in store_bodies), None)

  writers = {owner[i] for i in owner if "scatter" in i}
  phases = {}  # computation -> phase, worked out once each

  events = trace_events(search, params, key, root)

  kernels = collections.Counter()
  micros = collections.Counter()
  per_kernel = collections.Counter()  # (phase, kernel) -> microseconds
  launches = collections.Counter()
  network = 0.0
  for e in events:
    name = e.get("name", "")
    if e.get("ph") != "X" or name not in owner:
      continue
    if name.startswith(("while", "conditional", "call")):
      continue  # containers: their kernels are counted themselves
    computation = owner[name]
    if computation not in phases:
      phases[computation] = _phase(computation, loops, sim_loop, writers,
                                   args.batch)
    phase = phases[computation]
    if name in native and native[name] == "expand_descend":
      phase = "native expand_descend (backup, then the next descent)"
    elif name in native:
      phase = "native " + re.sub(r"\w+_descend(_cached)?", lambda m: (
          "descent" + (" (selection cache)" if m.group(1) else "")),
                                 native[name])
    kernels[phase] += 1
    micros[phase] += e.get("dur", 0.0)
    per_kernel[phase, name] += e.get("dur", 0.0)
    launches[phase, name] += 1
    if name.startswith(("ynn_fusion", "dot", "xnn_fusion")) and "simulation" in phase:
      network += e.get("dur", 0.0)

  total_kernels = sum(kernels.values())
  print(f"{total_kernels} kernel launches, {total_kernels / args.sims:.0f} per "
        f"simulation; profiled time {sum(micros.values()) / 1e3:.1f} ms "
        f"(of which matrix multiplications in the simulation body, i.e. the "
        f"network: {network / 1e3:.1f} ms)")
  print(f"{'phase':66s} {'kernels/sim':>11s} {'profiled ms':>11s} {'us/kernel':>9s}")
  for phase, count in kernels.most_common():
    print(f"{phase:66s} {count / args.sims:11.1f} {micros[phase] / 1e3:11.1f} "
          f"{micros[phase] / count:9.2f}")

  if args.top:
    print(f"the {args.top} kernels that took the most time:")
    for (phase, name), us in per_kernel.most_common(args.top):
      print(f"  {us / 1e3:8.1f} ms {launches[phase, name]:6d}x  {name}  "
            f"({phase})")

  # Copies of whole tree-store arrays inside the loops: each is a pass over
  # `[B, S + 1, ...]` per simulation (or per level), the kind of waste that
  # cost stochastic_muzero up to 3.4x before its stores were updated in place.
  store_copies = []
  copies = _fast_search._store_copies(  # pylint: disable=protected-access
      hlo, args.batch, args.sims + 1)
  for name, shape in copies:
    computation = owner.get(name)
    if computation and computation != "ENTRY":
      phase = phases.get(computation) or _phase(computation, loops, sim_loop,
                                                 writers, args.batch)
      if phase.startswith(("descent", "backup", "rest of the simulation")):
        store_copies.append(f"{phase}: {shape}")
  print("copies of [B, S + 1, ...] tree arrays inside the simulation loop: "
        + ("none" if not store_copies else str(len(store_copies))))
  for line in store_copies:
    print("  " + line)
  return 0


if __name__ == "__main__":
  sys.exit(main())
