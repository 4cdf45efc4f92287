"""The host loop of a training run: progress, metrics, evaluation, checkpoints.

:func:`train` drives :class:`~mctx_planner.train.Agent` iterations (each one
compiled program), shows a progress bar and a one-line summary per iteration,
writes every metric as JSON lines (``metrics.jsonl``; TensorBoard too when
``tensorboardX`` is installed), evaluates the agent in an arena against
baselines, and saves checkpoints with :mod:`mctx_planner.checkpoint`.

Exact resume: everything that influences training is in the ``TrainState``
(PRNG key included) and evaluation uses keys derived from the iteration
number, never the run's key, so ``train(..., resume=True)`` after a kill
between iterations gives the same parameters as a run never stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import shutil
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner import checkpoint as ckpt
from mctx_planner import evaluate as ev
from mctx_planner.config import TrainConfig
from mctx_planner.networks import MuZeroNet
from mctx_planner.train import Agent, TrainState, make_agent, shard_state


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      agent: the :class:`~mctx_planner.train.Agent` (planners, network).
      state: the final ``TrainState``.
      history: one metrics dict per iteration run in this call.
      evaluation: the last evaluation's results (see :func:`evaluate_agent`).
      wall_time_s: seconds spent in this call, compilation included.
    """

    agent: Agent
    state: TrainState
    history: List[Dict[str, float]]
    evaluation: Dict[str, Any]
    wall_time_s: float


def network_action_fn(agent: Agent):
    """The raw policy network as a player, without search.

    Returns a jitted ``act(params, states) -> [B] int32``: the legal action
    with the highest prior logit in each of the ``[B]`` batched ``states``
    (for MuZero agents, the prediction head applied to the representation of
    the observation). Useful to measure how much search adds to the network.
    """
    # One compiled program per network (the networks are frozen, hashable
    # modules), shared by every call: periodic evaluations do not recompile.
    return functools.partial(_network_act, agent.net)


