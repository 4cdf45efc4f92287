"""Pictures: the search tree and the learning curves, as functions and commands."""

import json
import sys

import pytest

pytest.importorskip("matplotlib")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

from mctx_planner import domains, plotting, search  # pylint: disable=wrong-import-position
from mctx_planner.cli import main  # pylint: disable=wrong-import-position

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def plan_output():
    """A deterministic 16-simulation pure search where X wins at cell 2."""
    domain = domains.make("tictactoe")
    state = domain.init(jax.random.PRNGKey(0))
    for cell in (0, 3, 1, 4):
        state = domain.step(state, jnp.int32(cell))
    planner = search.make_planner(
        search.true_model(domain, search.uniform_predict_fn(domain.num_actions)),
        search.SearchConfig(num_simulations=16, temperature=0.0,
                            dirichlet_fraction=0.0, gumbel_scale=0.0))
    batch = jax.tree_util.tree_map(lambda x: x[None], state)
    return planner.plan(None, jax.random.PRNGKey(0), batch)


def _count_nodes(t, node, depth, max_depth, min_visits):
    """Nodes the drawing should hold, counted straight from the tree arrays."""
    n = 1
    if depth >= max_depth:
        return n
    for a in range(t.children_index.shape[-1]):
        child = int(t.children_index[node, a])
        if child >= 0 and t.children_visits[node, a] >= min_visits:
            if t.children_discounts[node, a] == 0:
                n += 1
            else:
                n += _count_nodes(t, child, depth + 1, max_depth, min_visits)
    return n


@pytest.mark.parametrize("max_depth,min_visits", [(0, 1), (1, 1), (2, 1), (3, 2)])
def test_search_tree_draws_one_box_per_node(plan_output, tmp_path, max_depth,
                                            min_visits):
    path = tmp_path / "deep" / "tree.png"
    fig = plotting.plot_search_tree(plan_output.tree, 0, path, max_depth=max_depth,
                                    min_visits=min_visits)
    assert _is_png(path)
    boxes = [t for t in fig.axes[0].texts if t.get_gid() == "node"]
    tree = jax.tree_util.tree_map(lambda x: x[0], jax.device_get(plan_output.tree))
    assert fig.mctx_nodes == len(boxes) == _count_nodes(tree, 0, 0, max_depth,
                                                        min_visits)
    assert boxes[0].get_text().startswith(f"N={int(tree.node_visits[0])}")


def test_search_tree_names_the_principal_line(plan_output):
    cells = [f"r{r}c{c}" for r in range(3) for c in range(3)]
    fig = plotting.plot_search_tree(plan_output, 0, action_names=cells,
                                    position="X X .\nO O .\n. . .")
    title = fig._suptitle.get_text()  # pylint: disable=protected-access
    assert "principal line r0c2" in title          # X completes the top row
    edge_labels = [t.get_text() for t in fig.axes[0].texts if t.get_gid() != "node"]
    assert any(label.startswith("r0c2\np=") for label in edge_labels)
    assert any("X X ." in t.get_text() for t in fig.texts)


def test_search_tree_rejects_bad_limits(plan_output):
    with pytest.raises(ValueError, match="max_depth"):
        plotting.plot_search_tree(plan_output.tree, max_depth=-1)
    with pytest.raises(ValueError, match="min_visits"):
        plotting.plot_search_tree(plan_output.tree, min_visits=0)


def _records():
    """Four training iterations and one evaluation, as train writes them."""
    rows = [dict(loss=2.0 - 0.3 * i, policy_loss=1.0 - 0.1 * i, value_loss=1.0 - 0.2 * i,
                 grad_norm=1.0, iteration=i + 1, seconds=0.1, env_steps=64 * (i + 1),
                 env_steps_per_s=640.0) for i in range(4)]
    rows.append(dict(iteration=4, final=True, vs_random_score=0.9,
                     audit_search_perfect=False))
    return rows


def test_learning_curves_one_panel_per_metric(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in _records()))
    (run / "config.json").write_text(json.dumps(dict(algorithm="muzero",
                                                     domain="maze")))
    fig = plotting.plot_learning_curves(run, tmp_path / "curves.png")
    assert _is_png(tmp_path / "curves.png")
    # The loss, its components, then the rest; bookkeeping, booleans and the
    # one-point evaluation are not panels (the evaluation is in the footer).
    assert fig.mctx_keys == ["loss", "policy_loss", "value_loss", "grad_norm"]
    assert [ax.get_title() for ax in fig.axes] == fig.mctx_keys
    assert "(muzero on maze)" in fig._suptitle.get_text()  # pylint: disable=protected-access
    assert any("vs_random_score=0.9" in t.get_text() for t in fig.texts)

    fig = plotting.plot_learning_curves(_records(), keys=["value_loss", "vs_random_score"],
                                        x="env_steps")
    assert len(fig.axes) == 2 and fig.mctx_keys == ["value_loss", "vs_random_score"]
    # The evaluation record takes the env_steps of its iteration.
    assert list(fig.axes[1].lines[0].get_xdata()) == [256.0]


def test_learning_curves_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plotting.plot_learning_curves(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown metric"):
        plotting.plot_learning_curves(_records(), keys=["loss", "elo"])
    with pytest.raises(ValueError, match="x must be"):
        plotting.plot_learning_curves(_records(), x="seconds")
    with pytest.raises(ValueError, match="nothing to draw"):
        plotting.plot_learning_curves(_records()[:1])


def test_missing_matplotlib_says_how_to_install(plan_output, monkeypatch, capsys,
                                                tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"mctx-planner\[plot\]"):
        plotting.plot_search_tree(plan_output.tree)
    assert main(["plot", "--checkpoint", str(tmp_path)]) == 2
    assert "mctx-planner[plot]" in capsys.readouterr().err


# ------------------------------------------------------------------ commands
@pytest.fixture
def run_dir(tmp_path):
    """A run directory as ``mctx-planner train --out`` leaves it (metrics only).

    Written by hand: a real training run costs ~10 s of compilation, and the
    records above follow ``trainer.train``'s format (tests/test_cli.py trains).
    """
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in _records()))
    return out


def test_plot_command_draws_the_run(run_dir, capsys, tmp_path):
    assert main(["plot", "--checkpoint", str(run_dir)]) == 0
    assert _is_png(run_dir / "learning_curves.png")
    assert "panels: loss, policy_loss, value_loss" in capsys.readouterr().out
    out = tmp_path / "two.png"
    assert main(["plot", "--checkpoint", str(run_dir), "--out", str(out),
                 "--keys", "loss,grad_norm", "--x", "env_steps"]) == 0
    assert _is_png(out) and "2 panels" in capsys.readouterr().out


def test_plot_command_errors_are_one_line(tmp_path, capsys):
    assert main(["plot", "--checkpoint", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mctx-planner plot: error: no metrics file")
    assert err.count("\n") == 1


def test_search_png(tmp_path, capsys):
    png = tmp_path / "tree.png"
    assert main(["search", "--moves", "0,3,1,4", "--simulations", "16",
                 "--png", str(png), "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert _is_png(png) and "tree drawn in" in out and "chosen action 2" in out
    assert main(["search", "--png", str(png), "--min-visits", "0"]) == 2
    assert "--min-visits" in capsys.readouterr().err
