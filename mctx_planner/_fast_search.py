"""Batch-first MCTS search with the exact semantics of DeepMind's ``mctx``.

``mctx.search`` vmaps a per-example tree descent (a ``while_loop``) and a
per-example backup (a ``while_loop`` that carries the whole tree) over the
batch.  Under ``vmap`` every iteration of those loops turns into selects over
the complete ``[B, N, A]`` tree arrays, so on CPU the tree bookkeeping costs
far more than the network itself.

This module keeps the tree layout of ``mctx.Tree`` (``[B, N, ...]``) but runs
every phase batch-first:

* descent: ONE ``while_loop`` over depth for the whole batch.  Every example
  starts at the root at the same time and goes down one level per iteration,
  so the depth is shared; examples that stopped keep their node/action.
  Per iteration only the ``[B, A]`` rows of the current nodes are gathered.
* expansion: ``O(B * A)`` scatters with explicit batch indices.
* backup: ONE ``while_loop`` over depth that walks the ``B`` paths up in
  lockstep and scatters into ``O(B)`` entries per step (examples that already
  reached the root write out of bounds, which is dropped).

Action selection, q-transforms and all random-key handling mirror mctx, so
the produced ``mctx.Tree``, actions and action weights are the same as mctx's
for the same inputs and keys (bit-identical in our tests on CPU).  The
user-supplied ``qtransform`` (an mctx-style function of an *unbatched* tree and
a node index) is applied to a one-node view of the tree holding only the rows
of the nodes being evaluated, vmapped over the batch, which costs ``O(B * A)``.
A custom qtransform therefore may only read the row of ``node_index`` (true for
all of mctx's qtransforms).
"""

import functools
import math
from typing import Any, Callable, Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import mctx
from mctx._src import base as _mctx_base

Tree = mctx.Tree

__all__ = [
    "search",
    "muzero_policy",
    "gumbel_muzero_policy",
    "stochastic_muzero_policy",
]

# A batched selection function:
#   (selection keys [B], tree [B, N, ...], node indices [B], depth scalar)
#   -> actions [B] int32
BatchedSelectFn = Callable[[chex.PRNGKey, Tree, chex.Array, chex.Array],
                           chex.Array]


# --------------------------------------------------------------------------
# Tree helpers.
# --------------------------------------------------------------------------


def _batch_range(tree: Tree) -> chex.Array:
  return jnp.arange(tree.node_values.shape[0])


def _node_view(tree: Tree, node: chex.Array) -> Tree:
  """Returns a tree of one node per example: the rows of `node` [B].

  The result has leaves `[B, 1, ...]` (plus the per-example
  `root_invalid_actions` and `extra_data`), so that mctx-style per-example
  functions can be vmapped over it with node index 0.  Fields that the caller
  does not read are removed by XLA's dead code elimination.
  """
  b = _batch_range(tree)

  def row(x):
    return x[b, node][:, None]

  return tree.replace(
      node_visits=row(tree.node_visits),
      raw_values=row(tree.raw_values),
      node_values=row(tree.node_values),
      parents=row(tree.parents),
      action_from_parent=row(tree.action_from_parent),
      children_index=row(tree.children_index),
      children_prior_logits=row(tree.children_prior_logits),
      children_visits=row(tree.children_visits),
      children_rewards=row(tree.children_rewards),
      children_discounts=row(tree.children_discounts),
      children_values=row(tree.children_values),
      embeddings=jax.tree.map(row, tree.embeddings))


def _per_node(fn):
  """Lifts `fn(key, one_node_tree, depth)` to a `BatchedSelectFn`."""

  def batched(keys, tree, node, depth):
    view = _node_view(tree, node)
    return jax.vmap(fn, in_axes=(0, 0, None))(keys, view, depth)

  return batched


