"""Pictures of a search and of a training run (PNG files, via matplotlib).

* :func:`plot_search_tree` -- the top of a search tree as a layered drawing:
  boxes with visits and values, edges with action, prior and Q, edge width
  proportional to visits, the principal line highlighted.
* :func:`plot_learning_curves` -- a training run's ``metrics.jsonl`` as a grid
  of small panels, one metric per panel.

matplotlib is an optional dependency (``pip install "mctx-planner[plot]"``),
imported only when a function here is called. The functions build a
``matplotlib.figure.Figure`` with the Agg canvas directly, without pyplot, so
they change no global state, need no display and are safe in scripts, tests
and servers. Each returns the figure (save it again, or embed it) and, given
``path``, also writes a PNG.

Both figures carry a small documented attribute that says what was drawn
(``fig.mctx_nodes``, ``fig.mctx_keys``), for tests and for code that wants to
check a picture without looking at it.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pathlib
import textwrap
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from mctx_planner.explanation import _example, _name, _qvalues, principal_line

_INSTALL_HINT = ('plotting needs matplotlib: pip install "mctx-planner[plot]" '
                 '(or pip install matplotlib)')

#: Bookkeeping columns of ``metrics.jsonl``: never drawn as a panel by default.
_BOOKKEEPING = ("iteration", "seconds", "env_steps", "env_steps_per_s", "final")

_HIGHLIGHT = "#d62728"   # the principal line
_EDGE = "#7f7f7f"        # every other edge


def _matplotlib():
    """matplotlib's ``Figure`` and Agg canvas classes, imported on first use.

    Raises:
      ImportError: matplotlib is not installed (the message says how to get it).
    """
    try:
        # The package itself first: a cached submodule would import without
        # it, so a missing or blocked matplotlib would fail later, unexplained.
        importlib.import_module("matplotlib")
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
        from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
    except ImportError as e:
        raise ImportError(_INSTALL_HINT) from e
    return Figure, FigureCanvasAgg


def _new_figure(width: float, height: float, dpi: float = 100.0):
    """A ``Figure`` with an Agg canvas attached (no pyplot, no global state)."""
    figure_cls, canvas_cls = _matplotlib()
    fig = figure_cls(figsize=(width, height), dpi=dpi)
    canvas_cls(fig)
    return fig


def _save(fig, path: Optional[Union[str, os.PathLike]]) -> None:
    if path is None:
        return
    path = pathlib.Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    # Pillow's optimiser keeps the files small enough for a repository's docs.
    fig.savefig(path, format="png", dpi=fig.dpi, pil_kwargs=dict(optimize=True))


# ------------------------------------------------------------------ the tree
class _Node:
    """One drawn node of the tree and the edge that leads to it."""

    def __init__(self, index: int, depth: int, action: int = -1, prior: float = 0.0,
                 q: float = 0.0, edge_visits: int = 0, terminal: bool = False):
        self.index, self.depth, self.action = index, depth, action
        self.prior, self.q, self.edge_visits = prior, q, edge_visits
        self.terminal = terminal
        self.children: List["_Node"] = []
        self.x = 0.0
        self.on_line = False


def _softmax(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max())
    return p / p.sum()


def _collect(t, node: int, depth: int, max_depth: int, min_visits: int,
             parent_edge: Optional[Dict[str, Any]] = None) -> _Node:
    """The drawn subtree below ``node``: children by visits, most visited first."""
    me = _Node(node, depth, **(parent_edge or {}))
    if depth >= max_depth or me.terminal:
        return me
    prior = _softmax(t.children_prior_logits[node])
    q = _qvalues(t, node)
    visits = t.children_visits[node]
    for a in np.lexsort((np.arange(len(visits)), -visits)):
        child = int(t.children_index[node, a])
        if child < 0 or visits[a] < min_visits:
            continue
        edge = dict(action=int(a), prior=float(prior[a]), q=float(q[a]),
                    edge_visits=int(visits[a]),
                    terminal=bool(t.children_discounts[node, a] == 0))
        me.children.append(_collect(t, child, depth + 1, max_depth, min_visits, edge))
    return me


def _layout(root: _Node) -> int:
    """Tidy layout: leaves at x = 0, 1, 2, ...; a parent centred over its children.

    Returns:
      The number of leaves (the drawing's width in leaf slots).
    """
    next_leaf = [0]

    def place(n: _Node):
        if not n.children:
            n.x = float(next_leaf[0])
            next_leaf[0] += 1
            return
        for c in n.children:
            place(c)
        n.x = (n.children[0].x + n.children[-1].x) / 2

    place(root)
    return next_leaf[0]


def _walk(root: _Node):
    stack = [root]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _mark_line(root: _Node, line: Sequence[int]) -> None:
    node = root
    node.on_line = True
    for action in line:
        nxt = [c for c in node.children if c.action == action]
        if not nxt:
            return
        node = nxt[0]
        node.on_line = True


def plot_search_tree(tree, index: int = 0, path: Optional[Union[str, os.PathLike]] = None,
                     *, max_depth: int = 3, min_visits: int = 1,
                     action_names: Optional[Sequence[str]] = None,
                     title: Optional[str] = None, position: Optional[str] = None):
    """Draws the top of the search tree of example ``index`` (a PNG if ``path``).

    The picture that :func:`~mctx_planner.explanation.to_dot` describes, drawn
    with matplotlib alone (no Graphviz). Each box is a node: ``N`` its visit
    count, ``V`` its value for the player to move there. Each edge is an
    action: its name, the prior probability ``p`` and ``Q``, the value of the
    action for the player choosing it (with the library's two-player sign
    convention). Edge width grows with the edge's visits; the principal line
    (the most-visited path, :func:`~mctx_planner.explanation.principal_line`)
    is drawn in red. A node reached by a move that ended the episode is grey
    and marked ``end``. Children are ordered most visited first, so the
    principal line runs down the left.

    Args:
      tree: a batched ``mctx.Tree`` (``planner.plan(...).tree``, leading batch
        axis ``[B, ...]``), or the :class:`~mctx_planner.search.PlanOutput`
        itself.
      index: which example of the batch.
      path: where to write the PNG (parent folders are created); None: only
        return the figure.
      max_depth: deepest level drawn (the root is level 0).
      min_visits: children with fewer visits are left out (raise it to thin a
        wide tree).
      action_names: optional labels, ``action_names[a]`` for action ``a``.
      title: the figure title; default: simulations and principal line.
      position: optional text drawn in the top-left corner in a monospaced
        font, e.g. ``domain.render(state)`` of the searched position.

    Returns:
      A ``matplotlib.figure.Figure``. Its attribute ``mctx_nodes`` (int) is
        the number of nodes drawn (one box each).

    Raises:
      ImportError: matplotlib is not installed.
      ValueError: ``max_depth`` is negative or ``min_visits`` below 1.
    """
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")
    if min_visits < 1:
        raise ValueError(f"min_visits must be >= 1, got {min_visits}")
    tree = getattr(tree, "tree", tree)    # a PlanOutput is fine too
    t = _example(tree, index)
    root = _collect(t, 0, 0, max_depth, min_visits)
    line = principal_line(tree, index)
    _mark_line(root, line)
    leaves = _layout(root)
    nodes = list(_walk(root))
    depth = max(n.depth for n in nodes)

    slot, level = 1.35, 1.55        # inches per leaf and per level
    fig = _new_figure(max(4.0, slot * leaves + 0.6), level * (depth + 1) + 1.0)
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.86 if title != "" else 0.96))
    ax.set_axis_off()
    ax.set_xlim(-0.6, leaves - 0.4)
    ax.set_ylim(-depth - 0.45, 0.45)
    root_visits = max(int(t.node_visits[0]), 1)

    for n in nodes:
        for c in n.children:
            _draw_edge(ax, n, c, root_visits, action_names)
    for n in nodes:
        _draw_node(ax, n, t)

    if title is None:
        names = " -> ".join(_name(a, action_names) for a in line) or "(none)"
        title = (f"search tree: {int(t.node_visits[0])} visits at the root, "
                 f"principal line {names}")
    if title:
        fig.suptitle(title, fontsize=10, y=0.985)
    fig.text(0.01, 0.005, "box: N visits, V value for the player to move | edge: "
             "action, p prior, Q for the player choosing; width ~ visits; red: "
             "principal line", fontsize=7, color="0.35", ha="left", va="bottom")
    if position:
        fig.text(0.01, 0.97 if not title else 0.93, position, fontsize=8,
                 family="monospace", ha="left", va="top",
                 bbox=dict(boxstyle="round,pad=0.4", fc="white", ec="0.7"))
    fig.mctx_nodes = len(nodes)
    _save(fig, path)
    return fig


def _draw_edge(ax, parent: _Node, child: _Node, root_visits: int,
               action_names: Optional[Sequence[str]]) -> None:
    px, py, cx, cy = parent.x, -parent.depth, child.x, -child.depth
    on_line = parent.on_line and child.on_line
    width = 0.6 + 6.0 * child.edge_visits / root_visits
    ax.plot([px, cx], [py, cy], color=_HIGHLIGHT if on_line else _EDGE,
            linewidth=width, alpha=0.9 if on_line else 0.6, zorder=1,
            solid_capstyle="round")
    f = 0.68                        # label near the child: siblings are wider apart
    ax.text(px + f * (cx - px), py + f * (cy - py),
            f"{_name(child.action, action_names)}\np={child.prior:.2f} Q={child.q:+.2f}",
            ha="center", va="center", fontsize=7, zorder=2,
            color=_HIGHLIGHT if on_line else "0.2",
            fontweight="bold" if on_line else "normal",
            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))


def _draw_node(ax, n: _Node, t) -> None:
    label = f"N={int(t.node_visits[n.index])}\nV={float(t.node_values[n.index]):+.2f}"
    if n.terminal:
        label += "\nend"
    ax.text(n.x, -n.depth, label, ha="center", va="center", fontsize=8,
            family="monospace", zorder=3, gid="node",
            bbox=dict(boxstyle="round,pad=0.35",
                      fc="#eeeeee" if n.terminal else ("#fde0dd" if n.on_line
                                                        else "white"),
                      ec=_HIGHLIGHT if n.on_line else "0.4",
                      lw=1.6 if n.on_line else 0.8))


# ------------------------------------------------------- the learning curves
def _read_metrics(source: Union[str, os.PathLike, Sequence[Mapping[str, Any]]]) -> Tuple[List[Dict[str, Any]], str]:
    """The records of a run and a name for it.

    ``source``: a run directory, a ``metrics.jsonl`` file, or the records.
    """
    if isinstance(source, (str, os.PathLike)):
        path = pathlib.Path(source)
        if not path.is_file():        # a run directory (or a missing one)
            path = path / "metrics.jsonl"
        if not path.is_file():
            raise FileNotFoundError(
                f"no metrics file {path} (train with --out DIR to write one)")
        records = []
        for number, text in enumerate(path.read_text().splitlines(), 1):
            if not text.strip():
                continue
            try:
                records.append(json.loads(text))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not JSON ({e})") from e
        name = path.parent.name if path.name == "metrics.jsonl" else path.name
        return records, name + _describe_config(path.parent / "config.json")
    return [dict(r) for r in source], ""


def _describe_config(path: pathlib.Path) -> str:
    """`` (algorithm on domain)`` from a run's ``config.json``; "" without one."""
    try:
        config = json.loads(path.read_text())
        return f" ({config['algorithm']} on {config['domain']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _series(records: Sequence[Mapping[str, Any]], x: str
            ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Every numeric metric as (x values, y values), in first-appearance order.

    Evaluation records carry only ``iteration``; their x for ``env_steps`` is
    that of the training record of the same iteration.
    """
    steps = {r["iteration"]: r["env_steps"] for r in records
             if "iteration" in r and "env_steps" in r}
    points: Dict[str, List[Tuple[float, float]]] = {}
    for r in records:
        if x == "env_steps":
            at = r.get("env_steps", steps.get(r.get("iteration")))
        else:
            at = r.get("iteration")
        if at is None:
            continue
        for k, v in r.items():
            if _is_number(v):
                points.setdefault(k, []).append((float(at), float(v)))
    return {k: (np.array([p[0] for p in v]), np.array([p[1] for p in v]))
            for k, v in points.items()}


def _default_keys(series: Mapping[str, Tuple[np.ndarray, np.ndarray]]) -> List[str]:
    """The loss first, then its components, then everything else with a curve."""
    keys = [k for k in series if k not in _BOOKKEEPING and len(series[k][0]) > 1]
    losses = sorted(k for k in keys if k.endswith("_loss"))
    first = [k for k in ("loss",) if k in keys] + losses
    return first + [k for k in keys if k not in first]


def _running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over ``window`` points (fewer at the ends), so it does not lag."""
    c = np.cumsum(np.insert(y, 0, 0.0))
    i = np.arange(len(y))
    lo = np.maximum(i - window // 2, 0)
    hi = np.minimum(i + (window - window // 2), len(y))
    return (c[hi] - c[lo]) / (hi - lo)


def plot_learning_curves(run_dir_or_metrics: Union[str, os.PathLike,
                                                 Sequence[Mapping[str, Any]]],
                         path: Optional[Union[str, os.PathLike]] = None, *,
                         keys: Optional[Sequence[str]] = None, x: str = "iteration",
                         smooth: Optional[int] = None, columns: int = 4):
    """Draws a training run's metrics, one small panel per metric.

    Reads what :func:`~mctx_planner.trainer.train` writes with ``out_dir``:
    ``metrics.jsonl`` holds one JSON object per iteration (``loss`` and its
    components such as ``policy_loss`` and ``value_loss``, ``grad_norm``,
    ``root_value``, ``episodes``, ...) and one per evaluation (``vs_random_score``,
    ``audit_search_nonoptimal``, ...). Every numeric metric becomes a series
    over iterations (or environment steps); booleans and the bookkeeping
    columns (``iteration``, ``seconds``, ``env_steps``, ``env_steps_per_s``)
    are not drawn. Metrics measured only once (e.g. the final evaluation of a
    run without ``eval_every``) are written under the panels instead.

    Args:
      run_dir_or_metrics: a run directory (``--out`` of ``mctx-planner
        train``), a ``metrics.jsonl`` file, or the records themselves (e.g.
        ``TrainResult.history``, a list of dicts).
      path: where to write the PNG (parent folders are created); None: only
        return the figure.
      keys: the metrics to draw, in panel order; default: ``loss``, the other
        ``*_loss`` components, then every other metric with at least two
        points, in the order of the file.
      x: the horizontal axis: ``"iteration"`` or ``"env_steps"``.
      smooth: window of a centred running mean drawn over the faint raw
        curve; None: about a tenth of the points once there are 20 or more;
        0 or 1: raw curves only.
      columns: panels per row.

    Returns:
      A ``matplotlib.figure.Figure`` with one axes per drawn metric. Its
        attribute ``mctx_keys`` (list of str) names the metric of each axes,
        in order.

    Raises:
      ImportError: matplotlib is not installed.
      FileNotFoundError: no ``metrics.jsonl`` where a path points.
      ValueError: an unknown key or ``x``, a line that is not JSON, or
        nothing to draw.
    """
    if x not in ("iteration", "env_steps"):
        raise ValueError(f"x must be 'iteration' or 'env_steps', got {x!r}")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    records, name = _read_metrics(run_dir_or_metrics)
    series = _series(records, x)
    if keys is None:
        keys = _default_keys(series)
        once = [k for k in series if k not in _BOOKKEEPING and k not in keys]
    else:
        keys = list(keys)
        unknown = [k for k in keys if k not in series]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; the run has "
                             f"{sorted(k for k in series if k not in _BOOKKEEPING)}")
        once = []
    if not keys:
        raise ValueError("nothing to draw: the run has no metric with two or more "
                         "points (train for more iterations)")

    cols = min(columns, len(keys))
    rows = -(-len(keys) // cols)
    footer = _footer(series, once, x)
    footer_lines = footer.count("\n") + 1 if footer else 0
    height = 2.3 * rows + 0.6 + 0.16 * footer_lines
    fig = _new_figure(3.3 * cols, height)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        _panel(ax, key, *series[key], smooth)
        if i >= len(keys) - cols:
            ax.set_xlabel("environment steps" if x == "env_steps" else "iteration",
                          fontsize=8)
    fig.suptitle(f"learning curves{': ' + name if name else ''}", fontsize=11)
    bottom = (0.16 * footer_lines + 0.1) / height
    fig.tight_layout(rect=(0, bottom, 1, 1 - 0.35 / height))
    if footer:
        fig.text(0.01, 0.01, footer, fontsize=7, color="0.25", ha="left",
                 va="bottom", family="monospace")
    fig.mctx_keys = list(keys)
    _save(fig, path)
    return fig


def _panel(ax, key: str, xs: np.ndarray, ys: np.ndarray, smooth: Optional[int]) -> None:
    if smooth is None:
        smooth = max(len(ys) // 10, 1) if len(ys) >= 20 else 1
    few = len(ys) < 12
    if smooth > 1:
        ax.plot(xs, ys, color="C0", alpha=0.3, linewidth=0.8)
        ax.plot(xs, _running_mean(ys, smooth), color="C0", linewidth=1.6)
    else:
        ax.plot(xs, ys, color="C0", linewidth=1.4, marker="o" if few else None,
                markersize=3)
    ax.set_title(key, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 5))


def _footer(series: Mapping[str, Tuple[np.ndarray, np.ndarray]],
            once: Sequence[str], x: str) -> str:
    """One-point metrics as wrapped text: ``measured once at iteration 60: ...``."""
    if not once:
        return ""
    items = [f"{k}={series[k][1][-1]:g}" for k in once]
    at = {f"{series[k][0][-1]:g}" for k in once}
    where = f" at {x.replace('_', ' ')} {at.pop()}" if len(at) == 1 else ""
    return "\n".join(textwrap.wrap(f"measured once{where}: " + ", ".join(items), 150))
