"""The two JAX peers: raw `mctx` and `mctx_planner._fast_search`.

`peer_mctx.py` and `peer_fast.py` call `main("mctx")` / `main("fast")`.
Both run `mctx.muzero_policy`-style calls, jitted, on the network of
`benchmarks/search_overhead.py` (imported from there, weights loaded from
the driver's export, which is `search_overhead.make_params(H, A, seed=0)`
and `make_root(params, B, seed=1)`).  Compile time is measured separately
(`jax.jit(...).lower(...).compile()`) and excluded from the search time.

MuZero runs with `dirichlet_fraction=0` (no root noise, as the numpy and
LightZero peers); the Dirichlet sample is still drawn by the policy.  Gumbel
runs with mctx's defaults (16 considered actions, gumbel_scale 1).
"""

import argparse
import functools
import os
import sys
from typing import Callable, Dict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))               # benchmarks/
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # repo root

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import mctx  # pylint: disable=g-import-not-at-top

import common  # pylint: disable=g-import-not-at-top
import search_overhead as so  # pylint: disable=g-import-not-at-top
from mctx_planner import _fast_search  # pylint: disable=g-import-not-at-top

POLICY_FNS: Dict[str, Dict[str, Callable]] = {
    "mctx": dict(muzero=mctx.muzero_policy,
                 gumbel=mctx.gumbel_muzero_policy),
    "fast": dict(muzero=_fast_search.muzero_policy,
                 gumbel=_fast_search.gumbel_muzero_policy),
}
POLICY_KWARGS = dict(muzero=dict(dirichlet_fraction=0.0), gumbel={})


def _inputs(work: common.Work, batch: int):
  params = {k: jnp.asarray(v) for k, v in work.params.items()}
  logits, value, emb = work.roots[batch]
  root = mctx.RootFnOutput(prior_logits=jnp.asarray(logits),
                           value=jnp.asarray(value),
                           embedding=jnp.asarray(emb))
  return params, root


def _compile(fn, *args, single_task=False):
  compiled, seconds, _ = so.compile_fn(fn, *args, single_task=single_task)
  return compiled, seconds


def _search_fn(backend: str, policy: str, sims: int):
  fn = POLICY_FNS[backend][policy]
  kwargs = POLICY_KWARGS[policy]

  def search(params, key, root):
    return fn(params, key, root, so.recurrent_fn, sims, **kwargs)

  return search


def run_config(backend: str, policy: str, hidden: int, num_actions: int,
               batch: int, sims: int, work: common.Work, args) -> dict:
  """Times one configuration; returns its row."""
  row = dict(peer=backend, policy=policy, hidden=hidden, actions=num_actions,
             batch=batch, sims=sims, loadavg_before=common.loadavg())
  if backend == "mctx" and batch * sims * sims * num_actions > args.max_work:
    row["skipped"] = ("B*S*S*A = %.2g > --max-work %.2g (raw mctx's backup "
                      "rewrites [B, S, A] arrays per step)" % (
                          batch * sims * sims * num_actions, args.max_work))
    row["loadavg_after"] = common.loadavg()
    return row
  params, root = _inputs(work, batch)
  key = jax.random.PRNGKey(42)
  search, row["compile_s"] = _compile(
      _search_fn(backend, policy, sims), params, key, root,
      single_task=so.fast_single_task(batch, sims, num_actions, backend=backend))
  net, row["net_compile_s"] = _compile(
      functools.partial(so.network_only, num_simulations=sims), params, root)
  search_times, net_times = common.time_interleaved(
      [lambda: jax.block_until_ready(search(params, key, root)),
       lambda: jax.block_until_ready(net(params, root))],
      args.budget, args.min_reps, args.max_reps, args.slow_s)
  out = search(params, key, root)
  row["mean_depth"], row["max_depth"] = common.tree_depths(
      out.search_tree.parents)
  row["loadavg_after"] = common.loadavg()
  return common.finish_row(row, search_times, net_times)


def run_check(backend: str, policy: str, hidden: int, num_actions: int,
              batch: int, sims: int, work: common.Work, check_dir: str):
  """One untimed search; root visit counts and actions to an .npz."""
  params, root = _inputs(work, batch)
  out = jax.jit(_search_fn(backend, policy, sims))(
      params, jax.random.PRNGKey(42), root)
  visits = np.asarray(out.search_tree.summary().visit_counts)
  np.savez(common.check_path(check_dir, backend, policy, hidden, num_actions,
                             batch, sims),
           visit_counts=visits, action=np.asarray(out.action),
           argmax_visits=visits.argmax(-1),
           action_weights=np.asarray(out.action_weights))
  print("[%s] check %s H=%d A=%d B=%d S=%d written" % (
      backend, policy, hidden, num_actions, batch, sims), flush=True)


def main(backend: str) -> None:
  p = argparse.ArgumentParser(
      description="Peer '%s' of the peers benchmark: %s policies, jitted, "
      "one process for the whole grid. Normally started by run_peers.py."
      % (backend, "raw mctx" if backend == "mctx" else
         "mctx_planner._fast_search"),
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  common.add_grid_args(p, ["muzero", "gumbel"])
  p.add_argument("--max-work", type=float, default=7e8,
                 help="(mctx only) skip configurations with B*S*S*A above "
                 "this: raw mctx needs minutes per call there on CPU")
  args = p.parse_args()
  info = common.env_info(str(jax.devices()[0]), jax_platform=jax.default_backend())
  vers = common.versions("jax", "jaxlib", "mctx", "mctx-planner")
  get_work = common.work_loader(args.work_dir)

  if args.check:
    os.makedirs(args.check_dir, exist_ok=True)
    for policy, h, a, b, s in common.iter_checks(args):
      run_check(backend, policy, h, a, b, s, get_work(h, a), args.check_dir)
  configs = list(common.iter_configs(args))
  for i, (policy, h, a, b, s) in enumerate(configs):
    row = run_config(backend, policy, h, a, b, s, get_work(h, a), args)
    row.update(info)
    row["versions"] = vers
    common.write_row(args.json, row)
    common.progress(backend, row, i + 1, len(configs))
