"""A/B: the fast search with the native CPU kernels against its pure-XLA loops.

On CPU the fast backend runs MuZero's descent and every backup as native XLA
custom calls (`mctx_planner/_csrc/tree_kernels.cc`, see
`mctx_planner.native_cpu_kernels`). This script measures that choice: per
cell it compiles the same search with and without the kernels (as the
planner compiles it, one task per kernel where the planner would), checks
that the outputs are bit-identical, and times both with the network-only
program (`search_overhead.py`'s MLP), interleaved in one process.

    python benchmarks/native_ab.py --cells muzero,9,256,128 gumbel,9,256,64
    python benchmarks/native_ab.py --grid --hidden 64 --out benchmarks/results/native_ab_h64.json

`--grid` runs MuZero's 9-action cells of the issue (B = 64, 256, 1024;
S = 64, 128, 256). `--planner-cells` measures searches through the planner
over a true model (AlphaZero style, legal moves masked inside the tree) with
an untrained `AlphaZeroNet` (hidden 64, 2 layers):

    python benchmarks/native_ab.py --planner-cells tictactoe,muzero,256,32 connect4,muzero,256,64

A planner cell's domain takes constructor arguments after colons, e.g.
`recommendation:num_candidates=32,muzero,256,64`.

`--select-cache` compares, per MuZero cell, the native descent with its
selection cache against the same descent without it (both native; see
`_fast_search._SELECT_CACHE_MIN_ACTIONS`, which these numbers set); with
`--planner-cells` (algorithm muzero), the cache with legal-move masks:

    python benchmarks/native_ab.py --select-cache --cells muzero,16,256,128 muzero,32,256,128
    python benchmarks/native_ab.py --select-cache --planner-cells recommendation:num_candidates=32,muzero,256,64

`--unpack` compares the returned tree's arrays from the native one-pass
unpack (`_native.unpack_edges`) against XLA's, per cell:

    python benchmarks/native_ab.py --unpack --hidden 64 --cells muzero,64,1024,128

`--huge-pages` compares, per cell, the store written by `_native.store_init`
with and without its advice for transparent huge pages
(`_fast_search._HUGE_PAGES`, as `MCTX_PLANNER_HUGE_PAGES=0` sets it):

    python benchmarks/native_ab.py --huge-pages --cells muzero,64,256,256 gumbel,64,256,128

`--fused-descent` compares, per MuZero cell with the selection cache (20 to
64 actions), each backup fused with the next simulation's descent
(`_native.expand_descend`) against the two calls
(`_fast_search._FUSED_DESCENT`, as `MCTX_PLANNER_FUSED_DESCENT=0` sets it):

    python benchmarks/native_ab.py --fused-descent --cells muzero,64,1024,256

`--lazy-edges` compares, per MuZero cell with the selection cache's rows
(20 to 64 actions), the backup that leaves the edges of nodes with at most
two visited children (their children's statistics hold the same numbers)
against the backup that writes every edge (`_fast_search._LAZY_EDGES`, as
`MCTX_PLANNER_LAZY_EDGES=0` sets it):

    python benchmarks/native_ab.py --lazy-edges --cells muzero,64,1024,256

`--gumbel-rows` compares, per Gumbel cell (48 to 254 actions, no masks),
the descent that decides narrow nodes from their rows (`GumbelRow` in
tree_kernels.cc) against the one that scores every row in full
(`_fast_search._GUMBEL_ROWS`, as `MCTX_PLANNER_GUMBEL_ROWS=0` sets it):

    python benchmarks/native_ab.py --gumbel-rows --cells gumbel,64,1024,256

`--fast-dirichlet` compares, per MuZero cell with at least
`_dirichlet.MIN_ELEMENTS` noise samples (B * A), the root noise drawn by
`mctx_planner._dirichlet` (the same bits) against `jax.random.dirichlet`
(`_fast_search._FAST_DIRICHLET`, as `MCTX_PLANNER_FAST_DIRICHLET=0` sets it):

    python benchmarks/native_ab.py --fast-dirichlet --hidden 64 --cells muzero,64,64,64
"""