def _init_tree(root: mctx.RootFnOutput, num_simulations: int,
               invalid_actions: chex.Array, extra_data: Any) -> Tree:
  """Allocates the `[B, S+1, ...]` tree and writes the root (node 0)."""
  chex.assert_rank(root.prior_logits, 2)
  batch_size, num_actions = root.prior_logits.shape
  chex.assert_shape(root.value, [batch_size])
  n = num_simulations + 1
  vdtype = root.value.dtype
  bn = (batch_size, n)
  bna = (batch_size, n, num_actions)

  def embeddings_storage(x):
    # Node 0 holds the root embedding, the other nodes zeros.
    pad = [(0, 0), (0, n - 1)] + [(0, 0)] * (x.ndim - 1)
    return jnp.pad(x[:, None], pad)

  def first_node(x, dtype=None):
    x = jnp.asarray(x, dtype=dtype)
    pad = [(0, 0), (0, n - 1)] + [(0, 0)] * (x.ndim - 1)
    return jnp.pad(x[:, None], pad)

  return Tree(
      node_visits=first_node(jnp.ones([batch_size], jnp.int32)),
      raw_values=first_node(root.value, vdtype),
      node_values=first_node(root.value, vdtype),
      parents=jnp.full(bn, Tree.NO_PARENT, dtype=jnp.int32),
      action_from_parent=jnp.full(bn, Tree.NO_PARENT, dtype=jnp.int32),
      children_index=jnp.full(bna, Tree.UNVISITED, dtype=jnp.int32),
      children_prior_logits=first_node(root.prior_logits),
      children_values=jnp.zeros(bna, dtype=vdtype),
      children_visits=jnp.zeros(bna, dtype=jnp.int32),
      children_rewards=jnp.zeros(bna, dtype=vdtype),
      children_discounts=jnp.zeros(bna, dtype=vdtype),
      embeddings=jax.tree.map(embeddings_storage, root.embedding),
      root_invalid_actions=invalid_actions,
      extra_data=extra_data)


_split_each = jax.vmap(jax.random.split)


def _next_keys(keys):
  """Per example: `(key, selection_key) = split(key)`, as mctx's simulate."""
  pairs = _split_each(keys)
  return pairs[:, 0], pairs[:, 1]


def _descend(keys: chex.PRNGKey, tree: Tree, root_select: BatchedSelectFn,
             interior_select: BatchedSelectFn,
             max_depth: int) -> Tuple[chex.Array, chex.Array]:
  """Batched equivalent of mctx's vmapped `simulate`.

  Returns `(node [B], action [B])`: the node reached and the action to
  expand from it.
  """
  b = _batch_range(tree)
  batch_size = b.shape[0]
  dtype = tree.children_prior_logits.dtype

  keys, sel_keys = _next_keys(keys)
  node = jnp.zeros([batch_size], jnp.int32)
  action = root_select(sel_keys, tree, node, jnp.zeros((), dtype))
  child = tree.children_index[b, node, action]
  depth = jnp.ones((), jnp.int32)
  active = jnp.logical_and(child != Tree.UNVISITED, depth < max_depth)

  def cond(state):
    return jnp.any(state[-1])

  def body(state):
    keys, node, action, child, depth, active = state
    keys, sel_keys = _next_keys(keys)
    node = jnp.where(active, child, node)
    new_action = interior_select(sel_keys, tree, node, depth.astype(dtype))
    action = jnp.where(active, new_action, action)
    child = tree.children_index[b, node, action]
    depth = depth + 1
    active = active & (child != Tree.UNVISITED) & (depth < max_depth)
    return keys, node, action, child, depth, active

  state = (keys, node, action, child, depth, active)
  _, node, action, _, _, _ = jax.lax.while_loop(cond, body, state)
  return node, action


