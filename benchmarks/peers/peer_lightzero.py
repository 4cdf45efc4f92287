"""Peer 'lightzero' of the peers benchmark: LightZero's C++ tree search.

Runs in its own venv (numpy<2, torch, lightzero 0.2.0; see
setup_lightzero_venv.sh).  The call sequence is the one of LightZero's
`MuZeroMCTSCtree.search` / `GumbelMuZeroMCTSCtree.search`
(`lzero/mcts/tree_search/mcts_ctree.py`), with the network evaluated outside
the tree between traverse and backpropagate:

  roots = Roots(B, legal_actions)                       # per search
  roots.prepare_no_noise(...)                           # expands the roots
  min_max = MinMaxStatsList(B); min_max.set_delta(0.01)
  for sim in range(S):
    results = ResultsWrapper(B)
    ix, iy, actions, to_play = batch_traverse(roots, ..., results, to_play)
    latent = <latent states of (ix, iy)>                # gather
    out = network(latent, actions)                      # numpy or torch
    batch_backpropagate(sim + 1, discount, rewards, values, logits,
                        min_max, results, to_play)      # expand + backup

muzero: `ctree_muzero.mz_tree` (PUCT 1.25 / 19652, discount 0.997,
`prepare_no_noise(rewards, logits, to_play)`).  gumbel:
`ctree_gumbel_muzero.gmz_tree` (sequential halving with 16 considered
actions, `prepare_no_noise(rewards, values, logits, to_play)`,
`batch_back_propagate`).  `to_play` is -1 (single player, as LightZero's
'not_board_games').  Both trees take Python lists (`.tolist()`), as
LightZero does.

Differences from mctx that do not change the amount of work: LightZero
normalises Q with running min-max statistics of the whole tree (with a
0.01 delta), not per parent and siblings, and does not count the root's
network value as a visit; so its visit counts are not expected to equal
mctx's.  The check verifies that the root's visit counts sum to S.

--gather vectorized (default) keeps the latent states in one
[S + 1, B, EMBED] array and gathers with one fancy index; --gather lightzero
reproduces LightZero's Python loop over the batch (`for ix, iy in zip(...)`
then `np.asarray`).  --net torch evaluates the network with torch (float32,
no_grad) instead of numpy, as LightZero's models do.  torch runs with ONE
thread (`torch.set_num_threads(1)`): on a shared CPU its thread pool slows
many-fold; numpy's BLAS keeps its default threads.

  peers-venv/bin/python benchmarks/peers/peer_lightzero.py --json out.jsonl \
      --work-dir DIR [grid args]
"""

import argparse
import os
import sys
import time
from typing import Callable, List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top

try:
  import torch  # pylint: disable=g-import-not-at-top
  from lzero.mcts.ctree.ctree_gumbel_muzero import gmz_tree  # pylint: disable=g-import-not-at-top
  from lzero.mcts.ctree.ctree_muzero import mz_tree  # pylint: disable=g-import-not-at-top
except ImportError as e:
  sys.exit("peer_lightzero.py: cannot import LightZero's ctree (%s). Run it "
           "with the LightZero venv's python: bash "
           "benchmarks/peers/setup_lightzero_venv.sh (see README.md)." % e)

torch.set_num_threads(1)   # see the module docstring

VALUE_DELTA_MAX = 0.01          # LightZero's default `value_delta_max`
MAX_CONSIDERED_ACTIONS = 16     # as mctx's gumbel default


class TorchNet:
  """`common.NumpyNet` computed with torch (inputs and outputs are numpy)."""

  def __init__(self, params):
    self.w1 = torch.from_numpy(params["w1"])
    self.action_embed = torch.from_numpy(params["action_embed"])
    self.w2 = torch.from_numpy(params["w2"])
    self.w_out = torch.from_numpy(params["w_out"])
    self.num_actions = self.action_embed.shape[0]

  def __call__(self, embedding: np.ndarray, action: np.ndarray) -> common.NetOut:
    a = self.num_actions
    with torch.no_grad():
      emb = torch.from_numpy(np.ascontiguousarray(embedding))
      act = torch.from_numpy(np.asarray(action, np.int64))
      h = torch.relu(emb @ self.w1 + self.action_embed[act])
      h = torch.relu(h @ self.w2)
      out = h @ self.w_out
      value = torch.tanh(out[:, a]).numpy()
      return common.NetOut(
          logits=out[:, :a].numpy(), value=value,
          reward=torch.tanh(out[:, a + 1]).numpy(),
          discount=np.full_like(value, common.DISCOUNT),
          embedding=torch.tanh(out[:, a + 2:]).numpy())


