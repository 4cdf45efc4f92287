"""Three lower bounds on tree-search time on CPU: XLA's per-iteration loop
cost, the selection arithmetic any exact search must do, and writing the
search tree it returns.

A tree search's descent is sequential in depth: the child picked at one level
decides the node read at the next. Any search written as XLA loops (mctx, or
this library's ``fast`` backend) therefore runs at least
``sum over simulations of the depth it descends`` loop iterations, one after
another. This script measures the cost of one such iteration in isolation:

* ``bare``: a ``lax.while_loop`` that only counts (the loop's own overhead),
* ``step``: a minimal batched descent step: gather the ``[B, A]`` visit and
  prior rows of the current nodes, score them (PUCT-like, 4 elementwise ops),
  ``argmax``, gather the child index: the least any selection step does;
* ``backup``: a minimal backup step: read the parent of the current nodes,
  add the leaf value to its ``[B, N]`` value sum and visit count (scatter),
  move up: the least any backup step does.

and multiplies the ``step + backup`` cost by the path length the search really has
(``mean node depth * S`` from ``benchmarks/search_overhead.py``'s records) to
give a floor on search time, next to the network-only time measured in the
same process (the same ``lax.scan`` of S network calls as in
``search_overhead.py``). When
``floor / network-only > 2`` the issue's "search / network-only <= 2" target
cannot be met by a search that selects one level per loop iteration, as mctx
and this library's ``fast`` backend do.

A second floor (``rows``) counts arithmetic instead of iterations: the
selection scores of all ``A`` children of the node at every level of every
descent, as mctx computes them.  For Gumbel MuZero it holds for any exact
search (the softmax's sum runs over every child, and a node's visit changed
all of them).  For MuZero it does not: unvisited children rank by prior, so
the native kernels' selection cache scores a node from its visited children
and two unvisited ones (docs/design.md, "MuZero's selection cache"), and
beats this floor with 64 actions.  ``row_seconds`` times
the policy's own interior selection arithmetic (this library's PUCT scores
with mctx's default qtransform and their argmax for muzero, without the
tie-breaking noise or the fast backend's test that it cannot matter; mctx's
deterministic interior selection for gumbel) on 16384 ``[A]`` rows in one
call, and the floor is ``rows per search * time per row`` with
``mean node depth * S * B`` rows, taking the least time per row of this
process and ``--row-processes`` fresh ones.  Reading the rows from the tree
is not counted (the rows are inputs of the timed call), so the true cost
is higher still.  The search takes at least ``network-only + rows floor``;
``--time-fast`` times the fast search beside them.

A third floor (``output``) is the search's result: a search that returns
mctx's ``Tree`` writes its arrays (six ``[B, S + 1, A]``, five
``[B, S + 1]`` and the embeddings ``[B, S + 1, H]``) into fresh buffers, as
every jitted program's outputs are.  ``output_seconds`` times a program
that only fills arrays of those shapes (first touch of the memory
included), and the last column divides the fast search by the sum of the
three: network-only, rows floor and output floor.

    python benchmarks/descent_floor.py              # every record of the overhead JSON
    python benchmarks/descent_floor.py --batch 64 256 1024 --actions 9 64
    python benchmarks/descent_floor.py --time-fast --row-processes 5
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import functools
import sys

import jax
import jax.numpy as jnp
import mctx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import search_overhead as so  # pylint: disable=g-import-not-at-top,wrong-import-position
sys.path.insert(0, os.path.dirname(HERE))
from mctx_planner import _fast_search as fs  # pylint: disable=g-import-not-at-top,wrong-import-position
DEFAULT_RECORDS = os.path.join(HERE, "results", "search_overhead_fast.json")


def bare_loop(n):
  return jax.lax.while_loop(lambda c: c[0] < n, lambda c: (c[0] + 1, c[1] + 1),
                            (jnp.int32(0), jnp.int32(0)))[1]


def descent_loop(n, visits, prior, children):
  """``n`` minimal selection steps for a batch (visits/prior/children ``[B, N, A]``)."""
  batch, nodes, _ = visits.shape
  rows = jnp.arange(batch)

  def body(carry):
    i, node = carry
    v = visits[rows, node]                       # [B, A]
    p = prior[rows, node]
    total = jnp.sum(v, axis=-1, keepdims=True)
    score = p * jnp.sqrt(total + 1.0) / (1.0 + v) - 0.01 * v
    child = children[rows, node, jnp.argmax(score, axis=-1)]
    return i + 1, jnp.where(child >= 0, child, 0) % nodes

  return jax.lax.while_loop(lambda c: c[0] < n, body,
                            (jnp.int32(0), jnp.zeros([batch], jnp.int32)))[1]


def backup_loop(n, parents, values, counts):
  """``n`` minimal backup steps (parents ``[B, N]``, values/counts ``[B, N]``)."""
  batch, nodes = parents.shape
  rows = jnp.arange(batch)

  def body(carry):
    i, node, value, vsum, vcount = carry
    parent = parents[rows, node]
    vsum = vsum.at[rows, node].add(value)
    vcount = vcount.at[rows, node].add(1.0)
    value = 0.997 * value
    return i + 1, jnp.where(parent >= 0, parent, nodes - 1), value, vsum, vcount

  init = (jnp.int32(0), jnp.full([batch], nodes - 1, jnp.int32),
          jnp.ones([batch]), values, counts)
  return jax.lax.while_loop(lambda c: c[0] < n, body, init)[3]


def _random_rows(num_rows, actions):
  """``num_rows`` random node rows: a ``Tree`` of ``[num_rows, 1, ...]``
  leaves (one node each, as the fast backend's views)."""
  m = num_rows
  keys = jax.random.split(jax.random.PRNGKey(1), 6)
  visits = jax.random.randint(keys[0], (m, 1, actions), 0, 5)
  return mctx.Tree(
      node_visits=jnp.sum(visits, -1) + 1,
      raw_values=jax.random.normal(keys[5], (m, 1)),
      node_values=jax.random.normal(keys[1], (m, 1)),
      parents=jnp.zeros((m, 1), jnp.int32),
      action_from_parent=jnp.zeros((m, 1), jnp.int32),
      children_index=jnp.where(visits > 0, 1, -1),
      # Probabilities, which muzero's rows hold in the fast backend's store
      # (gumbel reads them as logits: the arithmetic is the same).
      children_prior_logits=jax.nn.softmax(
          jax.random.normal(keys[2], (m, 1, actions))),
      children_visits=visits,
      children_rewards=jax.random.normal(keys[3], (m, 1, actions)),
      children_discounts=jnp.full((m, 1, actions), 0.997),
      children_values=jax.random.normal(keys[4], (m, 1, actions)),
      embeddings=jnp.zeros((m, 1)),
      root_invalid_actions=jnp.zeros((m, actions)),
      extra_data=None)


def _interior_scores(policy):
  """``rows -> action`` per row: the policy's interior selection arithmetic
  as the fast backend computes it (one node per row, depth > 0)."""
  if policy == "gumbel":
    one = functools.partial(fs._gumbel_interior_action,  # pylint: disable=protected-access
                            qtransform=mctx.qtransform_completed_by_mix_value)
    return jax.vmap(lambda view: one(None, view, 1))
  scores = functools.partial(
      fs._puct_scores, pb_c_init=1.25, pb_c_base=19652.,  # pylint: disable=protected-access
      qtransform=mctx.qtransform_by_parent_and_siblings)

  def select(view):
    # The fast backend stores muzero's prior probabilities (no softmax here).
    # Scores and their argmax only: the tie-breaking noise (mctx) or the test
    # that it cannot matter (the fast backend) would come on top.
    probs = view.children_prior_logits[:, 0]
    s = jax.vmap(scores, in_axes=(0, None, 0))(view, 1, probs)
    return fs._argmax(s)  # pylint: disable=protected-access
  return select


def row_seconds(policy, actions, rows=16384, reps=15):
  """Time per row of the interior selection arithmetic alone, on ``rows``
  random rows in one call (the rows are inputs: reading them from a tree
  store is not counted, which keeps this a lower bound)."""
  view = _random_rows(rows, actions)
  compiled = jax.jit(_interior_scores(policy)).lower(view).compile()
  jax.block_until_ready(compiled(view))
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(view))
    ts.append(time.perf_counter() - t0)
  return min(ts) / rows


