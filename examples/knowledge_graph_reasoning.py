"""Knowledge-graph reasoning by planning (M-Walk style) on held-out queries.

The ``knowledge_graph`` domain answers a query ``(person, relation, ?)`` on
a synthetic family graph by walking it: each move follows one edge
(``parent_of``, ``child_of``, ``sibling_of``, ``spouse_of``) and STOP
answers the current person; the reward is 1 for a correct answer. The query
relations (grandparent, cousin, in-law, ...) are compositions of edges that
the agent is never told.

This example trains ``gumbel_alphazero`` (Gumbel search over the true graph
with a learned policy/value network; ``--algorithm muzero`` or
``gumbel_muzero`` searches a learned model instead) on the *train* split of
queries, then measures hits@1 on the held-out *test* split (queries whose
``(person, relation)`` pair never occurs in training; the split is a
constructor argument of the domain: ``KnowledgeGraphWalk(split="test")``).
Reference points, all from :mod:`mctx_planner.domains.knowledge_graph`:

* random walk: walks as many random edges as the relation's pattern is long
  (it knows *when* to stop, not *where* to go);
* pure search: the same search with an uninformed network (no learning);
* pattern oracle: knows each relation's edge patterns, no look-ahead;
* BFS oracle: expands every pattern breadth-first (1.0 by construction).

Run (about 2 minutes on a laptop CPU; ``--tiny`` takes under a minute)::

    python examples/knowledge_graph_reasoning.py
    python examples/knowledge_graph_reasoning.py --tiny
    python examples/knowledge_graph_reasoning.py --algorithm muzero --iterations 300
"""

from __future__ import annotations

import time

import jax
import numpy as np

import mctx_planner as mp
from mctx_planner.domains import knowledge_graph as kg
from mctx_planner.networks import NetworkConfig
from mctx_planner.transforms import Support

from _common import (example_parser, finish_config, pyplot, save_figure,
                     tiny, train_example)


def make_config(args) -> mp.TrainConfig:
    # No preset for this domain: an explicit, small configuration. Values and
    # rewards lie in [0, 1], so a 3-atom support without the MuZero squashing
    # transform is enough.
    config = mp.TrainConfig(
        domain="knowledge_graph",
        domain_kwargs=(("seed", args.graph_seed), ("split", "train")),
        algorithm=args.algorithm, seed=args.seed, iterations=100,
        num_envs=64, unroll_length=16, num_simulations=16,
        eval_simulations=args.simulations, max_num_considered_actions=9,
        num_unroll_steps=3, td_steps=None, batch_size=256,
        updates_per_iteration=8, replay_capacity=16384, learning_rate=3e-3,
        network=NetworkConfig(hidden_size=128, num_layers=2, latent_size=64,
                              value_support=Support(size=1, transform=False),
                              reward_support=Support(size=1, transform=False)))
    if args.tiny:
        config = tiny(config)
    return finish_config(config, args)


def _fmt(hits) -> str:
    return "    -" if hits is None else f"{hits:.3f}"


def main(argv=None) -> int:
    parser = example_parser(__doc__)
    parser.add_argument("--algorithm", default="gumbel_alphazero",
                        choices=("gumbel_alphazero", "alphazero", "muzero",
                                 "gumbel_muzero"))
    parser.add_argument("--simulations", type=int, default=32,
                        help="search simulations at evaluation")
    parser.add_argument("--graph-seed", type=int, default=0,
                        help="seed of the synthetic family graph")
    args = parser.parse_args(argv)
    start = time.time()
    config = make_config(args)
    train_domain = mp.make_domain("knowledge_graph", **dict(config.domain_kwargs))
    test_domain = kg.KnowledgeGraphWalk(graph=train_domain.graph, split="test")
    graph = train_domain.graph
    print(f"family graph: {graph.num_entities} people, {len(graph.edges)} edges, "
          f"{graph.train.size} train / {graph.test.size} test queries, "
          f"{train_domain.num_actions} actions", flush=True)
    result = train_example(config, "the train queries", summaries=5)
    agent, params = result.agent, result.state.params

    # The planner's model was built on the train-split domain; the graph and
    # hence every transition are the same for the test split, only the
    # queries differ.
    def agent_act(key, states):
        return agent.eval_planner.search(params, key, states).action

    net = mp.network_action_fn(agent)

    def network_act(key, states):
        del key
        return net(params, states)

    pure = mp.pure_search_player(test_domain, config.eval_simulations)
    key = jax.random.PRNGKey(args.seed + 1)
    def train_hits(act):  # the generalisation gap (skipped by --tiny)
        return None if args.tiny else kg.hits_at_1(train_domain, act, key=key)

    rows = [
        (f"{config.algorithm} (search)", kg.hits_at_1(test_domain, agent_act, key=key),
         train_hits(agent_act)),
        (f"{config.algorithm} (raw network)",
         kg.hits_at_1(test_domain, network_act, key=key), train_hits(network_act)),
        ("pure search (uninformed)", kg.hits_at_1(test_domain, pure.act, key=key),
         None),
        ("random walk (mean of 8 seeds)", float(np.mean([
            kg.random_walk_hits_at_1(graph, graph.test, k)
            for k in jax.random.split(key, 8)])), None),
        ("pattern oracle", kg.hits_at_1(test_domain,
                                        kg.pattern_oracle_act(test_domain),
                                        key=key), None),
        ("BFS oracle", kg.oracle_hits_at_1(graph, graph.test), None),
    ]
    print(f"\nhits@1 on {graph.test.size} held-out test queries "
          f"({config.eval_simulations} simulations per move)")
    print("policy                              test    train")
    for name, test_hits, train_hits in rows:
        print(f"{name:<34} {test_hits:.3f}    {_fmt(train_hits)}")
    plt = pyplot() if args.plot else None
    if plt:
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.barh([r[0] for r in rows][::-1], [r[1] for r in rows][::-1])
        ax.set_xlabel("test hits@1")
        ax.set_xlim(0, 1)
        save_figure(fig, args.plot)
    print(f"RESULT knowledge_graph: {config.algorithm} test hits@1 "
          f"{rows[0][1]:.3f} (train {_fmt(rows[0][2])}) vs random walk "
          f"{rows[3][1]:.3f}, pure search {rows[2][1]:.3f}, BFS oracle "
          f"{rows[5][1]:.3f} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
