"""Search split over a CPU's cores (one JAX device per core) vs one device.

On CPU, XLA runs the fast backend's tree loops (descent, backup) on one core:
their steps are too small to be split over threads.  Exposing each core as a
JAX device (`--xla_force_host_platform_device_count`, or
`jax.config.update("jax_num_cpu_devices", n)` before JAX starts) and passing
the mesh to the planner (`make_planner(..., mesh=mesh)`) runs one independent
search per core on its share of the batch (`shard_map`).

For each configuration (policy, MLP hidden size H, actions A, batch B,
simulations S) this measures, in one process and in interleaved rounds:

* net-only: S chained network calls on the batch (`lax.scan`, no tree), on one
  device and split over the devices (the issue's denominator, both ways);
* the fast backend on one device and split over the devices;
* whether the split search gives the one-device result: the same keys and
  algorithm per example, but the network's matmuls may round differently on
  the smaller per-device batch, which can flip near-ties, so the table gives
  the share of examples with the same root visit counts.

With `--selfplay`, it also times training iterations of a Connect Four
self-play configuration: one device, the state sharded with `shard_state`
and left to XLA's automatic partitioning, and the same with
`make_agent(mesh=...)`.

  python benchmarks/search_devices.py                 # all cores, default grid
  python benchmarks/search_devices.py --devices 2 --selfplay --out results.json
  JAX_PLATFORMS=cuda python benchmarks/search_devices.py --batch 1024 8192

The last line splits over every GPU instead (`--devices` only creates CPU
devices; the mesh spans `jax.devices()`).
"""

import argparse
import json
import os
import sys


def _parse():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--devices", type=int, default=os.cpu_count(),
                 help="CPU devices to create (default: one per core)")
  p.add_argument("--policies", nargs="+", default=["muzero", "gumbel"])
  p.add_argument("--hidden", nargs="+", type=int, default=[64, 256])
  p.add_argument("--actions", nargs="+", type=int, default=[9, 64])
  p.add_argument("--batch", nargs="+", type=int, default=[64, 256, 1024])
  p.add_argument("--sims", nargs="+", type=int, default=[64, 256])
  p.add_argument("--budget", type=float, default=2.0,
                 help="seconds of timing per configuration (at least 3 rounds)")
  p.add_argument("--selfplay", action="store_true",
                 help="also time Connect Four training iterations")
  p.add_argument("--selfplay-only", action="store_true")
  p.add_argument("--out", default=None, help="JSON file for the results")
  return p.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:
  # The device count is fixed when JAX starts: set it before importing jax.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count="
                             f"{ARGS.devices}").strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

# pylint: disable=g-import-not-at-top,wrong-import-position
import functools
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import search_overhead as so  # the same network, roots and timing helpers
from mctx_planner import _fast_search


def _split(fn, mesh):
  """`fn(params, root)` run independently on each device's share of root."""
  return _fast_search._shard_map(fn, mesh, (P(), P("batch")), P("batch"))  # pylint: disable=protected-access


def run_config(mesh, policy, hidden, num_actions, batch, sims, budget_s):
  """Times one configuration; returns a dict of results."""
  fast_policy = so.POLICIES[policy][1]
  params, root, key = so.make_inputs(hidden, num_actions, batch)
  sharded_root = jax.device_put(root, NamedSharding(mesh, P("batch")))

  def search(params, key, root, mesh=None):
    kwargs = {} if mesh is None else dict(mesh=mesh)
    return fast_policy(params, key, root, so.recurrent_fn, sims, **kwargs)

  net = functools.partial(so.network_only, num_simulations=sims, policy=policy)
  res = dict(policy=policy, hidden=hidden, actions=num_actions, batch=batch,
             sims=sims, devices=len(mesh.devices.flat))
  net_one, _, _ = so.compile_fn(net, params, root)
  net_split, _, _ = so.compile_fn(_split(net, mesh), params, sharded_root)
  fast_one, res["compile_one_s"], _ = so.compile_fn(search, params, key, root)
  fast_split, res["compile_split_s"], _ = so.compile_fn(
      functools.partial(search, mesh=mesh), params, key, sharded_root)
  (res["net_one_s"], res["net_split_s"], res["fast_one_s"],
   res["fast_split_s"]) = so.time_interleaved(
       [(net_one, (params, root)), (net_split, (params, sharded_root)),
        (fast_one, (params, key, root)),
        (fast_split, (params, key, sharded_root))], budget_s)
  one, split = fast_one(params, key, root), fast_split(params, key,
                                                      sharded_root)
  res["exact"], res["allclose"] = so.outputs_identical(split, one)
  # The network's matmuls may round differently on the per-device batch
  # (another kernel blocking), which can flip near-ties in the tree: count
  # the examples whose root visit counts / actions are still identical.
  visits_one = np.asarray(one.search_tree.children_visits[:, 0])
  visits_split = np.asarray(split.search_tree.children_visits[:, 0])
  res["same_root_visits"] = float(np.mean(np.all(visits_one == visits_split,
                                                 axis=-1)))
  res["same_action"] = float(np.mean(np.asarray(one.action) ==
                                     np.asarray(split.action)))
  res["speedup"] = res["fast_one_s"] / res["fast_split_s"]
  res["ratio_one"] = res["fast_one_s"] / res["net_one_s"]
  res["ratio_split_vs_net_one"] = res["fast_split_s"] / res["net_one_s"]
  res["ratio_split_vs_net_split"] = res["fast_split_s"] / res["net_split_s"]
  res["mean_depth"], res["max_depth"] = so.tree_depths(one.search_tree)
  return res


