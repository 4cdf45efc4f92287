"""Connect Four: Gumbel AlphaZero against alpha-beta players of depth 1 to 4.

Trains ``gumbel_alphazero`` (Gumbel search over the true rules, a policy and
value network learned by self-play) with a CPU-sized configuration: the
``connect4`` preset made smaller (an MLP of width 128 instead of 256, 128
self-play games instead of 256, 600 iterations instead of 1800; the preset
itself is what ``benchmarks/train_targets.py connect4`` measures). Then it
plays arenas against the
alpha-beta searchers of :func:`mctx_planner.evaluate.alphabeta_player` of
depth 1, 2, 3 and 4 (a heuristic evaluation at the horizon, ties broken at
random), each game starting after a few uniformly random opening moves so
that the deterministic players do not replay one game; half the games in
each seat.

The baseline row is pure search: the same Gumbel search, same simulations,
with an uninformed network (uniform prior, value 0), i.e. what the search
achieves before any learning.

Run (about 6 minutes on a laptop CPU; ``--tiny`` takes under a minute)::

    python examples/connect4_gumbel.py
    python examples/connect4_gumbel.py --tiny
    python examples/connect4_gumbel.py --iterations 1200 --games 200 --plot c4.png
"""

from __future__ import annotations

import time

import jax

import mctx_planner as mp
from mctx_planner import evaluate as ev
from mctx_planner.networks import NetworkConfig
from mctx_planner.transforms import Support

from _common import (example_parser, finish_config, pyplot, save_figure,
                     tiny, train_example)


def make_config(args) -> mp.TrainConfig:
    config = mp.preset("connect4", "gumbel_alphazero").replace(
        seed=args.seed, iterations=600, num_envs=128, unroll_length=32,
        num_simulations=32, batch_size=256,
        # At 64 simulations Gumbel search, not the preset's PUCT at 1024, so
        # that the agent and the pure-search baseline search alike.
        eval_simulations=64, eval_search_algorithm=None,
        updates_per_iteration=16, replay_capacity=65536, opening_moves=4,
        network=NetworkConfig(hidden_size=128, num_layers=3,
                              value_support=Support(size=1, transform=False)))
    if args.tiny:
        config = tiny(config)
    return finish_config(config, args)


def main(argv=None) -> int:
    parser = example_parser(__doc__)
    parser.add_argument("--games", type=int, default=100,
                        help="games per alpha-beta depth (even)")
    parser.add_argument("--depths", default="1,2,3,4",
                        help="alpha-beta depths, comma-separated")
    parser.add_argument("--openings", type=int, default=2,
                        help="random opening plies before each game")
    args = parser.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")]
    if args.tiny:
        args.games = min(args.games, 4)
        depths = depths[:2]
    start = time.time()
    config = make_config(args)
    result = train_example(config, "connect4")
    agent, params = result.agent, result.state.params
    domain = agent.domain

    agent_player = mp.search_player(agent.eval_planner, params,
                                    name=f"agent-{config.eval_simulations}")
    pure = mp.pure_search_player(domain, config.eval_simulations)
    rows = []
    for depth in depths:
        opponent = ev.alphabeta_player(depth, randomize_ties=True)
        key = jax.random.PRNGKey(1000 + depth)  # same openings for both rows
        a = mp.arena(domain, agent_player, opponent, num_games=args.games,
                     key=key, opening_moves=args.openings)
        b = mp.arena(domain, pure, opponent, num_games=args.games, key=key,
                     opening_moves=args.openings)
        print("  " + a.summary())
        print("  " + b.summary(), flush=True)
        rows.append((depth, a, b))

    print(f"\nscore against alpha-beta ({args.games} games per depth, "
          f"{args.openings} random opening plies; 0.5 = even)")
    print("depth   trained agent [95% CI]     pure search baseline [95% CI]")
    for depth, a, b in rows:
        print(f"{depth:5d}   {a.score:.3f} [{a.ci_low:.3f}, {a.ci_high:.3f}]"
              f"       {b.score:.3f} [{b.ci_low:.3f}, {b.ci_high:.3f}]")
    plt = pyplot() if args.plot else None
    if plt:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, idx in (("trained agent", 1), ("pure search", 2)):
            scores = [r[idx].score for r in rows]
            err = [[r[idx].score - r[idx].ci_low for r in rows],
                   [r[idx].ci_high - r[idx].score for r in rows]]
            ax.errorbar(depths, scores, yerr=err, marker="o", capsize=3,
                        label=label)
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.set_xlabel("alpha-beta depth")
        ax.set_ylabel("score (wins + draws/2)")
        ax.set_xticks(depths)
        ax.legend()
        save_figure(fig, args.plot)
    print("RESULT connect4: " + ", ".join(
        f"depth {d} agent {a.score:.3f} vs pure search {b.score:.3f}"
        for d, a, b in rows) + f" ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