import argparse
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_HERE), _HERE]

import jax  # noqa: E402

import search_overhead as so  # noqa: E402
from mctx_planner import _fast_search, _native  # noqa: E402
from suite import cells as cell_args, common, search_bench  # noqa: E402


def compile_both(search, args, single_task):
  """`(native, xla, compile_native_s, compile_xla_s, same)`: `search`
  compiled for `args` with the kernels and with the XLA loops (as the planner
  compiles it where `single_task`), and whether their outputs are
  bit-identical."""
  def xla_loops_search(*a):  # another name: its own trace and program
    return search(*a)

  native, compile_native_s, _ = so.compile_fn(search, *args,
                                              single_task=single_task)
  with _native.disabled():
    xla, compile_xla_s, _ = so.compile_fn(xla_loops_search, *args,
                                          single_task=single_task)
  same, _ = so.outputs_identical(native(*args), xla(*args))
  return native, xla, compile_native_s, compile_xla_s, same


def run_cell(policy, actions, batch, sims, hidden, budget_s):
  """One row: times (s) of network-only, XLA-loop and native searches."""
  search, args = search_bench.fast_cell(policy, actions, batch, sims, hidden)
  params, _, root = args
  net = jax.jit(lambda p, r: so.network_only(p, r, sims, policy))
  native, xla, compile_native_s, compile_xla_s, same = compile_both(
      search, args, so.fast_single_task(batch, sims, actions))
  net_s, xla_s, native_s = so.time_interleaved(
      [(net, (params, root)), (xla, args), (native, args)], budget_s)
  return dict(policy=policy, actions=actions, batch=batch, sims=sims,
              hidden=hidden, net_ms=net_s * 1e3, xla_ms=xla_s * 1e3,
              native_ms=native_s * 1e3, speedup=xla_s / native_s,
              ratio_xla=xla_s / net_s, ratio_native=native_s / net_s,
              same=same, compile_xla_s=compile_xla_s,
              compile_native_s=compile_native_s)


def time_switch(search, args, single_task, budget_s, name, on, off):
  """`(on_ms, off_ms, same)`: `search` compiled with `_fast_search.<name>`
  set to `on` and to `off` (a switch read at trace time), checked bit for
  bit and timed interleaved."""
  def search_off(*a):  # another name: its own trace and program
    return search(*a)

  kept = getattr(_fast_search, name)
  try:
    setattr(_fast_search, name, on)
    with_on, _, _ = so.compile_fn(search, *args, single_task=single_task)
    setattr(_fast_search, name, off)
    with_off, _, _ = so.compile_fn(search_off, *args, single_task=single_task)
  finally:
    setattr(_fast_search, name, kept)
  same, _ = so.outputs_identical(with_on(*args), with_off(*args))
  on_s, off_s = so.time_interleaved([(with_on, args), (with_off, args)],
                                    budget_s)
  return on_s * 1e3, off_s * 1e3, same


def time_cache_pair(search, args, single_task, budget_s):
  """`(cache_ms, no_cache_ms, same)`: MuZero's native `search` compiled
  with and without the selection cache."""
  return time_switch(search, args, single_task, budget_s,
                     "_SELECT_CACHE_MIN_ACTIONS", 1, 1 << 30)


def run_cache_cell(actions, batch, sims, hidden, budget_s):
  """One row: MuZero's native search with and without the selection cache."""
  search, args = search_bench.fast_cell("muzero", actions, batch, sims, hidden)
  cache_ms, no_cache_ms, same = time_cache_pair(
      search, args, so.fast_single_task(batch, sims, actions), budget_s)
  return dict(policy="muzero", actions=actions, batch=batch, sims=sims,
              hidden=hidden, cache_ms=cache_ms, no_cache_ms=no_cache_ms,
              speedup=no_cache_ms / cache_ms, same=same)


