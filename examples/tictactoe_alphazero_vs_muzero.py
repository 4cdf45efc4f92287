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

import argparse
import time

import jax

import mctx_planner as mp
from mctx_planner.networks import NetworkConfig
from mctx_planner.transforms import Support


def tiny(config: mp.TrainConfig) -> mp.TrainConfig:
    """A seconds-long version of a config (a smoke test, not a result)."""
    return config.replace(
        iterations=2, num_envs=8, unroll_length=4, num_simulations=4,
        eval_simulations=4, max_num_considered_actions=4, num_unroll_steps=1,
        replay_capacity=64, batch_size=16, updates_per_iteration=2,
        warmup_steps=1,
        network=NetworkConfig(hidden_size=16, num_layers=1, latent_size=16,
                              value_support=Support(size=1, transform=False),
                              reward_support=Support(size=1, transform=False)))


def run(algorithm: str, args) -> dict:
    config = mp.preset("tictactoe", algorithm).replace(seed=args.seed)
    if args.tiny:
        config = tiny(config)
    if args.iterations:
        config = config.replace(iterations=args.iterations)
    config = mp.apply_overrides(config, args.overrides)
    print(f"== {algorithm}: {config.iterations} iterations, {config.num_envs} "
          f"envs, {config.num_simulations} simulations per move", flush=True)
    result = mp.train(config, progress=False, evaluate=False,
                      log_every=max(1, config.iterations // 5))
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
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
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
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot written to {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true",
                        help="a few seconds of training (smoke test)")
    parser.add_argument("--learned", choices=("gumbel_muzero", "muzero"),
                        default="gumbel_muzero",
                        help="the learned-model algorithm (default gumbel_muzero)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="override the presets' iteration counts")
    parser.add_argument("--games", type=int, default=200,
                        help="arena games against random (even)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="FIELD=VALUE",
                        help="override a TrainConfig field, as in mctx-planner "
                             "train (e.g. --set num_simulations=16)")
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="write a PNG (needs matplotlib)")
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