def fastest_row_seconds(policy, actions, processes):
  """The least of ``row_seconds`` in this process and in ``processes`` fresh
  ones, and all the values: the time per row moves by up to 40 % from
  process to process on a small VM, and a faster row only lowers the floor."""
  times = [row_seconds(policy, actions)]
  for _ in range(processes):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--row-only", policy,
         str(actions)], capture_output=True, text=True, check=True)
    times.append(float(out.stdout.split()[-1]))
  return min(times), times


def per_iteration_seconds(fn, args, n_small=200, n_large=4200, reps=7):
  """Slope of wall time vs iterations (removes the call overhead)."""
  compiled = jax.jit(fn).lower(jnp.int32(0), *args).compile()
  def timed(n):
    ts = []
    for _ in range(reps):
      t0 = time.perf_counter()
      jax.block_until_ready(compiled(jnp.int32(n), *args))
      ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
  timed(n_small)
  return (timed(n_large) - timed(n_small)) / (n_large - n_small)


def _network_only(hidden, actions, batch, sims):
  """``(compiled, params, root, key)``: S chained network calls on the batch
  (no tree), as in ``search_overhead.py``, and that cell's inputs."""
  params, root, key = so.make_inputs(hidden, actions, batch)
  compiled, _, _ = so.compile_fn(
      functools.partial(so.network_only, num_simulations=sims), params, root)
  return compiled, params, root, key


