"""Peer 'numpy' of the peers benchmark: a straightforward batched NumPy MCTS.

The tree of every example lives in `[B, N, A]` / `[B, N]` numpy arrays
(N = S + 1 nodes, as in mctx).  A Python loop runs the simulations; inside
it, the descent and the backup are Python loops over depth, each step
vectorised over the examples that are still moving (their row indices are
compacted as they stop).  The network (`common.NumpyNet`, float32) is called
once per simulation on the whole batch.

Selection is MuZero's PUCT as in `mctx.muzero_action_selection`, with the
Q-values normalised by `mctx.qtransform_by_parent_and_siblings` (min and max
over the node's value and its visited children's Q; unvisited children get
the minimum):

  pb_c  = 1.25 + log((N(s) + 19652 + 1) / 19652)
  score = norm_Q(s, a) + sqrt(N(s)) * pb_c * P(s, a) / (N(s, a) + 1)

The root counts as visited once with the network value (as in mctx), the
backup averages `reward + discount * G` into every node on the path, and the
discount (0.997) comes from the network.  There is no root noise and no
random tie-break (mctx adds 1e-7 * uniform), so the visit counts match mctx
`muzero_policy(dirichlet_fraction=0)` except where near-ties or float
rounding differences in the network flip an argmax.  Only the muzero policy
exists here.

  python benchmarks/peers/peer_numpy.py --json out.jsonl --work-dir DIR ...
"""

import argparse
import os
import sys
from typing import NamedTuple, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top

F32 = np.float32


class NumpyTree(NamedTuple):
  """Batched search tree (mctx's layout; node 0 is the root)."""
  children_index: np.ndarray     # [B, N, A] int32, -1 = not expanded
  children_visits: np.ndarray    # [B, N, A] int32
  children_values: np.ndarray    # [B, N, A] float32
  children_rewards: np.ndarray   # [B, N, A] float32
  children_discounts: np.ndarray  # [B, N, A] float32
  children_priors: np.ndarray    # [B, N, A] float32 (softmax of the logits)
  node_visits: np.ndarray        # [B, N] int32
  node_values: np.ndarray        # [B, N] float32
  parents: np.ndarray            # [B, N] int32, -1 for the root
  action_from_parent: np.ndarray  # [B, N] int32
  embeddings: np.ndarray         # [B, N, EMBED] float32


def softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