def _expand(params, rng_key, tree: Tree, recurrent_fn, parent: chex.Array,
            action: chex.Array, child: chex.Array) -> Tree:
  """Evaluates `(parent, action)` and writes the result at node `child`."""
  b = _batch_range(tree)
  embedding = jax.tree.map(lambda x: x[b, parent], tree.embeddings)
  step, embedding = recurrent_fn(params, rng_key, action, embedding)
  batch_size, num_actions = b.shape[0], tree.children_index.shape[-1]
  chex.assert_shape(step.prior_logits, [batch_size, num_actions])
  chex.assert_shape([step.reward, step.discount, step.value], (batch_size,))

  def at_node(x, v):
    return x.at[b, child].set(v, unique_indices=True)

  def at_edge(x, v):
    return x.at[b, parent, action].set(v, unique_indices=True)

  # With `max_depth`, an existing node can be evaluated again: it is then
  # overwritten and its visit count incremented, as in mctx.
  visits = tree.node_visits[b, child] + 1
  return tree.replace(
      children_prior_logits=at_node(tree.children_prior_logits,
                                    step.prior_logits),
      raw_values=at_node(tree.raw_values, step.value),
      node_values=at_node(tree.node_values, step.value),
      node_visits=at_node(tree.node_visits, visits),
      embeddings=jax.tree.map(at_node, tree.embeddings, embedding),
      children_index=at_edge(tree.children_index, child),
      children_rewards=at_edge(tree.children_rewards, step.reward),
      children_discounts=at_edge(tree.children_discounts, step.discount),
      parents=at_node(tree.parents, parent),
      action_from_parent=at_node(tree.action_from_parent, action))


def _backup(tree: Tree, leaf: chex.Array) -> Tree:
  """Batched equivalent of mctx's vmapped `backward`.

  All paths go up one level per iteration; the loop runs until every example
  reached the root.  Examples already at the root write to the out-of-bounds
  node `N`, which the scatters drop.
  """
  b = _batch_range(tree)
  num_nodes = tree.node_values.shape[1]
  leaf = jnp.asarray(leaf, jnp.int32)

  def cond(state):
    return jnp.any(state[-1] != Tree.ROOT_INDEX)

  def body(state):
    node_values, node_visits, children_values, children_visits, value, node = (
        state)
    active = node != Tree.ROOT_INDEX
    parent = jnp.where(active, tree.parents[b, node], Tree.ROOT_INDEX)
    action = tree.action_from_parent[b, node]
    count = node_visits[b, parent]
    reward = tree.children_rewards[b, parent, action]
    new_value = reward + tree.children_discounts[b, parent, action] * value
    parent_value = (node_values[b, parent] * count + new_value) / (count + 1.0)
    edge_value = node_values[b, node]
    edge_visits = children_visits[b, parent, action] + 1

    w_parent = jnp.where(active, parent, num_nodes)  # out of bounds: dropped

    def put(x, v, *idx):
      return x.at[(b,) + idx].set(v, mode="drop", unique_indices=True)

    node_values = put(node_values, parent_value, w_parent)
    node_visits = put(node_visits, count + 1, w_parent)
    children_values = put(children_values, edge_value, w_parent, action)
    children_visits = put(children_visits, edge_visits, w_parent, action)
    value = jnp.where(active, new_value, value)
    return (node_values, node_visits, children_values, children_visits, value,
            parent)

  state = (tree.node_values, tree.node_visits, tree.children_values,
           tree.children_visits, tree.node_values[b, leaf], leaf)
  node_values, node_visits, children_values, children_visits, _, _ = (
      jax.lax.while_loop(cond, body, state))
  return tree.replace(
      node_values=node_values,
      node_visits=node_visits,
      children_values=children_values,
      children_visits=children_visits)


def search(params: chex.ArrayTree,
           rng_key: chex.PRNGKey,
           *,
           root: mctx.RootFnOutput,
           recurrent_fn: mctx.RecurrentFn,
           root_select: BatchedSelectFn,
           interior_select: BatchedSelectFn,
           num_simulations: int,
           max_depth: Optional[int] = None,
           invalid_actions: Optional[chex.Array] = None,
           extra_data: Any = None,
           loop_fn: mctx.LoopFn = jax.lax.fori_loop) -> Tree:
  """Batch-first counterpart of `mctx.search` (same tree, same key usage).

  `root_select` / `interior_select` are *batched* selection functions
  `(keys [B], tree, node [B], depth) -> action [B]` (see `_per_node`).
  """
  batch_size = root.value.shape[0]
  b = jnp.arange(batch_size)
  if max_depth is None:
    max_depth = num_simulations
  if invalid_actions is None:
    invalid_actions = jnp.zeros_like(root.prior_logits)

  def one_simulation(sim, state):
    rng_key, tree = state
    rng_key, simulate_key, expand_key = jax.random.split(rng_key, 3)
    simulate_keys = jax.random.split(simulate_key, batch_size)
    parent, action = _descend(simulate_keys, tree, root_select,
                              interior_select, max_depth)
    # A node created by simulation `sim` gets index `sim + 1`.
    child = tree.children_index[b, parent, action]
    child = jnp.where(child == Tree.UNVISITED, sim + 1, child)
    tree = _expand(params, expand_key, tree, recurrent_fn, parent, action,
                   child)
    tree = _backup(tree, child)
    return rng_key, tree

  tree = _init_tree(root, num_simulations, invalid_actions, extra_data)
  _, tree = loop_fn(0, num_simulations, one_simulation, (rng_key, tree))
  return tree


