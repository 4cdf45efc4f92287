"""Maze: MuZero with a learned model, compared with the BFS optimum.

Trains the ``muzero`` maze preset (PUCT search over learned
representation, dynamics and prediction networks; categorical value and
reward; 10-step targets) on fresh random 5x5 mazes (every episode is a new
maze drawn from the ``init`` key, so the agent must learn to *plan*, not to
memorise; episodes are cut after 25 moves and rewards discounted by 0.97).
Then, on the same set of new mazes, it compares

* the trained MuZero agent (greedy search, ``eval_simulations``),
* pure search over the true model with an uninformed network (same
  simulations: what look-ahead alone gives),
* a uniformly random legal walk,

with the optimum, the breadth-first shortest path length of each maze
(:func:`mctx_planner.domains.maze.shortest_path_length`): the fraction of
mazes solved in exactly the optimal number of moves, the fraction solved at
all within the step limit, and the mean number of moves.

Run (about 4 minutes on a laptop CPU; ``--tiny`` takes under a minute)::

    python examples/maze_muzero.py
    python examples/maze_muzero.py --tiny
    python examples/maze_muzero.py --mazes 500 --plot maze.png
    python examples/maze_muzero.py --set domain.size=7 --iterations 1000
"""

from __future__ import annotations

import time

import jax
import numpy as np

import mctx_planner as mp
from mctx_planner import evaluate as ev
from mctx_planner.domains.maze import shortest_path_length

from _common import (example_parser, finish_config, pyplot, save_figure,
                     tiny, train_example)


def make_config(args) -> mp.TrainConfig:
    # The muzero maze preset, on 5x5 mazes with a 25-move limit and a
    # discount: on 7x7 mazes (the preset's size) a learned model needs far
    # more than a few CPU minutes of self-play (try --set domain.size=7
    # --set domain.max_episode_steps=49 --iterations 1000).
    config = mp.preset("maze", "muzero").replace(
        seed=args.seed, iterations=150, discount=0.97,
        domain_kwargs=(("max_episode_steps", 25), ("size", 5)))
    if args.tiny:
        config = tiny(config, td_steps=2)
    return finish_config(config, args)


def main(argv=None) -> int:
    parser = example_parser(__doc__)
    parser.add_argument("--mazes", type=int, default=200,
                        help="fresh mazes in the evaluation")
    args = parser.parse_args(argv)
    if args.tiny:
        args.mazes = min(args.mazes, 16)
    start = time.time()
    config = make_config(args)
    result = train_example(config, f"maze {dict(config.domain_kwargs)}")
    agent, params = result.agent, result.state.params
    domain = agent.domain

    states = ev.init_batch(domain, args.mazes, jax.random.PRNGKey(12345))
    optimal = np.asarray(jax.jit(jax.vmap(shortest_path_length))(states))
    players = [
        ("muzero agent", mp.search_player(agent.eval_planner, params)),
        ("pure search", mp.pure_search_player(domain, config.eval_simulations)),
        ("random", mp.random_player(domain)),
    ]
    rows = []
    for name, player in players:
        stats = mp.evaluate_single_player(domain, player,
                                          key=jax.random.PRNGKey(7),
                                          initial_states=states)
        moves = -stats.returns
        rows.append(dict(
            name=name, stats=stats,
            optimal=float(np.mean(moves == optimal)),
            solved=float(np.mean(moves < domain.max_episode_steps)),
            moves=float(np.mean(moves))))
        print(f"  {name}: {stats.summary()}", flush=True)

    print(f"\n{args.mazes} fresh {domain.size}x{domain.size} mazes; BFS optimum "
          f"{optimal.mean():.2f} moves on average (step limit "
          f"{domain.max_episode_steps})")
    print("player          optimal path   solved   mean moves [95% CI]")
    for r in rows:
        s = r["stats"]
        print(f"{r['name']:<15} {100 * r['optimal']:10.1f}%  {100 * r['solved']:6.1f}%"
              f"   {r['moves']:.2f} [{-s.ci_high:.2f}, {-s.ci_low:.2f}]")
    print(f"{'BFS optimum':<15} {100.0:10.1f}%  {100.0:6.1f}%   {optimal.mean():.2f}")
    plt = pyplot() if args.plot else None
    if plt:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = [r["name"] for r in rows] + ["BFS optimum"]
        ax.bar(names, [r["moves"] for r in rows] + [float(optimal.mean())])
        ax.set_ylabel("mean moves to the goal (lower is better)")
        save_figure(fig, args.plot)
    agent_row = rows[0]
    print(f"RESULT maze: muzero optimal on {100 * agent_row['optimal']:.1f}% of "
          f"mazes, solved {100 * agent_row['solved']:.1f}%, mean moves "
          f"{agent_row['moves']:.2f} vs BFS optimum {optimal.mean():.2f} "
          f"(pure search {rows[1]['moves']:.2f}, random {rows[2]['moves']:.2f}) "
          f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