class NumpyMuZeroMCTS:
  """Batched MuZero MCTS over numpy arrays (see the module docstring)."""

  def __init__(self, net: common.NumpyNet, pb_c_init: float = common.PB_C_INIT,
               pb_c_base: float = common.PB_C_BASE):
    self.net = net
    self.pb_c_init = F32(pb_c_init)
    self.pb_c_base = F32(pb_c_base)

  @staticmethod
  def init_tree(root_logits: np.ndarray, root_value: np.ndarray,
                root_embedding: np.ndarray, num_simulations: int) -> NumpyTree:
    batch, num_actions = root_logits.shape
    nodes = num_simulations + 1
    bna = (batch, nodes, num_actions)
    tree = NumpyTree(
        children_index=np.full(bna, -1, np.int32),
        children_visits=np.zeros(bna, np.int32),
        children_values=np.zeros(bna, F32),
        children_rewards=np.zeros(bna, F32),
        children_discounts=np.zeros(bna, F32),
        children_priors=np.zeros(bna, F32),
        node_visits=np.zeros((batch, nodes), np.int32),
        node_values=np.zeros((batch, nodes), F32),
        parents=np.full((batch, nodes), -1, np.int32),
        action_from_parent=np.full((batch, nodes), -1, np.int32),
        embeddings=np.zeros((batch, nodes) + root_embedding.shape[1:], F32))
    tree.children_priors[:, 0] = softmax(root_logits)
    tree.node_values[:, 0] = root_value
    tree.node_visits[:, 0] = 1
    tree.embeddings[:, 0] = root_embedding
    return tree

  def select(self, tree: NumpyTree, rows: np.ndarray,
             nodes: np.ndarray) -> np.ndarray:
    """PUCT action at node `nodes[i]` of example `rows[i]`."""
    visits = tree.children_visits[rows, nodes]                  # [R, A]
    node_visit = tree.node_visits[rows, nodes].astype(F32)      # [R]
    pb_c = self.pb_c_init + np.log(
        (node_visit + self.pb_c_base + F32(1)) / self.pb_c_base)
    policy = ((np.sqrt(node_visit) * pb_c)[:, None]
              * tree.children_priors[rows, nodes] / (visits + 1).astype(F32))
    q = (tree.children_rewards[rows, nodes]
         + tree.children_discounts[rows, nodes]
         * tree.children_values[rows, nodes])
    visited = visits > 0
    node_value = tree.node_values[rows, nodes][:, None]
    safe_q = np.where(visited, q, node_value)
    lo = np.minimum(node_value, safe_q.min(-1, keepdims=True))
    hi = np.maximum(node_value, safe_q.max(-1, keepdims=True))
    norm_q = (np.where(visited, q, lo) - lo) / np.maximum(hi - lo, F32(1e-8))
    return (norm_q + policy).argmax(-1).astype(np.int32)

  def descend(self, tree: NumpyTree) -> Tuple[np.ndarray, np.ndarray]:
    """(parent node, action) of the edge each example expands next."""
    batch = tree.node_visits.shape[0]
    parent = np.zeros(batch, np.int32)
    action = np.zeros(batch, np.int32)
    rows = np.arange(batch)
    nodes = np.zeros(batch, np.int32)
    while rows.size:
      a = self.select(tree, rows, nodes)
      nxt = tree.children_index[rows, nodes, a]
      stop = nxt < 0
      parent[rows[stop]] = nodes[stop]
      action[rows[stop]] = a[stop]
      go = ~stop
      rows, nodes = rows[go], nxt[go]
    return parent, action

  def expand(self, tree: NumpyTree, parent: np.ndarray, action: np.ndarray,
             new: int) -> None:
    """Evaluates the network on the chosen edges and writes node `new`."""
    rows = np.arange(parent.shape[0])
    out = self.net(tree.embeddings[rows, parent], action)
    tree.children_index[rows, parent, action] = new
    tree.children_rewards[rows, parent, action] = out.reward
    tree.children_discounts[rows, parent, action] = out.discount
    tree.parents[:, new] = parent
    tree.action_from_parent[:, new] = action
    tree.children_priors[:, new] = softmax(out.logits)
    tree.node_values[:, new] = out.value
    tree.node_visits[:, new] = 1
    tree.embeddings[:, new] = out.embedding

  @staticmethod
  def backup(tree: NumpyTree, leaf: int) -> None:
    """Walks every example's path from node `leaf` up to the root."""
    batch = tree.node_visits.shape[0]
    rows = np.arange(batch)
    index = np.full(batch, leaf, np.int32)
    ret = tree.node_values[:, leaf].copy()     # the leaf's return G
    while rows.size:
      i = index[rows]
      p = tree.parents[rows, i]
      a = tree.action_from_parent[rows, i]
      count = tree.node_visits[rows, p]
      g = (tree.children_rewards[rows, p, a]
           + tree.children_discounts[rows, p, a] * ret[rows])
      c = count.astype(F32)
      tree.node_values[rows, p] = (tree.node_values[rows, p] * c + g) / (
          c + F32(1))
      tree.node_visits[rows, p] = count + 1
      tree.children_values[rows, p, a] = tree.node_values[rows, i]
      tree.children_visits[rows, p, a] += 1
      ret[rows] = g
      index[rows] = p
      keep = p != 0
      rows = rows[keep]

  def search(self, root_logits: np.ndarray, root_value: np.ndarray,
             root_embedding: np.ndarray, num_simulations: int) -> NumpyTree:
    tree = self.init_tree(root_logits, root_value, root_embedding,
                          num_simulations)
    for sim in range(num_simulations):
      parent, action = self.descend(tree)
      self.expand(tree, parent, action, sim + 1)
      self.backup(tree, sim + 1)
    return tree


def run_config(policy: str, hidden: int, num_actions: int, batch: int,
               sims: int, work: common.Work, args) -> dict:
  del policy
  row = dict(peer="numpy", policy="muzero", hidden=hidden,
             actions=num_actions, batch=batch, sims=sims,
             loadavg_before=common.loadavg())
  net = common.NumpyNet(work.params)
  mcts = NumpyMuZeroMCTS(net)
  logits, value, emb = work.roots[batch]
  search_times, net_times = common.time_interleaved(
      [lambda: mcts.search(logits, value, emb, sims),
       lambda: common.network_only(net, emb, num_actions, sims)],
      args.budget, args.min_reps, args.max_reps, args.slow_s)
  tree = mcts.search(logits, value, emb, sims)
  row["mean_depth"], row["max_depth"] = common.tree_depths(tree.parents)
  assert (tree.children_visits[:, 0].sum(-1) == sims).all()
  row["loadavg_after"] = common.loadavg()
  return common.finish_row(row, search_times, net_times)


def main() -> None:
  p = argparse.ArgumentParser(
      description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_grid_args(p, ["muzero"])
  args = p.parse_args()
  info = common.env_info("cpu (numpy)")
  vers = common.versions()
  get_work = common.work_loader(args.work_dir)

  if args.check:
    os.makedirs(args.check_dir, exist_ok=True)
    for policy, h, a, b, s in common.iter_checks(args):
      logits, value, emb = get_work(h, a).roots[b]
      tree = NumpyMuZeroMCTS(common.NumpyNet(get_work(h, a).params)).search(
          logits, value, emb, s)
      visits = tree.children_visits[:, 0]
      np.savez(common.check_path(args.check_dir, "numpy", policy, h, a, b, s),
               visit_counts=visits, argmax_visits=visits.argmax(-1))
      print("[numpy] check %s H=%d A=%d B=%d S=%d written" % (
          policy, h, a, b, s), flush=True)
  configs = list(common.iter_configs(args))
  for i, (policy, h, a, b, s) in enumerate(configs):
    row = run_config(policy, h, a, b, s, get_work(h, a), args)
    row.update(info)
    row["versions"] = vers
    common.write_row(args.json, row)
    common.progress("numpy", row, i + 1, len(configs))


if __name__ == "__main__":
  main()
