"""The ``mctx-planner`` command.

Sub-commands::

    mctx-planner train  [--domain tictactoe] [--algorithm A] [--out DIR] [--resume]
                        [--iterations N] [--seed S] [--set field=value ...]
    mctx-planner eval   --checkpoint DIR [--games N]
    mctx-planner play   --checkpoint DIR [--second]
    mctx-planner search [--domain tictactoe] [--moves 0,4] [--simulations 64]
                        [--algorithm gumbel_muzero] [--checkpoint DIR] [--dot FILE]
                        [--png FILE] [--depth 3] [--min-visits 1]
    mctx-planner plot   --checkpoint DIR [--out FILE] [--keys loss,value_loss]
                        [--x iteration|env_steps]

``train`` with no argument trains tic-tac-toe with the preset that learns
fastest and ends with an evaluation (arena and the exhaustive perfect-play
audit).

Every sub-command takes ``--import MODULE`` (repeatable): a module name on
``sys.path`` or a path to a ``.py`` file, imported before anything else so
that domains it registers with :func:`mctx_planner.domains.register` can be
trained (``--domain``), evaluated, played and searched by name.

``search --png`` and ``plot`` draw pictures with matplotlib (the optional
``plot`` extra: ``pip install "mctx-planner[plot]"``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pathlib
import sys
from typing import Optional, Sequence

from mctx_planner import config as config_lib

DEFAULT_OUT = "runs/{domain}-{algorithm}"


def _import_user_modules(names: Sequence[str]) -> None:
    """Imports each ``--import`` entry: a module name or a ``.py`` file path.

    Raises:
      ValueError: a module that cannot be found or fails to import (the
        message names it and the original error).
    """
    for name in names:
        try:
            if name.endswith(".py") or "/" in name or "\\" in name:
                path = pathlib.Path(name)
                if not path.is_file():
                    raise FileNotFoundError(f"no such file: {path}")
                module_name = path.stem
                # Let the file import its own siblings, as `python file.py` would.
                sys.path.insert(0, str(path.resolve().parent))
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            else:
                if "" not in sys.path and "." not in sys.path:
                    # Console scripts do not put the working directory on
                    # sys.path; a user's module next to them should still load.
                    sys.path.insert(0, "")
                importlib.import_module(name)
        except Exception as e:  # pylint: disable=broad-except
            raise ValueError(f"--import {name}: {type(e).__name__}: {e}") from e


def _common(p) -> None:
    """Options every sub-command shares."""
    p.add_argument("--import", dest="imports", action="append", default=[],
                   metavar="MODULE",
                   help="import a module (name or path to a .py file) first, e.g. one "
                        "that registers your own domain; repeatable")


def _add_train(sub):
    p = sub.add_parser("train", help="train an agent by self-play (the main job)")
    _common(p)
    p.add_argument("--domain", default="tictactoe",
                   help="built-in domain (default: tictactoe)")
    p.add_argument("--algorithm", choices=config_lib.ALGORITHMS, default=None,
                   help="default: the domain's preset")
    p.add_argument("--out", default=None,
                   help=f"run directory (default: {DEFAULT_OUT})")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an earlier run's checkpoints in --out first")
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="FIELD=VALUE",
                   help="override any TrainConfig field, e.g. --set num_simulations=32 "
                        "--set network.hidden_size=128 --set domain.size=9")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluations")
    p.add_argument("--log-every", type=int, default=1,
                   help="print a summary line every N iterations")
    p.add_argument("--devices", type=int, default=1,
                   help="split the environments and self-play's searches over N "
                        "devices (on a CPU: N devices, one per core; needs "
                        "search_backend=fast or auto, the default)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and exit")


def _resolve_train_config(args) -> config_lib.TrainConfig:
    from mctx_planner.domains import registered  # pylint: disable=g-import-not-at-top
    if args.domain not in registered():
        raise ValueError(f"--domain must be one of {registered()}, got {args.domain!r} "
                         "(a domain of your own: --import the module that registers it)")
    cfg = config_lib.preset(args.domain, args.algorithm)
    overrides = list(args.overrides)
    if args.iterations is not None:
        overrides.append(f"iterations={args.iterations}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    return config_lib.apply_overrides(cfg, overrides)


def _cmd_train(args) -> int:
    cfg = _resolve_train_config(args)
    if args.print_config:
        print(cfg.to_json())
        return 0
    from mctx_planner.trainer import train  # pylint: disable=g-import-not-at-top
    out = args.out
    if out is None:
        # A fresh directory per run unless resuming: never mix two runs.
        base = DEFAULT_OUT.format(domain=cfg.domain, algorithm=cfg.algorithm)
        out, n = base, 1
        while not args.resume and not args.overwrite and pathlib.Path(out).exists():
            n += 1
            out = f"{base}-{n}"
    result = train(cfg, out_dir=out, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.no_progress, evaluate=not args.no_eval,
                   log_every=args.log_every, mesh=_device_mesh(args.devices))
    print(f"checkpoint and metrics in {out}/ "
          f"(evaluate again: mctx-planner eval --checkpoint {out})")
    del result
    return 0


def _device_mesh(num_devices: int):
    """A 1-D mesh (axis "batch") of ``num_devices`` devices, None for 1.

    On a CPU, JAX shows one device unless told otherwise before it starts, so
    the CPU is asked for ``num_devices`` devices first (each then runs its
    share of the work on its own core).
    """
    if num_devices < 1:
        raise ValueError(f"--devices must be >= 1, got {num_devices}")
    if num_devices == 1:
        return None
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    try:
        jax.config.update("jax_num_cpu_devices", num_devices)
    except (AttributeError, RuntimeError, ValueError):
        pass  # an older JAX, or already started: use the devices there are
    devices = jax.devices()
    if len(devices) < num_devices:
        raise ValueError(f"--devices {num_devices}: JAX has only {len(devices)} "
                         f"device(s) ({devices}); on a CPU, start the process with "
                         f"XLA_FLAGS=--xla_force_host_platform_device_count="
                         f"{num_devices}")
    return jax.sharding.Mesh(np.array(devices[:num_devices]), ("batch",))


def _cmd_eval(args) -> int:
    import jax  # pylint: disable=g-import-not-at-top
    from mctx_planner.trainer import evaluate_agent, load_run  # pylint: disable=g-import-not-at-top
    agent, state, _ = load_run(args.checkpoint)
    print(f"{agent.config.algorithm} on {agent.config.domain}, iteration "
          f"{int(state.iteration)} ({int(state.env_steps)} environment steps)")
    evaluate_agent(agent, state.params, jax.random.PRNGKey(args.seed),
                   num_games=args.games)
    return 0


def _cmd_play(args, stdin=None) -> int:
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from mctx_planner.trainer import load_run  # pylint: disable=g-import-not-at-top
    stdin = stdin or sys.stdin
    agent, state, _ = load_run(args.checkpoint)
    domain = agent.domain
    if not domain.two_player:
        raise ValueError(f"play needs a two-player domain; this run is {domain.name!r}")
    human = 1 if args.second else 0
    search = jax.jit(lambda p, k, s: agent.eval_planner.search(p, k, s))
    s = domain.init(jax.random.PRNGKey(args.seed))
    key = jax.random.PRNGKey(args.seed + 1)
    print(f"You are player {human} ({'first' if human == 0 else 'second'}). "
          f"Actions are 0..{domain.num_actions - 1}; q quits.")
    while not bool(s.terminated | s.truncated):
        print(domain.render(s))
        if int(s.current_player) == human:
            legal = [int(a) for a in jnp.nonzero(s.legal_action_mask)[0]]
            print(f"your move {legal}: ", end="", flush=True)
            line = stdin.readline()
            if not line or line.strip().lower() in ("q", "quit"):
                print("bye")
                return 0
            try:
                action = int(line.strip())
            except ValueError:
                print(f"not a number: {line.strip()!r}")
                continue
            if action not in legal:
                print(f"illegal move {action}; legal: {legal}")
                continue
        else:
            key, sub = jax.random.split(key)
            batched = jax.tree_util.tree_map(lambda x: x[None], s)
            action = int(search(state.params, sub, batched).action[0])
            print(f"agent plays {action}")
        mover = int(s.current_player)
        s = domain.step(s, jnp.int32(action))
    print(domain.render(s))
    reward = float(s.reward)
    if reward == 0:
        print("draw")
    else:
        winner = mover if reward > 0 else 1 - mover
        print("you win" if winner == human else "agent wins")
    return 0


def _plotting():
    """The plotting module, or a one-line error when matplotlib is missing."""
    from mctx_planner import plotting  # pylint: disable=g-import-not-at-top
    try:
        plotting._matplotlib()  # pylint: disable=protected-access
    except ImportError as e:
        raise RuntimeError(str(e)) from e
    return plotting


def _cmd_search(args) -> int:
    if args.depth < 0:
        raise ValueError(f"--depth must be >= 0, got {args.depth}")
    if args.min_visits < 1:
        raise ValueError(f"--min-visits must be >= 1, got {args.min_visits}")
    plotting = _plotting() if args.png else None   # fail before searching
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from mctx_planner import domains, explanation, search  # pylint: disable=g-import-not-at-top
    params = None
    if args.checkpoint:
        from mctx_planner.trainer import load_run  # pylint: disable=g-import-not-at-top
        agent, state, _ = load_run(args.checkpoint)
        domain, params = agent.domain, state.params
        planner = search.make_planner(agent.eval_planner.model, search.SearchConfig(
            algorithm=args.algorithm, num_simulations=args.simulations,
            temperature=0.0, dirichlet_fraction=0.0, gumbel_scale=0.0))
    else:
        domain = domains.make(args.domain)
        model = search.true_model(domain, search.uniform_predict_fn(domain.num_actions))
        planner = search.make_planner(model, search.SearchConfig(
            algorithm=args.algorithm, num_simulations=args.simulations,
            temperature=0.0, dirichlet_fraction=0.0, gumbel_scale=0.0))
    s = domain.init(jax.random.PRNGKey(args.seed))
    moves = [int(m) for m in args.moves.split(",") if m.strip()] if args.moves else []
    for m in moves:
        if not bool(s.legal_action_mask[m]):
            raise ValueError(f"--moves: move {m} is illegal in that position")
        s = domain.step(s, jnp.int32(m))
    print(domain.render(s))
    print(f"player to move: {int(s.current_player)}"
          + ("" if args.checkpoint else " (uninformed network: pure search)"))
    batched = jax.tree_util.tree_map(lambda x: x[None], s)
    out = planner.plan(params, jax.random.PRNGKey(args.seed), batched)
    print(explanation.explain(out, 0))
    if args.dot:
        pathlib.Path(args.dot).write_text(explanation.to_dot(
            out.tree, 0, max_depth=args.depth, min_visits=args.min_visits))
        print(f"tree written to {args.dot} (render: dot -Tpng {args.dot} -o tree.png)")
    if args.png:
        fig = plotting.plot_search_tree(out.tree, 0, args.png, max_depth=args.depth,
                                        min_visits=args.min_visits,
                                        position=f"{domain.render(s)}\n"
                                                 f"player {int(s.current_player)} to move")
        print(f"tree drawn in {args.png} ({fig.mctx_nodes} nodes)")
    return 0


def _cmd_plot(args) -> int:
    plotting = _plotting()
    out = args.out or str(pathlib.Path(args.checkpoint) / "learning_curves.png")
    keys = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else None
    fig = plotting.plot_learning_curves(args.checkpoint, out, keys=keys, x=args.x)
    print(f"learning curves ({len(fig.mctx_keys)} panels: "
          f"{', '.join(fig.mctx_keys)}) in {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mctx-planner",
        description="Planning with learned models: train, evaluate, play, explain.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    p = sub.add_parser("eval", help="evaluate a checkpoint in the arena")
    _common(p)
    p.add_argument("--checkpoint", required=True, help="run directory (--out of train)")
    p.add_argument("--games", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("play", help="play against a checkpoint in the terminal")
    _common(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--second", action="store_true", help="let the agent move first")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("search", help="run one search and explain it")
    _common(p)
    p.add_argument("--domain", default="tictactoe")
    p.add_argument("--moves", default="", help="comma-separated moves played first")
    p.add_argument("--simulations", type=int, default=64)
    p.add_argument("--algorithm", default="gumbel_muzero",
                   choices=("muzero", "gumbel_muzero"))
    p.add_argument("--checkpoint", default=None,
                   help="use a trained run's network instead of pure search")
    p.add_argument("--dot", default=None, help="also write the tree as Graphviz DOT")
    p.add_argument("--png", default=None,
                   help="also draw the tree as a PNG picture (needs matplotlib)")
    p.add_argument("--depth", type=int, default=3,
                   help="deepest tree level in --dot/--png (default: 3)")
    p.add_argument("--min-visits", type=int, default=1,
                   help="leave out children with fewer visits in --dot/--png "
                        "(default: 1)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("plot", help="draw a training run's learning curves (PNG)")
    _common(p)
    p.add_argument("--checkpoint", required=True,
                   help="run directory (--out of train) holding metrics.jsonl")
    p.add_argument("--out", default=None,
                   help="PNG file (default: DIR/learning_curves.png)")
    p.add_argument("--keys", default=None,
                   help="comma-separated metrics to draw, e.g. loss,value_loss "
                        "(default: the losses, then every metric with a curve)")
    p.add_argument("--x", choices=("iteration", "env_steps"), default="iteration",
                   help="horizontal axis (default: iteration)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``mctx-planner`` console script."""
    args = build_parser().parse_args(argv)
    commands = dict(train=_cmd_train, eval=_cmd_eval, play=_cmd_play,
                    search=_cmd_search, plot=_cmd_plot)
    try:
        _import_user_modules(args.imports)
        return commands[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        # Bad input and unreadable checkpoints (CheckpointError is a
        # RuntimeError) read as one sentence, not a traceback.
        print(f"mctx-planner {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