class LightZeroSearch:
  """One batched search with LightZero's ctree, network outside the tree."""

  def __init__(self, policy: str, net: Callable, num_actions: int,
               batch: int, gather: str):
    self.policy = policy
    self.tree = mz_tree if policy == "muzero" else gmz_tree
    self.net = net
    self.batch = batch
    self.gather = gather
    # Environment data, built once (LightZero builds it from the env's mask).
    self.legal_actions = [list(range(num_actions)) for _ in range(batch)]

  def search(self, root_logits: np.ndarray, root_value: np.ndarray,
             root_embedding: np.ndarray, num_simulations: int,
             depths: Optional[List[List[int]]] = None):
    """Returns the `Roots` after `num_simulations` simulations.

    With `depths` (a list, untimed runs only), appends each simulation's
    per-root depth of the expanded node (`ResultsWrapper.get_search_len`).
    """
    batch, tree = self.batch, self.tree
    discount = common.DISCOUNT
    to_play: List[int] = [-1] * batch
    roots = tree.Roots(batch, self.legal_actions)
    rewards0 = [0.0] * batch
    if self.policy == "muzero":
      roots.prepare_no_noise(rewards0, root_logits.tolist(), to_play)
    else:
      roots.prepare_no_noise(rewards0, root_value.tolist(),
                             root_logits.tolist(), to_play)
    min_max = tree.MinMaxStatsList(batch)
    min_max.set_delta(VALUE_DELTA_MAX)
    if self.gather == "vectorized":
      pool = np.empty((num_simulations + 1,) + root_embedding.shape,
                      np.float32)
      pool[0] = root_embedding
    else:
      pool_list = [root_embedding]
    for sim in range(num_simulations):
      results = tree.ResultsWrapper(batch)
      if self.policy == "muzero":
        ix, iy, actions, vtp = tree.batch_traverse(
            roots, int(common.PB_C_BASE), common.PB_C_INIT, discount, min_max,
            results, to_play)
      else:
        ix, iy, actions, vtp = tree.batch_traverse(
            roots, num_simulations, MAX_CONSIDERED_ACTIONS, discount, results,
            to_play)
      if depths is not None:
        depths.append(list(results.get_search_len()))
      if self.gather == "vectorized":
        latent = pool[np.asarray(ix), np.asarray(iy)]
      else:
        latent = np.asarray([pool_list[x][y] for x, y in zip(ix, iy)])
      out = self.net(latent, np.asarray(actions))
      if self.gather == "vectorized":
        pool[sim + 1] = out.embedding
      else:
        pool_list.append(out.embedding)
      backprop = (tree.batch_backpropagate if self.policy == "muzero" else
                  tree.batch_back_propagate)
      backprop(sim + 1, discount, out.reward.tolist(), out.value.tolist(),
               out.logits.tolist(), min_max, results, vtp)
    return roots


def make_net(kind: str, params):
  return TorchNet(params) if kind == "torch" else common.NumpyNet(params)


def run_config(policy: str, hidden: int, num_actions: int, batch: int,
               sims: int, work: common.Work, args) -> dict:
  row = dict(peer=args.peer_name, policy=policy, hidden=hidden,
             actions=num_actions, batch=batch, sims=sims, net=args.net,
             gather=args.gather, torch_threads=torch.get_num_threads(),
             loadavg_before=common.loadavg())
  net = make_net(args.net, work.params)
  lz = LightZeroSearch(policy, net, num_actions, batch, args.gather)
  logits, value, emb = work.roots[batch]
  search_times, net_times = common.time_interleaved(
      [lambda: lz.search(logits, value, emb, sims),
       lambda: common.network_only(net, emb, num_actions, sims)],
      args.budget, args.min_reps, args.max_reps, args.slow_s)
  depths: List[List[int]] = []
  roots = lz.search(logits, value, emb, sims, depths)
  row["mean_depth"] = float(np.mean(depths))
  row["max_depth"] = int(np.max(depths))
  sums = np.asarray(roots.get_distributions()).sum(-1)
  row["visit_sums_ok"] = bool((sums == sims).all())
  row["loadavg_after"] = common.loadavg()
  return common.finish_row(row, search_times, net_times)


def main() -> None:
  p = argparse.ArgumentParser(
      description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_grid_args(p, ["muzero", "gumbel"])
  p.add_argument("--net", choices=["numpy", "torch"], default="numpy",
                 help="evaluate the network with numpy (default) or torch "
                 "(1 thread)")
  p.add_argument("--gather", choices=["vectorized", "lightzero"],
                 default="vectorized",
                 help="how leaf latent states are gathered (see above)")
  p.add_argument("--peer-name", default=None,
                 help="name in the rows (default: lightzero, or "
                 "lightzero_torch with --net torch)")
  args = p.parse_args()
  if args.peer_name is None:
    args.peer_name = "lightzero" + ("_torch" if args.net == "torch" else "")
  info = common.env_info("cpu (lightzero ctree + %s network)" % args.net)
  vers = common.versions("torch", "LightZero", "DI-engine")
  get_work = common.work_loader(args.work_dir)

  if args.check:
    os.makedirs(args.check_dir, exist_ok=True)
    for policy, h, a, b, s in common.iter_checks(args):
      work = get_work(h, a)
      logits, value, emb = work.roots[b]
      t0 = time.perf_counter()
      roots = LightZeroSearch(policy, make_net(args.net, work.params), a, b,
                              args.gather).search(logits, value, emb, s)
      visits = np.asarray(roots.get_distributions())
      np.savez(common.check_path(args.check_dir, args.peer_name, policy, h, a,
                                 b, s),
               visit_counts=visits, argmax_visits=visits.argmax(-1))
      print("[%s] check %s H=%d A=%d B=%d S=%d: visit sums == S for %d/%d "
            "roots (%.2f s)" % (args.peer_name, policy, h, a, b, s,
                                int((visits.sum(-1) == s).sum()), b,
                                time.perf_counter() - t0), flush=True)
  configs = list(common.iter_configs(args))
  for i, (policy, h, a, b, s) in enumerate(configs):
    row = run_config(policy, h, a, b, s, get_work(h, a), args)
    row.update(info)
    row["versions"] = vers
    common.write_row(args.json, row)
    common.progress(args.peer_name, row, i + 1, len(configs))


if __name__ == "__main__":
  main()
