"""pgx and gymnax environments as mctx_planner domains, in a few lines.

:mod:`mctx_planner.adapters` wraps a pgx game (``from_pgx``) or a
discrete-action gymnax environment (``from_gymnax``) as a domain, so the
planner, ``check_domain``, the evaluation helpers and the trainer all accept
it. This example

1. wraps pgx's tic-tac-toe, checks it with ``check_domain``, explains one
   search from the empty board, plays pure search against a random player,
   registers it under a name and trains ``gumbel_alphazero`` on it with the
   library's trainer, then plays the trained agent against random and against
   pure search;
2. wraps gymnax's CartPole-v1 (episodes cut at 200 steps), checks it, and
   compares pure search (true model, uninformed network) with a random
   player over the same episodes.

pgx and gymnax are optional: ``pip install pgx gymnax`` (gymnax 1.0 also
imports ``six``, which it does not declare: ``pip install six``). A part
whose package is missing is skipped with a message.

Run (about 2 minutes on a laptop CPU; ``--tiny`` takes under a minute)::

    python examples/adapters_pgx_gymnax.py
    python examples/adapters_pgx_gymnax.py --tiny
"""

from __future__ import annotations

import time

import jax

import mctx_planner as mp
from mctx_planner import adapters
from mctx_planner import evaluate as ev

from _common import example_parser, finish_config, tiny, train_example


def pgx_part(args) -> str:
    try:
        domain = adapters.from_pgx("tic_tac_toe")
    except ImportError as e:
        print(f"pgx part skipped: {e}")
        return "pgx skipped (not installed)"
    print(f"== {domain.name}: {domain.num_actions} actions, observation "
          f"{domain.observation_shape}, {domain.num_players} players")
    mp.check_domain(domain, num_episodes=1 if args.tiny else 4)
    print("check_domain: ok")

    sims = 8 if args.tiny else 64
    model = mp.true_model(domain, mp.uniform_predict_fn(domain.num_actions))
    planner = mp.make_planner(model, mp.SearchConfig(
        num_simulations=sims, gumbel_scale=0.0, temperature=0.0))
    states = mp.init_states(domain, jax.random.PRNGKey(0), batch_size=1)
    print(mp.explain(planner.plan(None, jax.random.PRNGKey(1), states), 0))

    games = 8 if args.tiny else 200
    pure = mp.pure_search_player(domain, sims)
    r = mp.arena(domain, pure, mp.random_player(domain), num_games=games,
                 key=jax.random.PRNGKey(2))
    print("  " + r.summary())

    # Register the adapter under a name: TrainConfig.domain (and the CLI's
    # --domain) take registered names. The factory receives domain_kwargs.
    mp.domains.register("pgx_tic_tac_toe",
                        lambda **kw: adapters.from_pgx("tic_tac_toe", **kw),
                        overwrite=True)
    config = mp.preset("tictactoe", "gumbel_alphazero").replace(
        domain="pgx_tic_tac_toe", seed=args.seed)
    if args.tiny:
        config = tiny(config)
    config = finish_config(config, args)
    result = train_example(config, config.domain, summaries=5)
    agent, params = result.agent, result.state.params
    player = mp.search_player(agent.eval_planner, params, name="trained")
    vs_random = mp.arena(domain, player, mp.random_player(domain),
                         num_games=games, key=jax.random.PRNGKey(3))
    print("  " + vs_random.summary())
    text = (f"pgx tic_tac_toe: pure search {sims} sims vs random {r.score:.3f}, "
            f"trained vs random {vs_random.score:.3f}")
    if not args.tiny:
        vs_pure = mp.arena(domain, player,
                           mp.pure_search_player(domain, config.eval_simulations),
                           num_games=games, key=jax.random.PRNGKey(4))
        print("  " + vs_pure.summary())
        text += (f", trained vs pure search {config.eval_simulations} sims "
                 f"{vs_pure.score:.3f}")
    return text


def gymnax_part(args) -> str:
    try:
        domain = adapters.from_gymnax("CartPole-v1", max_episode_steps=200)
    except ImportError as e:
        print(f"gymnax part skipped: {e}")
        return "gymnax skipped (not installed)"
    print(f"== {domain.name}: {domain.num_actions} actions, observation "
          f"{domain.observation_shape}, cut at {domain.max_episode_steps} steps")
    mp.check_domain(domain, num_episodes=1 if args.tiny else 4)
    print("check_domain: ok")
    episodes = 8 if args.tiny else 100
    sims = 4 if args.tiny else 16
    states = ev.init_batch(domain, episodes, jax.random.PRNGKey(5))
    rows = []
    for player in (mp.pure_search_player(domain, sims),
                   mp.random_player(domain)):
        s = mp.evaluate_single_player(domain, player, key=jax.random.PRNGKey(6),
                                      initial_states=states)
        print("  " + s.summary())
        rows.append(s)
    return (f"gymnax CartPole-v1: pure search {sims} sims {rows[0].mean_return:.1f} "
            f"[{rows[0].ci_low:.1f}, {rows[0].ci_high:.1f}] vs random "
            f"{rows[1].mean_return:.1f} [{rows[1].ci_low:.1f}, {rows[1].ci_high:.1f}]")


def main(argv=None) -> int:
    parser = example_parser(__doc__, config_flags=False,
                            iterations_help="training iterations on pgx tic-tac-toe")
    args = parser.parse_args(argv)
    start = time.time()
    pgx_result = pgx_part(args)
    gymnax_result = gymnax_part(args)
    print(f"RESULT adapters: {pgx_result}; {gymnax_result} "
          f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
