"""Tic-tac-toe: AlphaZero (true model) versus MuZero (learned model).

Trains the library's two tic-tac-toe presets (``mctx_planner.config.preset``)
one after the other:

* ``gumbel_alphazero``: Gumbel search over the real rules (``domain.step``);
  the network only supplies the prior and the value;
* ``gumbel_muzero`` (or ``muzero`` with ``--learned muzero``): search over a
  learned model (representation, dynamics and prediction networks) that
  knows the legal moves only at the root.

Each agent then plays an arena against a uniformly random player (half the
games in each seat) and is audited at all 4520 reachable non-terminal
positions against the exact minimax solver, both as a search player and as
the raw policy network. Random play is the baseline of the arena; the
audit's own baseline is perfect play (0 non-optimal moves).

Run (about 7 minutes on a laptop CPU; ``--tiny`` takes well under a minute)::

    python examples/tictactoe_alphazero_vs_muzero.py
    python examples/tictactoe_alphazero_vs_muzero.py --tiny
    python examples/tictactoe_alphazero_vs_muzero.py --plot ttt.png
"""

from __future__ import annotations

import time

import jax

import mctx_planner as mp

from _common import (example_parser, finish_config, pyplot, save_figure,
                     tiny, train_example)


def run(algorithm: str, args) -> dict:
    config = mp.preset("tictactoe", algorithm).replace(seed=args.seed)
    if args.tiny:
        config = tiny(config)
    config = finish_config(config, args)
    result = train_example(config, "tictactoe", summaries=5)
    agent, params = result.agent, result.state.params
    domain = agent.domain

    player = mp.search_player(agent.eval_planner, params,
                              name=f"{algorithm}-{config.eval_simulations}")
    arena = mp.arena(domain, player, mp.random_player(domain),
                     num_games=args.games, key=jax.random.PRNGKey(args.seed + 1))
    print("  " + arena.summary())
    search = jax.jit(lambda s: agent.eval_planner.search(
        params, jax.random.PRNGKey(0), s).action)
    search_audit = mp.audit_tictactoe(search)
    net = mp.network_action_fn(agent)
    net_audit = mp.audit_tictactoe(lambda s: net(params, s))
    print("  search  " + search_audit.summary())
    print("  network " + net_audit.summary())
    return dict(algorithm=algorithm, arena=arena, search_audit=search_audit,
                net_audit=net_audit, history=result.history,
                seconds=result.wall_time_s)


def plot(results, path: str) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for r in results:
        ax1.plot([h["iteration"] for h in r["history"]],
                 [h["loss"] for h in r["history"]], label=r["algorithm"])
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("training loss")
    ax1.legend()
    names = [r["algorithm"] for r in results]
    x = range(len(results))
    ax2.bar([i - 0.2 for i in x],
            [r["search_audit"].nonoptimal_fraction for r in results], 0.4,
            label="search")
    ax2.bar([i + 0.2 for i in x],
            [r["net_audit"].nonoptimal_fraction for r in results], 0.4,
            label="raw network")
    ax2.set_xticks(list(x), names)
    ax2.set_ylabel("non-optimal moves (fraction of 4520)")
    ax2.legend()
    save_figure(fig, path)


def main(argv=None) -> int:
    parser = example_parser(__doc__,
                            iterations_help="override the presets' iteration counts")
    parser.add_argument("--learned", choices=("gumbel_muzero", "muzero"),
                        default="gumbel_muzero",
                        help="the learned-model algorithm (default gumbel_muzero)")
    parser.add_argument("--games", type=int, default=200,
                        help="arena games against random (even)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.games = min(args.games, 8)
    start = time.time()
    results = [run("gumbel_alphazero", args), run(args.learned, args)]

    print(f"\n{'algorithm':<18} {'model':<8} {'score vs random [95% CI]':<26} "
          f"{'non-optimal of 4520 (search / network)':<40} train s")
    for r in results:
        a = r["arena"]
        model = "learned" if "muzero" in r["algorithm"] else "true"
        score = f"{a.score:.3f} [{a.ci_low:.3f}, {a.ci_high:.3f}]"
        audit = (f"{r['search_audit'].num_nonoptimal} / "
                 f"{r['net_audit'].num_nonoptimal}")
        print(f"{r['algorithm']:<18} {model:<8} {score:<26} {audit:<40} "
              f"{r['seconds']:.0f}")
    print("baselines: random player scores 0.5 against itself; perfect play "
          "has 0 non-optimal moves")
    if args.plot:
        plot(results, args.plot)
    print("RESULT tictactoe: " + "; ".join(
        f"{r['algorithm']} score vs random {r['arena'].score:.3f}, "
        f"search non-optimal {r['search_audit'].num_nonoptimal}/4520, "
        f"never loses {r['search_audit'].never_loses}" for r in results)
        + f" ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
