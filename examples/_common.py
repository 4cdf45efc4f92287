"""Command-line pieces the example scripts share (not part of the library).

Each example is a script (``python examples/NAME.py``); Python puts this
folder on ``sys.path``, so ``from _common import ...`` works without
installing anything.
"""

from __future__ import annotations

import argparse
import dataclasses

import mctx_planner as mp


def example_parser(doc: str, *, config_flags: bool = True,
                   iterations_help: str = "override the preset's iteration count"
                   ) -> argparse.ArgumentParser:
    """The flags every example has: ``--tiny``, ``--iterations``, ``--seed``,
    and with ``config_flags`` also ``--set FIELD=VALUE`` and ``--plot FILE``.

    The description is the first paragraph of the example's docstring.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true",
                        help="a few seconds of training (smoke test)")
    parser.add_argument("--iterations", type=int, default=None, help=iterations_help)
    parser.add_argument("--seed", type=int, default=0)
    if config_flags:
        parser.add_argument("--set", dest="overrides", action="append", default=[],
                            metavar="FIELD=VALUE",
                            help="override a TrainConfig field, as in mctx-planner "
                                 "train (e.g. --set num_simulations=16)")
        parser.add_argument("--plot", default=None, metavar="FILE",
                            help="write a PNG (needs matplotlib)")
    return parser


def tiny(config: mp.TrainConfig, **overrides) -> mp.TrainConfig:
    """A seconds-long version of ``config`` (``--tiny``: a smoke test, not a
    result): a few small iterations, a 16-unit one-layer network (its value
    and reward supports kept), then ``overrides``."""
    network = dataclasses.replace(config.network, hidden_size=16, num_layers=1,
                                  latent_size=16)
    fields = dict(iterations=2, num_envs=8, unroll_length=4, num_simulations=4,
                  eval_simulations=4, max_num_considered_actions=4,
                  num_unroll_steps=1, replay_capacity=64, batch_size=16,
                  updates_per_iteration=2, warmup_steps=1, network=network)
    fields.update(overrides)
    return config.replace(**fields)


def finish_config(config: mp.TrainConfig, args: argparse.Namespace) -> mp.TrainConfig:
    """Applies ``--iterations`` and then the ``--set`` overrides (validated)."""
    if args.iterations:
        config = config.replace(iterations=args.iterations)
    return mp.apply_overrides(config, getattr(args, "overrides", []))


def train_example(config: mp.TrainConfig, what: str, summaries: int = 10):
    """Trains ``config`` after a one-line header naming ``what`` is trained,
    with about ``summaries`` one-line progress summaries (no progress bar, no
    built-in evaluation: each example evaluates in its own way).

    Returns:
      The :class:`mctx_planner.TrainResult`.
    """
    print(f"training {config.algorithm} on {what}: {config.iterations} iterations "
          f"x {config.num_envs} envs x {config.unroll_length} steps, "
          f"{config.num_simulations} simulations per move", flush=True)
    return mp.train(config, progress=False, evaluate=False,
                    log_every=max(1, config.iterations // summaries))


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or None (with a note)
    when matplotlib is not installed."""
    try:
        import matplotlib  # pylint: disable=g-import-not-at-top
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    return plt


def save_figure(fig, path: str) -> None:
    """Writes ``fig`` to ``path`` and says so."""
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot written to {path}")
