"""Training targets of the library, each measured end to end (wall clock,
compilation included) on the machine it runs on.

    python benchmarks/train_targets.py tictactoe          # main job: perfect play
    python benchmarks/train_targets.py tictactoe_muzero   # learned model vs perfect player
    python benchmarks/train_targets.py connect4           # Gumbel AlphaZero vs alpha-beta(4)
    python benchmarks/train_targets.py connect4_eval --eval-keys 2 3 4 \
        --set eval_search_algorithm=gumbel_muzero --set eval_simulations=256
    python benchmarks/train_targets.py maze               # optimal paths on fresh mazes
    python benchmarks/train_targets.py 2048               # Stochastic MuZero vs greedy
    python benchmarks/train_targets.py throughput         # self-play steps/s per preset

Each target prints one ``RESULT`` line and appends a JSON record to
``train_targets.jsonl`` in ``--results-dir`` (default ``benchmarks/results``),
where the Connect Four and maze targets also keep their runs (``runs/``).
Extra ``--set field=value`` arguments override the preset (as on the
``mctx-planner train`` command line); ``--games N`` shrinks a target's
evaluation (games, episodes or mazes) for a quick check.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import time

import jax

from mctx_planner import config as config_lib
from mctx_planner import evaluate as ev
from mctx_planner.trainer import train

#: Where records and runs go (``--results-dir``).
RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def _record(name: str, record: dict) -> None:
    record = dict(target=name, date=datetime.datetime.now().isoformat(timespec="seconds"),
                  device=jax.devices()[0].device_kind, cpus=os.cpu_count(),
                  jax=jax.__version__, python=platform.python_version(), **record)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(RESULTS_DIR / "train_targets.jsonl", "a") as f:
        f.write(json.dumps(record, default=float) + "\n")
    print("RESULT", json.dumps(record, default=float), flush=True)


def _config(domain, algorithm, overrides):
    return config_lib.apply_overrides(config_lib.preset(domain, algorithm), overrides)


def target_tictactoe(overrides):
    cfg = _config("tictactoe", None, overrides)
    result = train(cfg, progress=False, log_every=10)
    e = result.evaluation
    _record("tictactoe", dict(
        config=overrides, wall_s=result.wall_time_s,
        search_nonoptimal=e["audit_search_nonoptimal"],
        search_blunders=e["audit_search_blunders"],
        search_never_loses=e["audit_search_never_loses"],
        network_nonoptimal=e["audit_network_nonoptimal"],
        network_blunders=e["audit_network_blunders"],
        network_never_loses=e["audit_network_never_loses"],
        eval_simulations=cfg.eval_simulations))


def target_tictactoe_muzero(overrides, games=1000):
    # Gumbel MuZero: the learned-model preset that meets the target fastest
    # (--set algorithm=muzero for the PUCT variant).
    cfg = _config("tictactoe", "gumbel_muzero", overrides)
    t0 = time.time()
    result = train(cfg, progress=False, log_every=10, evaluate=False)
    train_s = time.time() - t0
    agent, params = result.agent, result.state.params
    player = ev.search_player(agent.eval_planner, params,
                              name=f"{cfg.algorithm}-{cfg.eval_simulations}")
    perfect = ev.tictactoe_solver_player(randomize_ties=True)
    r = ev.arena(agent.domain, player, perfect, num_games=games,
                 key=jax.random.PRNGKey(1))
    print(r.summary())
    audit = ev.audit_tictactoe(player)
    print("audit (search):", audit.summary())
    _record("tictactoe_muzero", dict(
        config=overrides, train_s=train_s, wall_s=time.time() - t0, games=games,
        losses=r.total_losses, draws=r.total_draws, wins=r.total_wins,
        losses_per_seat=r.losses.tolist(), audit_nonoptimal=audit.num_nonoptimal,
        audit_blunders=audit.num_blunders))


def target_connect4(overrides, games=200, depth=4, opening_moves=2,
                    eval_sims=None, eval_keys=(2,)):
    cfg = _config("connect4", None, overrides)
    t0 = time.time()
    out = RESULTS_DIR / "runs" / "connect4"
    result = train(cfg, out_dir=str(out), overwrite=True, progress=False,
                   log_every=10, evaluate=False)
    train_s = time.time() - t0
    evaluate_connect4(result.agent, result.state.params, overrides, train_s, t0,
                      games=games, depth=depth, opening_moves=opening_moves,
                      eval_sims=eval_sims or (cfg.eval_simulations,),
                      eval_keys=eval_keys)


def evaluate_connect4(agent, params, overrides, train_s, t0, *, games, depth,
                      opening_moves, eval_sims, eval_keys=(2,)):
    """Arena of the trained agent (several search sizes) vs alpha-beta(depth).

    The agent searches with its config's evaluation search
    (``eval_search_algorithm``). Each key in ``eval_keys`` draws another set
    of random openings (key 2 is the standard evaluation; more keys measure
    the same agent on more games).
    """
    from mctx_planner.search import make_planner  # pylint: disable=g-import-not-at-top
    from mctx_planner.train import search_config  # pylint: disable=g-import-not-at-top
    opponent = ev.alphabeta_player(depth, randomize_ties=True)
    search = agent.config.eval_search
    for sims in eval_sims:
        planner = make_planner(agent.eval_planner.model, dataclasses.replace(
            search_config(agent.config, evaluation=True), num_simulations=sims))
        player = ev.search_player(planner, params, name=f"{search}-{sims}")
        for opening_key in eval_keys:
            r = ev.arena(agent.domain, player, opponent, num_games=games,
                         key=jax.random.PRNGKey(opening_key), opening_moves=opening_moves)
            print(f"openings key {opening_key}: {r.summary()}", flush=True)
            _record("connect4", dict(config=overrides, train_s=train_s,
                                     wall_s=time.time() - t0, games=games, depth=depth,
                                     eval_search=search, eval_simulations=sims,
                                     opening_key=opening_key,
                                     opening_moves=opening_moves, score=r.score,
                                     ci=(r.ci_low, r.ci_high), wins=r.wins.tolist(),
                                     draws=r.draws.tolist(), losses=r.losses.tolist()))


def target_connect4_eval(overrides, eval_sims=None, eval_keys=(2,), run=None,
                         games=200):
    """Re-scores a saved Connect Four run (default: the ``connect4`` target's).

    Only the evaluation fields of the saved config may be overridden
    (``--set eval_simulations=N``, ``--set eval_search_algorithm=muzero``).
    """
    from mctx_planner.trainer import load_run  # pylint: disable=g-import-not-at-top
    fields = dict(o.split("=", 1) for o in overrides)
    allowed = {"eval_simulations", "eval_search_algorithm"}
    if set(fields) - allowed:
        raise SystemExit("connect4_eval re-scores a saved run: only --set "
                         f"{' / '.join(sorted(allowed))} (or --eval-sims) apply, got "
                         f"{sorted(fields)}")
    run = run or str(RESULTS_DIR / "runs" / "connect4")
    agent, state, info = load_run(run)
    if fields:
        agent = agent._replace(config=config_lib.apply_overrides(agent.config, overrides))
    if eval_sims is None:
        eval_sims = (agent.config.eval_simulations,)
    t0 = time.time()
    evaluate_connect4(agent, state.params,
                      [f"(saved run {run}, seed {agent.config.seed})", *overrides],
                      info["metadata"].get("wall_time_s", float("nan")), t0, games=games,
                      depth=4, opening_moves=2, eval_sims=eval_sims, eval_keys=eval_keys)


def target_maze(overrides, mazes=500, eval_sims=(64, 256)):
    from mctx_planner.search import make_planner  # pylint: disable=g-import-not-at-top
    from mctx_planner.train import search_config  # pylint: disable=g-import-not-at-top
    from mctx_planner.trainer import maze_optimality  # pylint: disable=g-import-not-at-top
    cfg = _config("maze", None, overrides)
    t0 = time.time()
    result = train(cfg, out_dir=str(RESULTS_DIR / "runs" / "maze"), overwrite=True,
                   progress=False, log_every=10, evaluate=False)
    train_s = time.time() - t0
    for sims in eval_sims:
        planner = make_planner(result.agent.eval_planner.model, dataclasses.replace(
            search_config(cfg, evaluation=True), num_simulations=sims))
        agent = result.agent._replace(eval_planner=planner)
        # Held-out mazes: keys never used by training (derived from cfg.seed).
        m = maze_optimality(agent, result.state.params,
                            jax.random.PRNGKey(123_456_789), num_mazes=mazes)
        _record("maze", dict(config=overrides, train_s=train_s,
                             wall_s=time.time() - t0, mazes=mazes,
                             eval_simulations=sims, **m))


def target_2048(overrides, episodes=200):
    cfg = _config("2048", None, overrides)
    t0 = time.time()
    result = train(cfg, progress=False, log_every=10, evaluate=False)
    train_s = time.time() - t0
    agent, params = result.agent, result.state.params
    player = ev.search_player(agent.eval_planner, params,
                              name=f"stochastic-muzero-{cfg.eval_simulations}")
    key = jax.random.PRNGKey(3)
    init = ev.init_batch(agent.domain, episodes, key)
    rows = {}
    for name, p in (("agent", player), ("greedy", ev.greedy_one_step_player(agent.domain)),
                    ("random", ev.random_player(agent.domain))):
        s = ev.evaluate_single_player(agent.domain, p, key=key, initial_states=init)
        print(s.summary())
        rows[name] = dict(mean=s.mean_return, ci=(s.ci_low, s.ci_high),
                          length=s.mean_length)
    _record("2048", dict(config=overrides, train_s=train_s, wall_s=time.time() - t0,
                         episodes=episodes, domain_kwargs=dict(cfg.domain_kwargs), **rows))


def target_throughput(overrides, iterations=5):
    rows = {}
    for (domain, algorithm) in config_lib._PRESETS:  # pylint: disable=protected-access
        cfg = config_lib.apply_overrides(config_lib.preset(domain, algorithm),
                                         list(overrides) + [f"iterations={iterations}"])
        from mctx_planner.train import make_agent  # pylint: disable=g-import-not-at-top
        agent = make_agent(cfg)
        state = agent.init(jax.random.PRNGKey(0))
        t0 = time.time()
        state, m = agent.iteration(state)
        jax.block_until_ready(m)
        compile_s = time.time() - t0
        t0 = time.time()
        for _ in range(iterations):
            state, m = agent.iteration(state)
        jax.block_until_ready(m)
        per_iter = (time.time() - t0) / iterations
        steps = cfg.num_envs * cfg.unroll_length
        rows[f"{domain}/{algorithm}"] = dict(
            env_steps_per_s=steps / per_iter, iteration_s=per_iter,
            first_iteration_s=compile_s, num_envs=cfg.num_envs,
            simulations=cfg.num_simulations,
            updates_per_iteration=cfg.updates_per_iteration)
        print(f"{domain:>14}/{algorithm:<18} {steps / per_iter:9.0f} env steps/s "
              f"(B={cfg.num_envs}, S={cfg.num_simulations}, "
              f"{cfg.updates_per_iteration} updates/iter; first iteration "
              f"{compile_s:.1f} s)", flush=True)
    _record("throughput", dict(config=overrides, presets=rows))


TARGETS = dict(tictactoe=target_tictactoe, tictactoe_muzero=target_tictactoe_muzero,
               connect4=target_connect4, connect4_eval=target_connect4_eval,
               maze=target_maze, **{"2048": target_2048},
               throughput=target_throughput)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="FIELD=VALUE")
    parser.add_argument("--eval-sims", type=int, nargs="+", default=None,
                        help="maze and connect4: simulation budgets to evaluate at "
                             "(default: maze 64 256; connect4 and connect4_eval "
                             "the config's eval_simulations)")
    parser.add_argument("--eval-keys", type=int, nargs="+", default=None,
                        help="connect4, connect4_eval: keys of the random openings, "
                             "200 games each (default 2)")
    parser.add_argument("--games", type=int, default=None,
                        help="evaluation size: games (tictactoe_muzero, connect4, "
                             "connect4_eval), mazes (maze) or episodes (2048); "
                             "default each target's own")
    parser.add_argument("--results-dir", default=None,
                        help="where train_targets.jsonl and the runs go "
                             "(default benchmarks/results)")
    parser.add_argument("--run", default=None,
                        help="connect4_eval: the saved run directory "
                             "(default runs/connect4 in --results-dir)")
    args = parser.parse_args(argv)
    if args.results_dir:
        global RESULTS_DIR  # pylint: disable=global-statement
        RESULTS_DIR = pathlib.Path(args.results_dir)
    kwargs = {}
    if args.games is not None:
        size_arg = dict(tictactoe_muzero="games", connect4="games",
                        connect4_eval="games", maze="mazes", **{"2048": "episodes"})
        if args.target not in size_arg:
            parser.error(f"--games does not apply to the {args.target} target")
        if args.games < 1:
            parser.error(f"--games must be >= 1, got {args.games}")
        kwargs[size_arg[args.target]] = args.games
    if args.eval_sims and args.target in ("maze", "connect4", "connect4_eval"):
        kwargs["eval_sims"] = tuple(args.eval_sims)
    if args.eval_keys and args.target in ("connect4", "connect4_eval"):
        kwargs["eval_keys"] = tuple(args.eval_keys)
    if args.run and args.target == "connect4_eval":
        kwargs["run"] = args.run
    TARGETS[args.target](args.overrides, **kwargs)


if __name__ == "__main__":
    main()