@functools.partial(jax.jit, static_argnums=0)
def _network_act(net, params, states):
    if isinstance(net, MuZeroNet):
        latent = net.apply(params, states.observation, method=MuZeroNet.represent)
        logits, _ = net.apply(params, latent, method=MuZeroNet.predict)
    else:
        logits, _ = net.apply(params, states.observation)
    logits = jnp.where(states.legal_action_mask, logits, -jnp.inf)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def evaluate_agent(agent: Agent, params: Any, key: jax.Array, *,
                   num_games: int = 200, previous_params: Any = None,
                   log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Evaluates ``params``: arena or episode returns, per the domain.

    * two-player: arena (both seats, ``num_games`` games) against a uniformly
      random player, against pure search (true model, uninformed network, the
      same search and simulations), and against ``previous_params`` when given;
      tic-tac-toe also gets the exhaustive perfect-play audit, for the search
      player and for the raw policy network.
    * one-player: mean return with a 95% CI against random (and greedy
      one-step for stochastic domains); for the maze, the fraction of mazes
      solved in the BFS-optimal number of steps.

    Returns:
      A flat dict of numbers (and summary strings under keys ending in
      ``_summary``).
    """
    domain = agent.domain
    config = agent.config
    agent_player = ev.search_player(agent.eval_planner, params,
                                    name=f"agent-{config.eval_simulations}")
    results: Dict[str, Any] = {}
    keys = jax.random.split(key, 4)
    if domain.two_player:
        opponents = [("random", ev.random_player(domain)),
                     ("pure_search", ev.pure_search_player(
                         domain, config.eval_simulations, algorithm=config.eval_search,
                         backend=config.search_backend))]
        if previous_params is not None:
            opponents.append(("previous", ev.search_player(
                agent.eval_planner, previous_params, name="previous")))
        for (name, opponent), k in zip(opponents, keys):
            r = ev.arena(domain, agent_player, opponent, num_games=num_games, key=k)
            results[f"vs_{name}_score"] = r.score
            results[f"vs_{name}_losses"] = r.total_losses
            results[f"vs_{name}_summary"] = r.summary()
            log("  " + r.summary())
        if domain.name == "tictactoe":
            net_act = network_action_fn(agent)
            search_audit = ev.audit_tictactoe(agent_player)
            net_audit = ev.audit_tictactoe(lambda s: net_act(params, s))
            for name, audit in (("search", search_audit), ("network", net_audit)):
                results[f"audit_{name}_nonoptimal"] = audit.num_nonoptimal
                results[f"audit_{name}_blunders"] = audit.num_blunders
                results[f"audit_{name}_never_loses"] = audit.never_loses
                results[f"audit_{name}_perfect"] = audit.perfect
                results[f"audit_{name}_summary"] = audit.summary()
                log(f"  audit ({name}): " + audit.summary())
    else:
        stats = ev.evaluate_single_player(domain, agent_player,
                                          num_episodes=num_games, key=keys[0])
        results["mean_return"] = stats.mean_return
        results["return_ci"] = (stats.ci_low, stats.ci_high)
        results["agent_summary"] = stats.summary()
        log("  " + stats.summary())
        baselines = [("random", ev.random_player(domain))]
        if domain.is_stochastic:
            baselines.append(("greedy", ev.greedy_one_step_player(domain)))
        for name, player in baselines:
            s = ev.evaluate_single_player(domain, player, num_episodes=num_games,
                                          key=keys[0])
            results[f"{name}_mean_return"] = s.mean_return
            results[f"{name}_summary"] = s.summary()
            log("  " + s.summary())
        if domain.name == "maze":
            results.update(maze_optimality(agent, params, keys[1],
                                           num_mazes=num_games, log=log))
    return results


def maze_optimality(agent: Agent, params: Any, key: jax.Array, *,
                    num_mazes: int = 200, log: Callable[[str], None] = print
                    ) -> Dict[str, float]:
    """Fraction of fresh mazes the agent solves in the BFS-optimal step count.

    Plays ``num_mazes`` mazes drawn from ``key`` (keys never used by training
    when ``key`` is not derived from the run's seed) to the end with the
    agent's evaluation planner, and compares each return with the BFS
    distance (:func:`mctx_planner.domains.maze.shortest_path_length`).

    Returns:
      ``{"maze_optimal_fraction": ..., "maze_solved_fraction": ...}``; a
      summary line goes to ``log``.
    """
    from mctx_planner.domains.maze import shortest_path_length  # pylint: disable=g-import-not-at-top
    domain = agent.domain
    search = agent.eval_planner.search

    @jax.jit
    def run(params, key):
        init_key, act_key = jax.random.split(key)
        states = jax.vmap(domain.init)(jax.random.split(init_key, num_mazes))
        optimal = jax.vmap(shortest_path_length)(states)

        def body(carry):
            s, ret, k, t = carry
            k, sub = jax.random.split(k)
            a = search(params, sub, s).action
            s2 = jax.vmap(domain.step)(s, a)
            return s2, ret + s2.reward, k, t + 1

        def cond(carry):
            s, _, _, t = carry
            return (t < domain.max_episode_steps) & ~jnp.all(s.terminated | s.truncated)

        s, ret, _, _ = jax.lax.while_loop(
            cond, body, (states, jnp.zeros(num_mazes), act_key, 0))
        return ret, optimal, s.terminated

    ret, optimal, solved = jax.device_get(run(params, key))
    optimal_fraction = float(np.mean(solved & (np.round(-ret) == optimal)))
    log(f"  maze: optimal path on {100 * optimal_fraction:.1f}% of {num_mazes} fresh "
        f"mazes, solved {100 * float(np.mean(solved)):.1f}%, mean steps "
        f"{float(np.mean(-ret)):.2f} vs optimal {float(np.mean(optimal)):.2f}")
    return dict(maze_optimal_fraction=optimal_fraction,
                maze_solved_fraction=float(np.mean(solved)))


def load_run(path: str, *, step: Optional[int] = None):
    """Loads a run saved by :func:`train`.

    Args:
      path: the run directory (``--out``) or its ``checkpoints`` folder.
      step: a specific iteration (default: the newest checkpoint).

    Returns:
      ``(agent, state, info)``: the rebuilt :class:`~mctx_planner.train.Agent`,
      the restored ``TrainState`` and the checkpoint info (config, metadata).

    Raises:
      mctx_planner.checkpoint.CheckpointError: no readable checkpoint there.
    """
    run = pathlib.Path(path)
    ckpt_dir = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    probe_step = step if step is not None else ckpt.latest_step(ckpt_dir)
    if probe_step is None:
        raise ckpt.CheckpointNotFoundError(
            f"no checkpoint in {ckpt_dir} (train with --out {path} first)")
    info_config = ckpt.read_info(ckpt_dir, probe_step)["config"]
    config = TrainConfig.from_dict(info_config)
    agent = make_agent(config)
    target = jax.eval_shape(agent.init, jax.random.PRNGKey(config.seed))
    state, info = ckpt.restore(ckpt_dir, target, step=probe_step)
    return agent, state, info


def _format(metrics: Dict[str, float]) -> str:
    keys = ("loss", "policy_loss", "value_loss", "reward_loss", "first_player_return",
            "episodes")
    return " ".join(f"{k}={metrics[k]:.3f}" for k in keys if k in metrics)


class _Progress:
    """tqdm when available and wanted, else plain lines."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
                self.bar = tqdm(total=total, initial=initial, unit="it",
                                dynamic_ncols=True, file=sys.stderr)
            except ImportError:
                pass

    def write(self, text: str):
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def update(self, postfix: str):
        if self.bar is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _donated(state: TrainState) -> bool:
    """Whether ``state`` was given to ``agent.iteration`` (which donates it)."""
    return any(isinstance(x, jax.Array) and x.is_deleted()
               for x in jax.tree.leaves(state))


def _to_float(tree) -> Dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(tree).items()}


#: Fields a resumed run may change: the schedule's length and what neither the
#: parameters nor any training key depend on (evaluation and checkpointing).
# `search_backend` gives the same searches (floats to rounding) whatever its
# value, and its default changed from "fast" to "auto" (2026-11-26).
RESUME_MAY_CHANGE = ("iterations", "eval_simulations", "eval_search_algorithm",
                     "eval_every", "eval_games", "checkpoint_every",
                     "search_backend")


def train(config: TrainConfig, *, out_dir: Optional[str] = None, resume: bool = False,
          progress: bool = True, evaluate: bool = True, verbose: bool = True,
          log_every: int = 1, stop_after: Optional[int] = None,
          overwrite: bool = False,
          mesh: Optional[jax.sharding.Mesh] = None) -> TrainResult:
    """Runs (or resumes) a training run.

    Args:
      config: the run's :class:`~mctx_planner.config.TrainConfig`.
      out_dir: where ``metrics.jsonl``, ``config.json`` and checkpoints go
        (None: nothing is written).
      resume: continue from the newest checkpoint in ``out_dir``; its saved
        config must equal ``config`` except for the fields in
        ``RESUME_MAY_CHANGE`` (``iterations``, which may grow, the
        evaluation and checkpoint settings, and ``search_backend``, which
        gives the same searches).
      overwrite: delete the checkpoints and metrics of an earlier run in
        ``out_dir`` (without it, such a directory is an error).
      progress: show a progress bar.
      evaluate: run :func:`evaluate_agent` every ``config.eval_every``
        iterations and at the end.
      verbose: print the one-line summaries and evaluation results.
      log_every: print a summary line every this many iterations.
      stop_after: run at most this many iterations in this call, then save a
        checkpoint and return without the final evaluation (for time-sliced
        jobs; continue later with ``resume=True``).
      mesh: optional device mesh with an axis ``"batch"``: the environments,
        the replay and self-play's searches are split over its devices
        (:func:`~mctx_planner.train.shard_state` and ``make_agent(mesh=...)``;
        needs ``search_backend`` ``"fast"`` or ``"auto"``, the default). On
        a CPU, one device per core makes self-play use every core
        (``mctx-planner train --devices N``).

    Returns:
      A :class:`TrainResult`.
    """
    start = time.time()
    log = print if verbose else (lambda *_: None)
    agent = make_agent(config, mesh=mesh)
    state = None
    ckpt_dir = None
    if out_dir is not None:
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        ckpt_dir = out / "checkpoints"
        if resume and ckpt.latest_step(ckpt_dir) is not None:
            target = jax.eval_shape(agent.init, jax.random.PRNGKey(config.seed))
            state, info = ckpt.restore(ckpt_dir, target)
            saved = TrainConfig.from_dict(info["config"])
            if saved.replace(**{f: getattr(config, f) for f in RESUME_MAY_CHANGE}) != config:
                raise ValueError(
                    f"--resume: the config in {ckpt_dir} differs from the requested "
                    "one; pass the same settings (only "
                    f"{', '.join(RESUME_MAY_CHANGE)} may change)")
            if saved.iterations != config.iterations:
                log(f"note: iterations changed from {saved.iterations} to "
                    f"{config.iterations}; the learning-rate schedule spans "
                    "'iterations', so this run will not match an uninterrupted one")
            log(f"resumed from {ckpt_dir} at iteration {int(state.iteration)}")
        elif resume:
            log(f"no checkpoint in {ckpt_dir}: starting a new run")
        elif ckpt.latest_step(ckpt_dir) is not None:
            if not overwrite:
                raise ValueError(
                    f"{out_dir} already holds a run (checkpoint at iteration "
                    f"{ckpt.latest_step(ckpt_dir)}); continue it with resume=True "
                    "(--resume), or start over with overwrite=True (--overwrite), "
                    "or choose another directory (--out)")
            shutil.rmtree(ckpt_dir)
            (out / "metrics.jsonl").unlink(missing_ok=True)
        (out / "config.json").write_text(config.to_json())
    if state is None:
        state = agent.init(jax.random.PRNGKey(config.seed))
    if mesh is not None:
        state = shard_state(state, mesh)

    first = int(state.iteration)
    log(f"mctx-planner: {config.algorithm} on {config.domain} | {config.num_envs} "
        f"envs x {config.unroll_length} steps x {config.num_simulations} sims per "
        f"iteration, {config.updates_per_iteration} updates of {config.batch_size} | "
        f"replay {config.replay_capacity} examples = "
        f"{agent.replay_nbytes / 2**20:.1f} MiB | devices: "
        + (f"{jax.devices()}" if mesh is None else
           f"split over {mesh.devices.size}: {list(mesh.devices.flat)}"))
    metrics_file = None
    writer = None
    if out_dir is not None:
        metrics_file = open(pathlib.Path(out_dir) / "metrics.jsonl", "a")
        try:
            from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
            writer = SummaryWriter(str(pathlib.Path(out_dir) / "tensorboard"))
        except ImportError:
            writer = None

    def save(state):
        if ckpt_dir is None:
            return
        ckpt.save(ckpt_dir, int(state.iteration), state, config=config.to_dict(),
                  metadata=dict(env_steps=int(state.env_steps),
                                updates=int(state.updates),
                                wall_time_s=time.time() - start))

    history: List[Dict[str, float]] = []
    evaluation: Dict[str, Any] = {}
    bar = _Progress(config.iterations, first, progress)
    previous_params = None
    last = config.iterations
    if stop_after is not None:
        last = min(last, first + int(stop_after))
    try:
        for it in range(first, last):
            t0 = time.time()
            state, metrics = agent.iteration(state)
            metrics = _to_float(metrics)
            metrics.update(iteration=it + 1, seconds=time.time() - t0,
                           env_steps=int(state.env_steps),
                           env_steps_per_s=config.num_envs * config.unroll_length
                           / max(time.time() - t0, 1e-9))
            history.append(metrics)
            if metrics_file is not None:
                metrics_file.write(json.dumps(metrics) + "\n")
                metrics_file.flush()
            if writer is not None:
                for k, v in metrics.items():
                    writer.add_scalar(k, v, it + 1)
            if verbose and ((it + 1) % log_every == 0 or it == first):
                bar.write(f"iter {it + 1:4d} | {_format(metrics)} | "
                          f"{metrics['env_steps_per_s']:.0f} steps/s")
            bar.update(f"loss={metrics['loss']:.3f}")
            done = it + 1 == config.iterations
            if config.checkpoint_every and (it + 1) % config.checkpoint_every == 0 \
                    and not done:
                save(state)
            if evaluate and config.eval_every and (it + 1) % config.eval_every == 0 \
                    and not done:
                bar.write(f"evaluation at iteration {it + 1}:")
                evaluation = evaluate_agent(
                    agent, state.params, jax.random.PRNGKey(10_000 + it),
                    num_games=config.eval_games, previous_params=previous_params,
                    log=bar.write)
                # A copy: the next iteration donates (deletes) state.params.
                previous_params = jax.tree.map(jnp.copy, state.params)
                if metrics_file is not None:
                    metrics_file.write(json.dumps(dict(
                        iteration=it + 1, **{k: v for k, v in evaluation.items()
                                             if not k.endswith("summary")})) + "\n")
    except KeyboardInterrupt:
        bar.close()
        if _donated(state):
            # Interrupted inside agent.iteration, after it took the state
            # (donated) and before it returned the next one: nothing to save.
            log("interrupted inside an iteration: nothing newer than the last "
                "checkpoint to save; resume with --resume")
            raise
        save(state)
        log(f"interrupted: saved iteration {int(state.iteration)}; resume with --resume")
        raise
    bar.close()
    save(state)
    if last < config.iterations:
        log(f"stopped after iteration {last} of {config.iterations}; continue "
            "with resume=True (--resume)")
        if metrics_file is not None:
            metrics_file.close()
        return TrainResult(agent=agent, state=state, history=history,
                           evaluation=evaluation, wall_time_s=time.time() - start)
    if evaluate:
        log(f"final evaluation after {int(state.iteration)} iterations "
            f"({time.time() - start:.1f} s so far):")
        evaluation = evaluate_agent(agent, state.params,
                                    jax.random.PRNGKey(99_999),
                                    num_games=config.eval_games,
                                    previous_params=previous_params, log=log)
        if metrics_file is not None:
            metrics_file.write(json.dumps(dict(
                iteration=int(state.iteration), final=True,
                **{k: v for k, v in evaluation.items()
                   if not k.endswith("summary")}), default=float) + "\n")
    if metrics_file is not None:
        metrics_file.close()
    wall = time.time() - start
    log(f"done in {wall:.1f} s ({int(state.env_steps)} environment steps)")
    return TrainResult(agent=agent, state=state, history=history,
                       evaluation=evaluation, wall_time_s=wall)