def run_switch_cell(policy, actions, batch, sims, hidden, budget_s, switch,
                    on_key, off_key):
  """One row: the search compiled with `_fast_search.<switch>` True (its
  time under `on_key`, ms) and False (`off_key`); speedup = off / on."""
  search, args = search_bench.fast_cell(policy, actions, batch, sims, hidden)
  on_ms, off_ms, same = time_switch(
      search, args, so.fast_single_task(batch, sims, actions), budget_s,
      switch, True, False)
  return {"policy": policy, "actions": actions, "batch": batch, "sims": sims,
          "hidden": hidden, on_key: on_ms, off_key: off_ms,
          "speedup": off_ms / on_ms, "same": same}


def parse_domain(spec):
  """`(name, kwargs)` from `name[:key=value...]` (integer values as int)."""
  name, *pairs = spec.split(":")
  kwargs = {}
  for pair in pairs:
    key, _, value = pair.partition("=")
    try:
      kwargs[key] = int(value)
    except ValueError:
      kwargs[key] = value
  return name, kwargs


def run_planner_cell(domain_name, algorithm, batch, sims, budget_s,
                     select_cache=False):
  """One row through `make_planner(true_model(...))`: native against XLA
  (`select_cache`: MuZero's selection cache against none, both native)."""
  import mctx_planner as mp  # pylint: disable=g-import-not-at-top
  name, kwargs = parse_domain(domain_name)
  planner, args, domain = search_bench.planner_cell(
      mp.domains.make(name, **kwargs), algorithm, batch, sims)

  def search(*a):
    return planner.search(*a)

  single_task = so.fast_single_task(batch, sims, domain.num_actions)
  if select_cache:
    cache_ms, no_cache_ms, same = time_cache_pair(search, args, single_task,
                                                  budget_s)
    return dict(domain=domain_name, algorithm=algorithm, batch=batch,
                sims=sims, cache_ms=cache_ms, no_cache_ms=no_cache_ms,
                speedup=no_cache_ms / cache_ms, same=same)
  native, xla, _, _, same = compile_both(search, args, single_task)
  xla_s, native_s = so.time_interleaved([(xla, args), (native, args)],
                                        budget_s)
  return dict(domain=domain_name, algorithm=algorithm, batch=batch, sims=sims,
              xla_ms=xla_s * 1e3, native_ms=native_s * 1e3,
              speedup=xla_s / native_s, same=same)