def run_selfplay(mesh, rounds=5):
  """Connect Four preset: ms per self-play chunk and per training iteration.

  Three ways, timed in interleaved rounds (medians): one device; the state
  sharded with `shard_state` and left to XLA's automatic partitioning; the
  same with `make_agent(mesh=...)`.  "play" is the self-play chunk alone
  (`rollout`, 256 games x 32 moves x 32 simulations), "iteration" the whole
  training iteration (play, then 64 updates of 512 examples).
  """
  import dataclasses
  import statistics
  from mctx_planner.config import preset
  from mctx_planner.selfplay import rollout
  from mctx_planner.train import make_agent, shard_state
  from mctx_planner.search import make_planner
  from mctx_planner.train import search_config
  cfg = dataclasses.replace(preset("connect4", "gumbel_alphazero"),
                            replay_capacity=65536)
  out = dict(config="connect4 preset: 256 games x 32 moves, Gumbel 32 sims, "
                    "then 64 updates of 512", devices=len(mesh.devices.flat))
  one, split = make_agent(cfg), make_agent(cfg, mesh=mesh)
  split_planner = make_planner(one.planner.model, search_config(cfg),
                               mesh=mesh)
  variants = {"one_device": (one, one.planner, False),
              "auto_partitioned": (one, one.planner, True),
              "mesh": (split, split_planner, True)}
  states, plays, times = {}, {}, {}
  for name, (agent, planner, sharded) in variants.items():
    state = agent.init(jax.random.PRNGKey(0))
    if sharded:
      state = shard_state(state, mesh)
    # Warm-up: the first output's shardings can differ from shard_state's,
    # which compiles the iteration a second time.
    for _ in range(2):
      state, metrics = agent.iteration(state)
    jax.block_until_ready(metrics)
    states[name] = state
    plays[name] = jax.jit(functools.partial(
        rollout, agent.domain, planner.search, num_steps=cfg.unroll_length,
        opening_moves=cfg.opening_moves))
    jax.block_until_ready(plays[name](state.params, state.env_states,
                                      jax.random.PRNGKey(1)))
    times[name] = dict(play=[], iteration=[])
  for r in range(rounds):
    for name, (agent, _, _) in variants.items():
      state = states[name]
      t0 = time.perf_counter()
      jax.block_until_ready(plays[name](state.params, state.env_states,
                                        jax.random.PRNGKey(r)))
      times[name]["play"].append(time.perf_counter() - t0)
      t0 = time.perf_counter()
      state, metrics = agent.iteration(state)
      jax.block_until_ready(metrics)
      times[name]["iteration"].append(time.perf_counter() - t0)
      states[name] = state
  for name, t in times.items():
    for part, values in t.items():
      out[f"{name}_{part}_s"] = statistics.median(values)
    print(f"selfplay {name}: play {out[name + '_play_s'] * 1e3:.0f} ms, "
          f"iteration {out[name + '_iteration_s'] * 1e3:.0f} ms", flush=True)
  return out


def markdown(results):
  lines = ["| policy | H | A | B | S | net 1 dev ms | net split ms |"
           " fast 1 dev ms | fast split ms | split speedup | fast/net (1 dev)"
           " | split/net (1 dev) | split/net (split) | same root visits |",
           "|" + "---|" * 14]
  for r in results:
    lines.append(
        "| %s | %d | %d | %d | %d | %.1f | %.1f | %.1f | %.1f | %.2fx | %.2f |"
        " %.2f | %.2f | %s |" % (
            r["policy"], r["hidden"], r["actions"], r["batch"], r["sims"],
            r["net_one_s"] * 1e3, r["net_split_s"] * 1e3,
            r["fast_one_s"] * 1e3, r["fast_split_s"] * 1e3, r["speedup"],
            r["ratio_one"], r["ratio_split_vs_net_one"],
            r["ratio_split_vs_net_split"],
            "all (exact)" if r["exact"] else
            "all" if r["allclose"] else "%.0f%%" % (100 * r["same_root_visits"])))
  return "\n".join(lines)


def main(args):
  mesh = Mesh(np.array(jax.devices()), ("batch",))
  print(f"{len(jax.devices())} devices: {jax.devices()}; jax {jax.__version__}",
        flush=True)
  results = []
  if not args.selfplay_only:
    for policy in args.policies:
      for hidden in args.hidden:
        for actions in args.actions:
          for batch in args.batch:
            for sims in args.sims:
              if batch % len(mesh.devices.flat):
                continue
              r = run_config(mesh, policy, hidden, actions, batch, sims,
                             args.budget)
              results.append(r)
              print(json.dumps(r), flush=True)
    print(markdown(results))
  record = dict(devices=str(jax.devices()), jax=jax.__version__,
                cpu_count=os.cpu_count(), load_average=os.getloadavg(),
                search=results)
  if args.selfplay or args.selfplay_only:
    record["selfplay"] = run_selfplay(mesh)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(record, f, indent=1)
    print("written to", args.out)


if __name__ == "__main__":
  main(ARGS)