# --------------------------------------------------------------------------
# Per-example action selection (vmapped over one-node views).
# --------------------------------------------------------------------------


def _argmax_valid(scores, invalid):
  """argmax over actions, never picking an action flagged in `invalid`."""
  if invalid is not None:
    scores = jnp.where(invalid, -jnp.inf, scores)
  return jnp.argmax(scores, axis=-1).astype(jnp.int32)


def _puct_action(key, view: Tree, depth, *, pb_c_init, pb_c_base,
                 qtransform):
  """MuZero PUCT selection at node 0 of a one-node view (as mctx)."""
  visits = view.children_visits[0]
  n = view.node_visits[0]
  c = pb_c_init + jnp.log((n + pb_c_base + 1.) / pb_c_base)
  probs = jax.nn.softmax(view.children_prior_logits[0])
  exploration = jnp.sqrt(n) * c * probs / (visits + 1)
  exploitation = qtransform(view, 0)
  tie_break = 1e-7 * jax.random.uniform(key, (view.num_actions,))
  scores = exploitation + exploration + tie_break
  # Invalid actions are only masked at the root.
  return _argmax_valid(scores, view.root_invalid_actions * (depth == 0))


def _considered_visits_sequence(max_considered: int, num_simulations: int):
  """Visit count that Sequential Halving considers at each simulation."""
  if max_considered <= 1:
    return tuple(range(num_simulations))
  rounds = int(math.ceil(math.log2(max_considered)))
  out = []
  counts = [0] * max_considered
  k = max_considered
  while len(out) < num_simulations:
    per_phase = max(1, int(num_simulations / (rounds * k)))
    for _ in range(per_phase):
      out.extend(counts[:k])
      counts[:k] = [c + 1 for c in counts[:k]]
    k = max(2, k // 2)
  return tuple(out[:num_simulations])


def _considered_visits_table(max_considered: int, num_simulations: int):
  """Table `[max_considered + 1, num_simulations]` of considered visits."""
  return tuple(
      _considered_visits_sequence(m, num_simulations)
      for m in range(max_considered + 1))


def _gumbel_score(considered_visit, gumbel, logits, qvalues, visits):
  """Sequential-halving score: only actions at `considered_visit` compete."""
  logits = logits - jnp.max(logits, keepdims=True, axis=-1)
  penalty = jnp.where(visits == considered_visit, 0, -jnp.inf)
  return jnp.maximum(-1e9, gumbel + logits + qvalues) + penalty


def _gumbel_root_action(key, view: Tree, depth, *, table, max_considered,
                        qtransform):
  """Gumbel MuZero root selection (Sequential Halving), as mctx."""
  del key, depth
  visits = view.children_visits[0]
  logits = view.children_prior_logits[0]
  qvalues = qtransform(view, 0)
  num_valid = jnp.sum(1 - view.root_invalid_actions, axis=-1).astype(jnp.int32)
  considered = jnp.minimum(max_considered, num_valid)
  # At the root, the sum of the visit counts is the simulation index.
  considered_visit = table[considered, jnp.sum(visits, -1)]
  scores = _gumbel_score(considered_visit, view.extra_data.root_gumbel, logits,
                         qvalues, visits)
  return _argmax_valid(scores, view.root_invalid_actions)


def _gumbel_interior_action(key, view: Tree, depth, *, qtransform):
  """Gumbel MuZero deterministic interior selection, as mctx."""
  del key, depth
  visits = view.children_visits[0]
  logits = view.children_prior_logits[0]
  qvalues = qtransform(view, 0)
  probs = jax.nn.softmax(logits + qvalues)
  scores = probs - visits / (1 + jnp.sum(visits, keepdims=True, axis=-1))
  return jnp.argmax(scores, axis=-1).astype(jnp.int32)


# --------------------------------------------------------------------------
# Policies.
# --------------------------------------------------------------------------


def _mask_invalid_actions(logits, invalid_actions):
  """Gives (finite) minimal logits to invalid actions, as mctx."""
  if invalid_actions is None:
    return logits
  chex.assert_equal_shape([logits, invalid_actions])
  logits = logits - jnp.max(logits, axis=-1, keepdims=True)
  return jnp.where(invalid_actions, jnp.finfo(logits.dtype).min, logits)


def _log_probs(probs):
  return jnp.log(jnp.maximum(probs, jnp.finfo(probs.dtype).tiny))


def _dirichlet_mix(key, probs, *, dirichlet_alpha, dirichlet_fraction):
  chex.assert_rank(probs, 2)
  chex.assert_type([dirichlet_alpha, dirichlet_fraction], float)
  batch_size, num_actions = probs.shape
  noise = jax.random.dirichlet(
      key, alpha=jnp.full([num_actions], fill_value=dirichlet_alpha),
      shape=(batch_size,))
  return (1 - dirichlet_fraction) * probs + dirichlet_fraction * noise


def _with_temperature(logits, temperature):
  logits = logits - jnp.max(logits, keepdims=True, axis=-1)
  return logits / jnp.maximum(jnp.finfo(logits.dtype).tiny, temperature)


def _noisy_root(root, key, invalid_actions, dirichlet_alpha,
                dirichlet_fraction):
  probs = _dirichlet_mix(
      key, jax.nn.softmax(root.prior_logits),
      dirichlet_alpha=dirichlet_alpha, dirichlet_fraction=dirichlet_fraction)
  return root.replace(
      prior_logits=_mask_invalid_actions(_log_probs(probs), invalid_actions))


def _act_by_visits(rng_key, tree, temperature):
  weights = tree.summary().visit_probs
  logits = _with_temperature(_log_probs(weights), temperature)
  return jax.random.categorical(rng_key, logits), weights


def muzero_policy(
    params: chex.ArrayTree,
    rng_key: chex.PRNGKey,
    root: mctx.RootFnOutput,
    recurrent_fn: mctx.RecurrentFn,
    num_simulations: int,
    invalid_actions: Optional[chex.Array] = None,
    max_depth: Optional[int] = None,
    loop_fn: mctx.LoopFn = jax.lax.fori_loop,
    *,
    qtransform=mctx.qtransform_by_parent_and_siblings,
    dirichlet_fraction: chex.Numeric = 0.25,
    dirichlet_alpha: chex.Numeric = 0.3,
    pb_c_init: chex.Numeric = 1.25,
    pb_c_base: chex.Numeric = 19652,
    temperature: chex.Numeric = 1.0) -> mctx.PolicyOutput[None]:
  """Drop-in replacement for `mctx.muzero_policy` (same outputs)."""
  rng_key, dirichlet_key, search_key = jax.random.split(rng_key, 3)
  root = _noisy_root(root, dirichlet_key, invalid_actions, dirichlet_alpha,
                     dirichlet_fraction)
  select = _per_node(functools.partial(
      _puct_action, pb_c_init=pb_c_init, pb_c_base=pb_c_base,
      qtransform=qtransform))
  tree = search(
      params, search_key, root=root, recurrent_fn=recurrent_fn,
      root_select=select, interior_select=select,
      num_simulations=num_simulations, max_depth=max_depth,
      invalid_actions=invalid_actions, loop_fn=loop_fn)
  action, weights = _act_by_visits(rng_key, tree, temperature)
  return mctx.PolicyOutput(action=action, action_weights=weights,
                           search_tree=tree)


def gumbel_muzero_policy(
    params: chex.ArrayTree,
    rng_key: chex.PRNGKey,
    root: mctx.RootFnOutput,
    recurrent_fn: mctx.RecurrentFn,
    num_simulations: int,
    invalid_actions: Optional[chex.Array] = None,
    max_depth: Optional[int] = None,
    loop_fn: mctx.LoopFn = jax.lax.fori_loop,
    *,
    qtransform=mctx.qtransform_completed_by_mix_value,
    max_num_considered_actions: int = 16,
    gumbel_scale: chex.Numeric = 1.,
) -> mctx.PolicyOutput[mctx.GumbelMuZeroExtraData]:
  """Drop-in replacement for `mctx.gumbel_muzero_policy` (same outputs)."""
  root = root.replace(
      prior_logits=_mask_invalid_actions(root.prior_logits, invalid_actions))
  rng_key, gumbel_key = jax.random.split(rng_key)
  gumbel = gumbel_scale * jax.random.gumbel(
      gumbel_key, shape=root.prior_logits.shape, dtype=root.prior_logits.dtype)

  table = jnp.array(_considered_visits_table(max_num_considered_actions,
                                             num_simulations))
  root_select = _per_node(functools.partial(
      _gumbel_root_action, table=table,
      max_considered=max_num_considered_actions, qtransform=qtransform))
  interior_select = _per_node(functools.partial(
      _gumbel_interior_action, qtransform=qtransform))
  tree = search(
      params, rng_key, root=root, recurrent_fn=recurrent_fn,
      root_select=root_select, interior_select=interior_select,
      num_simulations=num_simulations, max_depth=max_depth,
      invalid_actions=invalid_actions,
      extra_data=mctx.GumbelMuZeroExtraData(root_gumbel=gumbel),
      loop_fn=loop_fn)

  # Act with the best of the most visited actions (by gumbel + logits + q).
  visit_counts = tree.summary().visit_counts
  considered_visit = jnp.max(visit_counts, axis=-1, keepdims=True)
  qvalues = jax.vmap(qtransform, in_axes=[0, None])(tree, Tree.ROOT_INDEX)
  scores = _gumbel_score(considered_visit, gumbel, root.prior_logits, qvalues,
                         visit_counts)
  action = _argmax_valid(scores, invalid_actions)
  weights = jax.nn.softmax(
      _mask_invalid_actions(root.prior_logits + qvalues, invalid_actions))
  return mctx.PolicyOutput(action=action, action_weights=weights,
                           search_tree=tree)


# --------------------------------------------------------------------------
# Stochastic MuZero.
# --------------------------------------------------------------------------


def _split_actions(tree: Tree, num_actions: int, part: str) -> Tree:
  """Keeps the decision (`[:A]`) or chance (`[A:]`) columns of the tree."""
  cut = (lambda x: x[..., :num_actions]) if part == "decision" else (
      lambda x: x[..., num_actions:])
  return tree.replace(
      children_index=cut(tree.children_index),
      children_prior_logits=cut(tree.children_prior_logits),
      children_visits=cut(tree.children_visits),
      children_rewards=cut(tree.children_rewards),
      children_discounts=cut(tree.children_discounts),
      children_values=cut(tree.children_values),
      root_invalid_actions=cut(tree.root_invalid_actions))


def _stochastic_action(key, view: Tree, depth, *, num_actions, decision_fn):
  """Decision nodes: PUCT over actions; chance nodes: prior-matching."""
  chance = _split_actions(view, num_actions, "chance")
  chance_probs = jax.nn.softmax(chance.children_prior_logits[0])
  chance_action = jnp.argmax(
      chance_probs / (chance.children_visits[0] + 1), axis=-1).astype(
          jnp.int32) + num_actions
  decision_action = decision_fn(
      key, _split_actions(view, num_actions, "decision"), depth)
  return jnp.where(view.embeddings.is_decision_node[0], decision_action,
                   chance_action)


def _stochastic_recurrent_fn(decision_fn, chance_fn, num_actions,
                             num_chance_outcomes):
  """One recurrent fn over `A + C` joint actions (decision or chance)."""

  def recurrent_fn(params, rng, joint_action, state):
    batch_size = jax.tree_util.tree_leaves(state.state_embedding)[0].shape[0]
    decision_out, afterstate = decision_fn(params, rng, joint_action,
                                           state.state_embedding)
    as_decision = mctx.RecurrentFnOutput(
        prior_logits=jnp.concatenate([
            jnp.full([batch_size, num_actions], -jnp.inf),
            decision_out.chance_logits], axis=-1),
        value=decision_out.afterstate_value,
        reward=jnp.zeros_like(decision_out.afterstate_value),
        discount=jnp.ones_like(decision_out.afterstate_value))
    chance_out, next_state = chance_fn(params, rng, joint_action - num_actions,
                                       state.afterstate_embedding)
    as_chance = mctx.RecurrentFnOutput(
        prior_logits=jnp.concatenate([
            chance_out.action_logits,
            jnp.full([batch_size, num_chance_outcomes], -jnp.inf)], axis=-1),
        value=chance_out.value,
        reward=chance_out.reward,
        discount=chance_out.discount)

    def pick(d, c):
      is_decision = jnp.reshape(state.is_decision_node,
                                [-1] + [1] * (d.ndim - 1))
      return jnp.where(is_decision, d, c)

    out = jax.tree.map(pick, as_decision, as_chance)
    return out, _mctx_base.StochasticRecurrentState(
        state_embedding=next_state,
        afterstate_embedding=afterstate,
        is_decision_node=jnp.logical_not(state.is_decision_node))

  return recurrent_fn


def stochastic_muzero_policy(
    params: chex.ArrayTree,
    rng_key: chex.PRNGKey,
    root: mctx.RootFnOutput,
    decision_recurrent_fn,
    chance_recurrent_fn,
    num_simulations: int,
    invalid_actions: Optional[chex.Array] = None,
    max_depth: Optional[int] = None,
    loop_fn: mctx.LoopFn = jax.lax.fori_loop,
    *,
    qtransform=mctx.qtransform_by_parent_and_siblings,
    dirichlet_fraction: chex.Numeric = 0.25,
    dirichlet_alpha: chex.Numeric = 0.3,
    pb_c_init: chex.Numeric = 1.25,
    pb_c_base: chex.Numeric = 19652,
    temperature: chex.Numeric = 1.0) -> mctx.PolicyOutput[None]:
  """Drop-in replacement for `mctx.stochastic_muzero_policy`."""
  num_actions = root.prior_logits.shape[-1]
  rng_key, dirichlet_key, search_key = jax.random.split(rng_key, 3)
  root = _noisy_root(root, dirichlet_key, invalid_actions, dirichlet_alpha,
                     dirichlet_fraction)

  # A dummy afterstate (same call and key as mctx) gives the afterstate
  # embedding structure and the number of chance outcomes.
  batch_size = jax.tree_util.tree_leaves(root.embedding)[0].shape[0]
  dummy_out, dummy_afterstate = decision_recurrent_fn(
      params, rng_key, jnp.zeros([batch_size], jnp.int32), root.embedding)
  num_chance = dummy_out.chance_logits.shape[-1]
  root = root.replace(
      prior_logits=jnp.concatenate(
          [root.prior_logits,
           jnp.full([batch_size, num_chance], fill_value=-jnp.inf)], axis=-1),
      embedding=_mctx_base.StochasticRecurrentState(
          state_embedding=root.embedding,
          afterstate_embedding=dummy_afterstate,
          is_decision_node=jnp.ones([batch_size], dtype=bool)))
  recurrent_fn = _stochastic_recurrent_fn(
      decision_recurrent_fn, chance_recurrent_fn, num_actions, num_chance)

  decision_fn = functools.partial(
      _puct_action, pb_c_init=pb_c_init, pb_c_base=pb_c_base,
      qtransform=qtransform)
  select = _per_node(functools.partial(
      _stochastic_action, num_actions=num_actions, decision_fn=decision_fn))
  tree = search(
      params, search_key, root=root, recurrent_fn=recurrent_fn,
      root_select=select, interior_select=select,
      num_simulations=num_simulations, max_depth=max_depth,
      invalid_actions=invalid_actions, loop_fn=loop_fn)

  tree = _split_actions(tree, num_actions, "decision")
  action, weights = _act_by_visits(rng_key, tree, temperature)
  return mctx.PolicyOutput(action=action, action_weights=weights,
                           search_tree=tree)