# Switches of `_fast_search` read at trace time, each an option of its own:
# (help, the module global, label and row key when on, the same when off).
_SWITCHES = {
    "unpack": ("cells: the returned tree by the native one-pass unpack "
               "against XLA's arrays", "_NATIVE_UNPACK", "native unpack",
               "unpack_ms", "XLA's arrays", "xla_unpack_ms"),
    "huge_pages": ("cells: the store advised for huge pages against the same "
                   "store without the advice", "_HUGE_PAGES", "huge pages",
                   "huge_pages_ms", "4 KB pages", "plain_pages_ms"),
    "fused_descent": ("MuZero cells: each backup fused with the next descent "
                      "against the two calls", "_FUSED_DESCENT", "fused",
                      "fused_ms", "two calls", "two_calls_ms"),
    "lazy_edges": ("MuZero cells: the backup leaving narrow nodes' edges "
                   "against writing every edge", "_LAZY_EDGES", "lazy edges",
                   "lazy_edges_ms", "every edge", "every_edge_ms"),
    "gumbel_rows": ("Gumbel cells: narrow nodes decided from their rows "
                    "against every row scored in full", "_GUMBEL_ROWS",
                    "rows", "rows_ms", "full rows", "full_rows_ms"),
    "fast_dirichlet": ("MuZero cells: the root noise by _dirichlet (first "
                       "rounds at once) against jax.random.dirichlet",
                       "_FAST_DIRICHLET", "first rounds at once",
                       "fast_dirichlet_ms", "jax.random.dirichlet",
                       "jax_dirichlet_ms"),
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cells", nargs="*", default=[],
                      help="policy,actions,batch,sims (e.g. muzero,9,64,128)")
  parser.add_argument("--grid", action="store_true",
                      help="MuZero's 9-action cells of the issue")
  parser.add_argument("--planner-cells", nargs="*", default=[],
                      help="domain,algorithm,batch,sims through the planner "
                           "(e.g. connect4,muzero,256,64)")
  parser.add_argument("--select-cache", action="store_true",
                      help="MuZero cells: the selection cache against none")
  for key, (help_text, *_) in _SWITCHES.items():
    parser.add_argument("--" + key.replace("_", "-"), action="store_true",
                        help=help_text)
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--budget", type=float, default=3.0,
                      help="seconds of interleaved timing per cell")
  parser.add_argument("--out", help="write the rows as JSON")
  args = parser.parse_args()
  if not _native.available():
    parser.error(f"the native CPU kernels are {_native.status()}")
  cells = [tuple(c.split(",")) for c in args.cells]
  if args.grid:
    cells += [("muzero", 9, b, s) for b in (64, 256, 1024)
              for s in (64, 128, 256)]
  if not cells and not args.planner_cells:
    parser.error("give --cells, --grid or --planner-cells")
  rows = []

  def report(r, head, first, first_key, second, second_key):
    """Adds row `r`, prints it as `head: <first> ms, <second> ms (speedup);
    identical=...` and rewrites `--out`."""
    rows.append(r)
    print("%s: %s %.2f ms, %s %.2f ms (%.2fx); identical=%s" % (
        head, first, r[first_key], second, r[second_key], r["speedup"],
        r["same"]), flush=True)
    common.write_ab_rows(args.out, rows, native=_native.status())

  for cell in args.planner_cells:
    try:
      domain_name, algorithm, b, s = cell.split(",")
      b, s = int(b), int(s)
    except ValueError:
      parser.error(f"--planner-cells: {cell!r} is not domain,algorithm,batch,sims")
    if args.select_cache and algorithm != "muzero":
      parser.error("--select-cache: the cache is MuZero's (algorithm muzero)")
    r = run_planner_cell(domain_name, algorithm, b, s, args.budget,
                         args.select_cache)
    head = "%s %s B=%d S=%d (planner, true model)" % (
        r["domain"], r["algorithm"], r["batch"], r["sims"])
    if args.select_cache:
      report(r, head, "selection cache", "cache_ms", "none", "no_cache_ms")
    else:
      report(r, head, "XLA loops", "xla_ms", "native", "native_ms")
  chosen = [v[1:] for k, v in _SWITCHES.items() if getattr(args, k)]
  if len(chosen) > 1:
    parser.error("give one of " + ", ".join(
        "--" + k.replace("_", "-") for k in _SWITCHES))
  switch = chosen[0] if chosen else None
  for cell in cells:
    policy, a, b, s = cell_args.parse_cell(parser, [str(x) for x in cell],
                                           so.POLICIES)
    head = "%s H=%d A=%d B=%d S=%d" % (policy, args.hidden, a, b, s)
    if switch is not None:
      name, on_label, on_key, off_label, off_key = switch
      r = run_switch_cell(policy, a, b, s, args.hidden, args.budget, name,
                          on_key, off_key)
      report(r, head, on_label, on_key, off_label, off_key)
      continue
    if args.select_cache:
      if policy != "muzero":
        parser.error("--select-cache: the cache is MuZero's")
      r = run_cache_cell(a, b, s, args.hidden, args.budget)
      report(r, head, "selection cache", "cache_ms", "none", "no_cache_ms")
      continue
    r = run_cell(policy, a, b, s, args.hidden, args.budget)
    rows.append(r)
    print("%s: network %.2f ms, XLA loops %.2f ms, native %.2f ms (%.2fx); "
          "search/network %.2f -> %.2f; identical=%s; compile %.1f / %.1f s"
          % (head, r["net_ms"], r["xla_ms"], r["native_ms"], r["speedup"],
             r["ratio_xla"], r["ratio_native"], r["same"], r["compile_xla_s"],
             r["compile_native_s"]), flush=True)
    common.write_ab_rows(args.out, rows, native=_native.status())


if __name__ == "__main__":
  main()
