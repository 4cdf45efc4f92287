"""Lower bound on tree-search time from XLA's per-iteration loop cost on CPU.

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
cannot be met by any search written as XLA loops on this CPU, whatever it
fuses.

    python benchmarks/descent_floor.py              # every record of the overhead JSON
    python benchmarks/descent_floor.py --batch 64 256 1024 --actions 9 64
"""

import argparse
import json
import os
import statistics
import time

import functools
import sys

import jax
import jax.numpy as jnp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import search_overhead as so  # pylint: disable=g-import-not-at-top,wrong-import-position
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


def network_only_seconds(hidden, actions, batch, sims, reps=7):
  """Median time of S chained network calls on the batch (no tree), as in
  ``search_overhead.py``, measured in this process."""
  params, root, _ = so.make_inputs(hidden, actions, batch)
  compiled, _, _ = so.compile_fn(
      functools.partial(so.network_only, num_simulations=sims), params, root)
  jax.block_until_ready(compiled(params, root))
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(params, root))
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
  p.add_argument("--out", default=os.path.join(HERE, "results", "descent_floor_cpu.json"))
  args = p.parse_args()
  with open(args.records) as f:
    records = [r for r in json.load(f)["results"] if r["hidden"] == args.hidden]
  if args.batch:
    records = [r for r in records if r["batch"] in args.batch]
  if args.actions:
    records = [r for r in records if r["actions"] in args.actions]
  cache, rows = {}, []
  print("| policy | A | B | S | mean depth | levels | select+backup us | floor ms |"
        " net-only ms | floor / net | fast / net (overhead JSON) |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in records:
    k = (r["batch"], r["actions"])
    if k not in cache:
      cache[k] = measure(*k)
    bare, step = cache[k]
    # One selection and one backup step per level per simulation.
    steps = r["mean_depth"] * r["sims"]
    floor = steps * step
    net = network_only_seconds(r["hidden"], r["actions"], r["batch"], r["sims"])
    row = dict(policy=r["policy"], actions=r["actions"], batch=r["batch"], sims=r["sims"],
               hidden=r["hidden"], mean_depth=r["mean_depth"], descent_steps=steps,
               bare_iteration_s=bare, step_iteration_s=step, floor_s=floor,
               net_s=net, floor_over_net=floor / net,
               fast_over_net=r["ratio_fast"], device=jax.devices()[0].device_kind,
               jax=jax.__version__, cpus=os.cpu_count(), load=os.getloadavg()[0])
    rows.append(row)
    print(f"| {r['policy']} | {r['actions']} | {r['batch']} | {r['sims']} | "
          f"{r['mean_depth']:.1f} | {steps:.0f} | {step * 1e6:.1f} | {floor * 1e3:.1f} | "
          f"{net * 1e3:.1f} | {floor / net:.2f} | {r['ratio_fast']:.2f} |",
          flush=True)
  with open(args.out, "w") as f:
    json.dump(dict(bare_and_select_backup_us={f"B={b},A={a}": [x * 1e6 for x in v]
                                     for (b, a), v in cache.items()},
                   rows=rows), f, indent=1)
  print("wrote", args.out)


if __name__ == "__main__":
  main()
