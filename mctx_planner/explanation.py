"""Human-readable summaries of a search: why did the planner choose that?

* :func:`explain` -- a per-action table (prior, visits, Q, policy target,
  chosen action) with the root values and the principal line.
* :func:`principal_line` -- the most-visited path from the root.
* :func:`to_dot` -- the top of the tree as Graphviz DOT text.

All functions read one example ``index`` of a batched :class:`PlanOutput` or
``mctx.Tree`` on the host; they are for people, not for jitted code.

Q-values are from the point of view of the player choosing at that node
(for two-player games the library's sign convention makes this so).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import jax
import numpy as np

from mctx_planner.search import PlanOutput


def _example(tree, index: int):
    tree = jax.device_get(tree)
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[index], tree)


def _name(action: int, action_names: Optional[Sequence[str]]) -> str:
    if action_names is not None and action < len(action_names):
        return str(action_names[action])
    return str(action)


def principal_line(tree, index: int = 0, max_length: int = 32) -> List[int]:
    """Actions along the most-visited path from the root of example ``index``."""
    t = _example(tree, index)
    line, node = [], 0
    for _ in range(max_length):
        visits = t.children_visits[node]
        if visits.max() <= 0:
            break
        action = int(np.argmax(visits))
        line.append(action)
        ended = t.children_discounts[node, action] == 0  # the move ended the game
        node = int(t.children_index[node, action])
        if node < 0 or ended:
            break
    return line


def _qvalues(t, node: int) -> np.ndarray:
    child = t.children_index[node]
    child_values = np.where(child >= 0, t.node_values[np.maximum(child, 0)], 0.0)
    return t.children_rewards[node] + t.children_discounts[node] * child_values


def explain(output: PlanOutput, index: int = 0, *,
            action_names: Optional[Sequence[str]] = None,
            only_visited: bool = False) -> str:
    """A readable table of one search.

    Args:
      output: a batched :class:`PlanOutput` (from ``planner.plan``).
      index: which example of the batch.
      action_names: optional names for the actions (e.g. board cells).
      only_visited: list only actions with at least one visit.

    Returns:
      Multi-line text: root values, one row per action (prior probability,
      visits, Q, policy target, legal, chosen) and the principal line.
    """
    t = _example(output.tree, index)
    logits = np.asarray(jax.device_get(output.prior_logits))[index]
    weights = np.asarray(jax.device_get(output.action_weights))[index]
    chosen = int(np.asarray(jax.device_get(output.action))[index])
    prior = np.exp(logits - logits.max())
    prior = prior / prior.sum()
    visits = t.children_visits[0]
    q = _qvalues(t, 0)
    legal = ~np.asarray(t.root_invalid_actions, bool)
    lines = [
        f"search value {float(t.node_values[0]):+.3f} "
        f"(network {float(jax.device_get(output.prior_value)[index]):+.3f}), "
        f"{int(t.node_visits[0])} visits, chosen action {_name(chosen, action_names)}",
        f"{'action':>8} {'prior':>7} {'visits':>7} {'Q':>7} {'target':>7}  note",
    ]
    order = np.lexsort((-prior, -visits))
    for a in order:
        if only_visited and visits[a] == 0:
            continue
        note = "chosen" if a == chosen else ("illegal" if not legal[a] else "")
        q_text = f"{q[a]:+7.3f}" if visits[a] > 0 else f"{'-':>7}"
        lines.append(f"{_name(int(a), action_names):>8} {prior[a]:7.3f} "
                     f"{int(visits[a]):7d} {q_text} {weights[a]:7.3f}  {note}")
    line = principal_line(output.tree, index)
    lines.append("principal line: " + (" -> ".join(
        _name(a, action_names) for a in line) or "(none)"))
    return "\n".join(lines)


def to_dot(tree, index: int = 0, *, max_depth: int = 3, min_visits: int = 1,
           action_names: Optional[Sequence[str]] = None) -> str:
    """Graphviz DOT text of the top of the search tree of example ``index``.

    Nodes show visits and value; edges show the action, its prior and Q.
    Render with ``dot -Tpng tree.dot -o tree.png``.

    Args:
      tree: a batched ``mctx.Tree`` (``output.tree``).
      index: which example of the batch.
      max_depth: deepest level drawn.
      min_visits: children with fewer visits are left out.
      action_names: optional action labels.
    """
    t = _example(tree, index)
    out = ["digraph search {", '  node [shape=box, fontname="monospace"];']
    stack = [(0, 0)]
    while stack:
        node, depth = stack.pop()
        out.append(f'  n{node} [label="N={int(t.node_visits[node])}\\n'
                   f'V={float(t.node_values[node]):+.3f}"];')
        if depth >= max_depth:
            continue
        logits = t.children_prior_logits[node]
        prior = np.exp(logits - logits.max())
        prior = prior / prior.sum()
        q = _qvalues(t, node)
        for a in np.argsort(-t.children_visits[node]):
            child = int(t.children_index[node, a])
            if child < 0 or t.children_visits[node, a] < min_visits:
                continue
            out.append(f'  n{node} -> n{child} [label="{_name(int(a), action_names)}'
                       f' p={prior[a]:.2f} Q={q[a]:+.2f}"];')
            stack.append((child, depth + 1))
    out.append("}")
    return "\n".join(out)
