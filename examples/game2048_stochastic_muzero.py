"""2048: Stochastic MuZero against the greedy one-step baseline.

Trains the ``2048`` preset (``stochastic_muzero``: a learned model with
afterstates and a chance head over the 2 * size**2 possible tile spawns, so
the search averages over chance instead of trusting one sampled future) on
the 3x3 board (CPU-sized; the classic game is ``--size 4``). Then it plays
the same number of fresh games with

* the trained agent (greedy search, ``eval_simulations``),
* the greedy one-step player (:func:`mctx_planner.greedy_one_step_player`:
  the legal move with the largest immediate merge reward),
* pure search over the *true* stochastic model with an uninformed network
  (exact chance probabilities; look-ahead without learning),
* a uniformly random legal player,

and prints the mean score of each with a 95% confidence interval, plus the
agent's paired gain over the greedy player (the same initial boards).

Run (about 4 minutes on a laptop CPU; ``--tiny`` takes under a minute)::

    python examples/game2048_stochastic_muzero.py
    python examples/game2048_stochastic_muzero.py --tiny
    python examples/game2048_stochastic_muzero.py --games 500 --plot 2048.png
"""

from __future__ import annotations

import math
import time

import jax

import mctx_planner as mp
from mctx_planner import evaluate as ev

from _common import (example_parser, finish_config, pyplot, save_figure,
                     tiny, train_example)


def make_config(args) -> mp.TrainConfig:
    config = mp.preset("2048", "stochastic_muzero").replace(
        seed=args.seed, domain_kwargs=(("size", args.size),))
    if args.tiny:
        config = tiny(config,
                      domain_kwargs=(("max_episode_steps", 100), ("size", args.size)),
                      td_steps=2)
    return finish_config(config, args)


def main(argv=None) -> int:
    parser = example_parser(__doc__)
    parser.add_argument("--size", type=int, default=3, help="board side")
    parser.add_argument("--games", type=int, default=200,
                        help="evaluation games per player")
    args = parser.parse_args(argv)
    if args.tiny:
        args.games = min(args.games, 16)
    start = time.time()
    config = make_config(args)
    result = train_example(config, f"{args.size}x{args.size} 2048")
    agent, params = result.agent, result.state.params
    domain = agent.domain

    boards = ev.init_batch(domain, args.games, jax.random.PRNGKey(2048))
    players = [
        ("stochastic muzero", mp.search_player(agent.eval_planner, params)),
        ("greedy one-step", mp.greedy_one_step_player(domain)),
        ("pure search (true model)", mp.pure_search_player(
            domain, config.eval_simulations, algorithm="stochastic_muzero")),
        ("random", mp.random_player(domain)),
    ]
    if args.tiny:  # one compilation less: --tiny is a smoke test
        players = [p for p in players if not p[0].startswith("pure search")]
    stats = {}
    for name, player in players:
        s = mp.evaluate_single_player(domain, player, key=jax.random.PRNGKey(1),
                                      initial_states=boards)
        stats[name] = s
        print(f"  {name}: {s.summary()}", flush=True)

    agent_s, greedy_s = stats["stochastic muzero"], stats["greedy one-step"]
    diff = agent_s.returns - greedy_s.returns
    half = 1.96 * diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
    print(f"\n{args.games} games of {args.size}x{args.size} 2048 (score = sum of "
          "merged tiles; 95% CI)")
    print("player                      mean score [95% CI]          mean moves")
    for name, s in stats.items():
        print(f"{name:<27} {s.mean_return:9.1f} [{s.ci_low:8.1f}, {s.ci_high:8.1f}]"
              f"   {s.mean_length:7.1f}")
    print(f"paired gain of the agent over greedy: {diff.mean():+.1f} "
          f"[{diff.mean() - half:+.1f}, {diff.mean() + half:+.1f}]")
    plt = pyplot() if args.plot else None
    if plt:
        fig, ax = plt.subplots(figsize=(7, 4))
        names = list(stats)
        means = [stats[n].mean_return for n in names]
        err = [stats[n].mean_return - stats[n].ci_low for n in names]
        ax.bar(names, means, yerr=err, capsize=4)
        ax.set_ylabel("mean score (95% CI)")
        plt.setp(ax.get_xticklabels(), rotation=15)
        save_figure(fig, args.plot)
    print(f"RESULT 2048: stochastic muzero {agent_s.mean_return:.1f} "
          f"[{agent_s.ci_low:.1f}, {agent_s.ci_high:.1f}] vs greedy one-step "
          f"{greedy_s.mean_return:.1f} [{greedy_s.ci_low:.1f}, "
          f"{greedy_s.ci_high:.1f}], paired gain {diff.mean():+.1f} +- {half:.1f}"
          f" ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
