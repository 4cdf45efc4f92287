"""Sequential recommendation: a planner against greedy top-1 retrieval.

The ``recommendation`` domain shows one item per step to a simulated user
whose clicks depend on their interest, on how bored they are of each topic
and on their patience (see :mod:`mctx_planner.domains.recommendation`).
Greedy top-1 retrieval (always the item most similar to the current interest
estimate) traps the user in one topic until patience runs out; a planner can
trade immediate similarity for engagement over the whole session.

This example trains ``gumbel_alphazero`` (Gumbel search through the domain's
own step function, a learned policy/value network) and compares, over the
same simulated users (paired: same users, same response noise streams):

* the trained planner,
* pure search (the same search with an uninformed network),
* greedy top-1 retrieval (the baseline),
* uniformly random candidates,
* the fixed ``diversify`` heuristic of the domain module (for reference).

Every planner acts through :func:`~mctx_planner.domains.recommendation.search_act_fn`,
which hands the search a copy of the user's state with a *fresh* random key
(``true_model`` does the same by default): the domain's ``step`` samples the
user's response from the state's key, so a search over the real key would
see the user's actual future clicks.

Run (about 3 minutes on a laptop CPU; ``--tiny`` takes under a minute)::

    python examples/recommendation_planning.py
    python examples/recommendation_planning.py --tiny
    python examples/recommendation_planning.py --users 2048 --plot rec.png
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np

import mctx_planner as mp
from mctx_planner import evaluate as ev
from mctx_planner.domains import recommendation as rec
from mctx_planner.networks import NetworkConfig
from mctx_planner.transforms import Support

from _common import (example_parser, finish_config, pyplot, save_figure,
                     tiny, train_example)


def make_config(args) -> mp.TrainConfig:
    # No preset for this domain: an explicit, small configuration. A session
    # earns up to ~30 (one per click), hence a wider value support.
    config = mp.TrainConfig(
        domain="recommendation", algorithm="gumbel_alphazero", seed=args.seed,
        iterations=100, num_envs=64, unroll_length=32, num_simulations=16,
        eval_simulations=args.simulations, max_num_considered_actions=8,
        td_steps=10, batch_size=256, updates_per_iteration=8,
        replay_capacity=32768, learning_rate=3e-3,
        network=NetworkConfig(hidden_size=128, num_layers=2,
                              value_support=Support(size=20)))
    if args.tiny:
        config = tiny(config, td_steps=2)
    return finish_config(config, args)


def main(argv=None) -> int:
    parser = example_parser(__doc__)
    parser.add_argument("--users", type=int, default=512,
                        help="simulated users in the evaluation")
    parser.add_argument("--simulations", type=int, default=32,
                        help="search simulations per recommendation")
    args = parser.parse_args(argv)
    if args.tiny:
        args.users = min(args.users, 16)
    start = time.time()
    config = make_config(args)
    result = train_example(config, "recommendation", summaries=5)
    agent, params = result.agent, result.state.params
    domain = agent.domain

    pure = mp.make_planner(
        mp.true_model(domain, mp.uniform_predict_fn(domain.num_actions)),
        ev.evaluation_config(config.eval_simulations))
    policies = [
        ("trained planner", rec.search_act_fn(agent.eval_planner, params)),
        ("pure search", rec.search_act_fn(pure)),
        ("greedy top-1", rec.greedy_top1_act),
        ("random", rec.random_act),
        ("diversify heuristic", rec.diversify_act(domain)),
    ]
    users_key = jax.random.PRNGKey(args.seed + 100)
    returns = {}
    for name, act in policies:
        fn = jax.jit(lambda k, act=act: rec.rollout_returns(domain, act,
                                                            args.users, k))
        returns[name] = np.asarray(fn(users_key), np.float64)
        print(f"  {name}: mean return {returns[name].mean():.2f}", flush=True)

    def ci(x):
        half = 1.96 * x.std(ddof=1) / math.sqrt(len(x)) if len(x) > 1 else 0.0
        return x.mean(), half

    greedy = returns["greedy top-1"]
    print(f"\n{args.users} simulated users, {domain.max_episode_steps} steps each "
          "(return = engagement; 95% CIs; gain = paired difference with greedy)")
    print("policy                  mean return          gain over greedy top-1")
    for name, r in returns.items():
        m, h = ci(r)
        g, gh = ci(r - greedy)
        print(f"{name:<22} {m:6.2f} +- {h:4.2f}        {g:+6.2f} +- {gh:4.2f}")
    plt = pyplot() if args.plot else None
    if plt:
        fig, ax = plt.subplots(figsize=(7, 4))
        names = list(returns)
        stats = [ci(returns[n]) for n in names]
        ax.bar(names, [s[0] for s in stats], yerr=[s[1] for s in stats],
               capsize=4)
        ax.set_ylabel("mean engagement per user (95% CI)")
        plt.setp(ax.get_xticklabels(), rotation=15)
        save_figure(fig, args.plot)
    m, h = ci(returns["trained planner"])
    g, gh = ci(returns["trained planner"] - greedy)
    gm, gmh = ci(greedy)
    rm, rmh = ci(returns["random"])
    print(f"RESULT recommendation: trained planner {m:.2f} +- {h:.2f} vs greedy "
          f"top-1 {gm:.2f} +- {gmh:.2f} (paired gain {g:+.2f} +- {gh:.2f}), "
          f"random {rm:.2f} +- {rmh:.2f} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