def network_only_seconds(hidden, actions, batch, sims, reps=7):
  """Median time of the network-only program (``_network_only``), measured
  in this process."""
  compiled, params, root, _ = _network_only(hidden, actions, batch, sims)
  jax.block_until_ready(compiled(params, root))
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(params, root))
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def fast_and_network_seconds(policy, hidden, actions, batch, sims, budget_s=2.0):
  """``(fast search, network-only)`` median times, measured interleaved in
  this process (``search_overhead.py``'s MLP, roots and key)."""
  net, params, root, key = _network_only(hidden, actions, batch, sims)
  fast = so.POLICIES[policy][1]
  search, _, _ = so.compile_fn(
      lambda p_, k, r: fast(p_, k, r, so.recurrent_fn, sims), params, key, root,
      single_task=so.fast_single_task(batch, sims, actions))
  return tuple(so.time_interleaved(
      [(search, (params, key, root)), (net, (params, root))], budget_s,
      min_reps=5))


def output_seconds(batch, actions, sims, hidden, reps=7):
  """Median time to fill fresh arrays of the shapes of mctx's ``Tree`` for a
  search of ``sims`` simulations (each from a run-time value, so that
  nothing is folded at compile time)."""
  nodes = sims + 1

  def fill(x):
    per_child = [jnp.full((batch, nodes, actions), x + k, dtype)
                 for k, dtype in enumerate([jnp.int32, jnp.float32, jnp.int32,
                                            jnp.float32, jnp.float32,
                                            jnp.float32])]
    per_node = [jnp.full((batch, nodes), x + 10 + k, dtype)
                for k, dtype in enumerate([jnp.int32, jnp.float32, jnp.float32,
                                           jnp.int32, jnp.int32])]
    return per_child, per_node, jnp.full((batch, nodes, hidden), x + 20,
                                         jnp.float32)

  compiled = jax.jit(fill).lower(jnp.float32(0)).compile()
  jax.block_until_ready(compiled(jnp.float32(1)))
  ts = []
  for i in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(jnp.float32(i)))
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def measure(batch, actions, nodes=257):
  key = jax.random.PRNGKey(0)
  visits = jax.random.randint(key, (batch, nodes, actions), 0, 5).astype(jnp.float32)
  prior = jax.nn.softmax(jax.random.normal(key, (batch, nodes, actions)))
  children = jax.random.randint(key, (batch, nodes, actions), -1, nodes)
  parents = jax.random.randint(key, (batch, nodes), -1, nodes)
  values = jnp.zeros((batch, nodes))
  bare = per_iteration_seconds(lambda n: bare_loop(n), ())
  step = per_iteration_seconds(descent_loop, (visits, prior, children))
  backup = per_iteration_seconds(backup_loop, (parents, values, values))
  return bare, step + backup


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--records", default=DEFAULT_RECORDS,
                 help="search_overhead JSON with mean_depth and net_s per config")
  p.add_argument("--batch", nargs="+", type=int, default=None)
  p.add_argument("--actions", nargs="+", type=int, default=None)
  p.add_argument("--hidden", type=int, default=256)
  p.add_argument("--time-fast", action="store_true",
                 help="also time the fast search in this process (interleaved with "
                      "the network-only run) and compare it with network + rows floor")
  p.add_argument("--budget", type=float, default=2.0,
                 help="seconds of timing per configuration with --time-fast")
  p.add_argument("--row-processes", type=int, default=3,
                 help="fresh processes that time the rows too (the least time is used)")
  p.add_argument("--row-only", nargs=2, metavar=("POLICY", "A"),
                 help=argparse.SUPPRESS)  # one row timing, for --row-processes
  p.add_argument("--out", default=os.path.join(HERE, "results", "descent_floor_cpu.json"))
  args = p.parse_args()
  if args.row_only:
    print(row_seconds(args.row_only[0], int(args.row_only[1])))
    return
  with open(args.records) as f:
    records = [r for r in json.load(f)["results"] if r["hidden"] == args.hidden]
  if args.batch:
    records = [r for r in records if r["batch"] in args.batch]
  if args.actions:
    records = [r for r in records if r["actions"] in args.actions]
  cache, rows = {}, []
  print("| policy | A | B | S | mean depth | levels | select+backup us | floor ms |"
        " net-only ms | floor / net | row ns | rows floor ms | rows floor / net |"
        + " output ms | (net + rows + output) / net |"
        + (" fast / net | fast / (net + rows floor) |"
           " fast / (net + rows + output) |" if args.time_fast else
           " fast / net (overhead JSON) |"))
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        + ("---|---|---|" if args.time_fast else "---|"))
  row_cache = {}
  for r in records:
    k = (r["batch"], r["actions"])
    if k not in cache:
      cache[k] = measure(*k)
    bare, step = cache[k]
    kr = (r["policy"], r["actions"])
    if kr not in row_cache:
      row_cache[kr] = fastest_row_seconds(*kr, args.row_processes)
    per_row, row_times = row_cache[kr]
    # One selection and one backup step per level per simulation.
    steps = r["mean_depth"] * r["sims"]
    floor = steps * step
    rows_floor = steps * r["batch"] * per_row
    output = output_seconds(r["batch"], r["actions"], r["sims"], r["hidden"])
    if args.time_fast:
      fast, net = fast_and_network_seconds(r["policy"], r["hidden"], r["actions"],
                                           r["batch"], r["sims"], args.budget)
      fast_cols = (f"{fast / net:.2f} | {fast / (net + rows_floor):.2f} | "
                   f"{fast / (net + rows_floor + output):.2f} |")
    else:
      fast = None
      net = network_only_seconds(r["hidden"], r["actions"], r["batch"], r["sims"])
      fast_cols = f"{r['ratio_fast']:.2f} |"
    row = dict(policy=r["policy"], actions=r["actions"], batch=r["batch"], sims=r["sims"],
               hidden=r["hidden"], mean_depth=r["mean_depth"], descent_steps=steps,
               bare_iteration_s=bare, step_iteration_s=step, floor_s=floor,
               net_s=net, floor_over_net=floor / net, row_s=per_row,
               row_s_per_process=row_times,
               rows_floor_s=rows_floor, rows_floor_over_net=rows_floor / net,
               fast_over_net=r["ratio_fast"] if fast is None else fast / net,
               fast_s=fast, fast_measured_here=fast is not None,
               fast_over_net_plus_rows_floor=(None if fast is None
                                              else fast / (net + rows_floor)),
               output_floor_s=output,
               floors_over_net=(net + rows_floor + output) / net,
               fast_over_floors=(None if fast is None
                                 else fast / (net + rows_floor + output)),
               device=jax.devices()[0].device_kind,
               jax=jax.__version__, cpus=os.cpu_count(), load=os.getloadavg()[0])
    rows.append(row)
    print(f"| {r['policy']} | {r['actions']} | {r['batch']} | {r['sims']} | "
          f"{r['mean_depth']:.1f} | {steps:.0f} | {step * 1e6:.1f} | {floor * 1e3:.1f} | "
          f"{net * 1e3:.1f} | {floor / net:.2f} | {per_row * 1e9:.0f} | "
          f"{rows_floor * 1e3:.1f} | {rows_floor / net:.2f} | "
          f"{output * 1e3:.1f} | {(net + rows_floor + output) / net:.2f} | "
          f"{fast_cols}",
          flush=True)
  with open(args.out, "w") as f:
    json.dump(dict(bare_and_select_backup_us={f"B={b},A={a}": [x * 1e6 for x in v]
                                     for (b, a), v in cache.items()},
                   rows=rows), f, indent=1)
  print("wrote", args.out)


if __name__ == "__main__":
  main()
