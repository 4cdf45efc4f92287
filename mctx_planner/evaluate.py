"""Evaluation: players, two-player arenas, one-player episodes, and a
complete tic-tac-toe policy audit against the exact solver.

Players
-------
A :class:`Player` wraps ``act(key, states) -> actions``: ``states`` is a
*batched* domain state (leading axis ``B``) and ``actions`` an ``[B]`` int32
array. A *jittable* player is a pure JAX function (it is traced inside the
arena's ``lax.while_loop``); a *host* player (``jittable=False``) is an
ordinary Python callable that receives the batched state as numpy arrays and
returns a numpy ``[B]`` array (e.g. the alpha-beta or exact-solver players).

Constructors: :func:`random_player`, :func:`search_player`,
:func:`pure_search_player`, :func:`greedy_one_step_player`,
:func:`alphabeta_player`, :func:`tictactoe_solver_player`.

Evaluation
----------
* :func:`arena` -- A vs B in a two-player domain, half the games in each seat;
  wins / draws / losses per seat and a 95% Wilson interval on the score.
* :func:`evaluate_single_player` -- mean return (95% CI) and episode length in
  a one-player domain.
* :func:`audit_tictactoe` -- a policy's move at each of the 4520 non-terminal
  reachable tic-tac-toe positions versus minimax, and whether some opponent
  strategy beats it as X or as O.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner import search as search_lib
from mctx_planner import solvers
from mctx_planner.domains.base import Domain, StochasticDomain

__all__ = [
    "Player",
    "random_player",
    "search_player",
    "pure_search_player",
    "evaluation_config",
    "greedy_one_step_player",
    "alphabeta_player",
    "tictactoe_solver_player",
    "ArenaResult",
    "arena",
    "EpisodeStats",
    "evaluate_single_player",
    "init_batch",
    "BadMove",
    "AuditResult",
    "audit_tictactoe",
    "tictactoe_states",
    "wilson_interval",
]

State = Any

# ---------------------------------------------------------------------------
# Players
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Player:
    """A policy over batched states.

    Attributes:
      act: ``(key, states) -> [B] int32 actions``, or ``(params, key,
        states)`` when ``params`` is given; ``states`` is a batched domain
        state. Jittable players must be pure JAX; host players get and
        return numpy arrays.
      jittable: whether ``act`` can be traced with ``jax.jit``.
      name: label used in summaries.
      params: optional pytree passed to ``act`` as its first argument. The
        arena and the episode loops compile once per ``act`` and take
        ``params`` as an argument, so players that differ only in
        ``params`` (e.g. two checkpoints, or each periodic evaluation of a
        run) share the compiled code instead of baking the weights in.
    """

    act: Callable[..., chex.Array]
    jittable: bool = True
    name: str = "player"
    params: Any = None

    def __call__(self, key: chex.PRNGKey, states: State) -> chex.Array:
        return _apply(_program(self), self.params, key, states)


def _program(player: Player):
    """The hashable, static part of a player (what compiled code depends on)."""
    return player.act, player.params is not None


def _apply(program, params, key, states):
    act, with_params = program
    return act(params, key, states) if with_params else act(key, states)


@functools.lru_cache(maxsize=64)
def _planner_act(search: Callable[..., Any], with_params: bool):
    """One stable ``act`` per search function (so compiled loops are reused)."""
    if with_params:
        def act(params, key, states):
            return search(params, key, states).action
    else:
        def act(key, states):
            return search(None, key, states).action
    return act


def _masked_uniform(key: chex.PRNGKey, allowed: chex.Array) -> chex.Array:
    """``[B]`` int32 index drawn uniformly among True entries of ``[B, A]``."""
    logits = jnp.where(allowed, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def random_player(domain: Domain) -> Player:
    """Uniformly random legal moves (jittable).

    ``act(key, states)`` with ``states.legal_action_mask`` ``[B, A]`` returns
    ``[B]`` int32 actions.
    """
    del domain  # only the state's legal mask is needed
    def act(key, states):
        return _masked_uniform(key, states.legal_action_mask)
    return Player(act=act, jittable=True, name="random")


def evaluation_config(num_simulations: int, algorithm: str = "gumbel_muzero",
                      **overrides: Any) -> search_lib.SearchConfig:
    """A deterministic :class:`~mctx_planner.search.SearchConfig` for evaluation.

    ``temperature = 0`` (most visited move), ``dirichlet_fraction = 0`` and
    ``gumbel_scale = 0`` (no root noise); ``overrides`` replace any field.
    """
    fields = dict(algorithm=algorithm, num_simulations=num_simulations,
                  temperature=0.0, dirichlet_fraction=0.0, gumbel_scale=0.0)
    fields.update(overrides)
    return search_lib.SearchConfig(**fields)


def search_player(planner: search_lib.Planner, params: chex.ArrayTree,
                  name: Optional[str] = None) -> Player:
    """Plays ``planner.search(params, key, states).action`` (jittable).

    The caller chooses the planner's :class:`~mctx_planner.search.SearchConfig`:
    for evaluation use a deterministic one (temperature 0, no Dirichlet noise,
    ``gumbel_scale = 0``), e.g. :func:`evaluation_config`. The key passed to
    ``act`` feeds the search (and hence any noise the config keeps).

    Args:
      planner: from :func:`~mctx_planner.search.make_planner`.
      params: network parameters (``Player.params``: players of one planner
        share compiled code whatever their parameters).
      name: label; defaults to ``"<algorithm>-<num_simulations>"``.
    """
    if not isinstance(planner, search_lib.Planner):
        raise TypeError(f"planner must be a Planner (make_planner), got "
                        f"{type(planner).__name__}")
    cfg = planner.config
    return Player(act=_planner_act(planner.search, params is not None),
                  jittable=True, params=params,
                  name=name or f"{cfg.algorithm}-{cfg.num_simulations}")


def pure_search_player(domain: Domain, num_simulations: int, *,
                       algorithm: str = "gumbel_muzero",
                       backend: str = "auto",
                       **config_overrides: Any) -> Player:
    """Search over the true model with an uninformed network (jittable).

    The network is :func:`~mctx_planner.search.uniform_predict_fn` (uniform
    prior, value 0), so the strength comes from search alone. The config is
    :func:`evaluation_config` (deterministic) unless overridden.

    Args:
      domain: the domain (its ``step`` is the model).
      num_simulations: simulations per move.
      algorithm: ``"gumbel_muzero"``, ``"muzero"`` or ``"stochastic_muzero"``.
      backend: ``"auto"`` (default), ``"fast"`` or ``"mctx"``
        (``SearchConfig.backend``): the same results.
      **config_overrides: more :class:`~mctx_planner.search.SearchConfig` fields.
    """
    args = (domain, int(num_simulations), algorithm, backend,
            tuple(sorted(config_overrides.items())))
    try:
        hash(args)
        build = _pure_search_planner
    except TypeError:  # an unhashable override value: build it uncached
        build = _pure_search_planner.__wrapped__
    planner = build(*args)
    return search_player(planner, None,
                         name=f"pure-{algorithm}-{num_simulations}")


@functools.lru_cache(maxsize=32)
def _pure_search_planner(domain, num_simulations, algorithm, backend, overrides):
    """Cached, so that repeated baselines reuse their compiled arena loops."""
    model = search_lib.true_model(domain,
                                  search_lib.uniform_predict_fn(domain.num_actions))
    config = evaluation_config(num_simulations, algorithm, backend=backend,
                               **dict(overrides))
    return search_lib.make_planner(model, config)


def greedy_one_step_player(domain: Domain) -> Player:
    """Myopic one-player baseline: the legal move of largest immediate reward.

    Tries every action with ``domain.step`` (or ``domain.afterstate`` for a
    :class:`~mctx_planner.domains.base.StochasticDomain`, whose afterstate
    carries the move's reward without sampling chance) and picks the best
    legal one, breaking ties uniformly at random with the key (jittable).

    Raises:
      ValueError: the domain has two players.
    """
    if domain.num_players != 1:
        raise ValueError(
            f"greedy_one_step_player is for one-player domains; {domain.name!r} "
            f"has {domain.num_players} players")
    transition = (domain.afterstate if isinstance(domain, StochasticDomain)
                  else domain.step)
    actions = jnp.arange(domain.num_actions, dtype=jnp.int32)

    def act(key, states):
        def rewards_of(a):
            return jax.vmap(transition, in_axes=(0, None))(states, a).reward
        rewards = jax.vmap(rewards_of, out_axes=1)(actions)  # [B, A]
        legal = states.legal_action_mask
        scores = jnp.where(legal, rewards, -jnp.inf)
        best = scores >= jnp.max(scores, axis=-1, keepdims=True)
        return _masked_uniform(key, best & legal)
    return Player(act=act, jittable=True, name="greedy-1step")


def _host_seed(key: chex.PRNGKey) -> int:
    return int(jax.random.randint(key, (), 0, 2 ** 31 - 1))


def _ended(states) -> np.ndarray:
    return np.asarray(states.terminated) | np.asarray(states.truncated)


def alphabeta_player(depth: int, *, randomize_ties: bool = False) -> Player:
    """Connect Four alpha-beta player (host side; see
    :func:`~mctx_planner.solvers.alphabeta_connect4`).

    ``act(key, states)`` reads ``states.board`` ``[B, 6, 7]`` and
    ``states.current_player`` ``[B]`` (numpy) and returns ``[B]`` int32
    columns; ended games get action 0. With ``randomize_ties`` the key seeds
    the choice among equally scored moves, otherwise ties go to the centre.
    """
    if not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")

    def act(key, states):
        boards = np.asarray(states.board)
        players = np.asarray(states.current_player).reshape(-1)
        ended = _ended(states).reshape(-1)
        rng = np.random.default_rng(_host_seed(key)) if randomize_ties else None
        out = np.zeros((players.shape[0],), np.int32)
        for i in np.flatnonzero(~ended):
            out[i] = solvers.alphabeta_connect4(boards[i], players[i], depth, rng)
        return out
    return Player(act=act, jittable=False, name=f"alphabeta-{depth}")


_SHARED_TTT_SOLVER: Optional[solvers.TicTacToeSolver] = None


def _ttt_solver() -> solvers.TicTacToeSolver:
    global _SHARED_TTT_SOLVER
    if _SHARED_TTT_SOLVER is None:
        _SHARED_TTT_SOLVER = solvers.TicTacToeSolver()
    return _SHARED_TTT_SOLVER


def tictactoe_solver_player(*, randomize_ties: bool = False) -> Player:
    """Perfect tic-tac-toe player (host side): an exact minimax-optimal move.

    ``act(key, states)`` reads ``states.board`` ``[B, 9]`` and
    ``states.current_player`` ``[B]``; among optimal moves it plays the lowest
    index, or a uniformly random one with ``randomize_ties``. Ended games get
    action 0.
    """
    def act(key, states):
        solver = _ttt_solver()
        boards = np.asarray(states.board).reshape(-1, 9)
        players = np.asarray(states.current_player).reshape(-1)
        ended = _ended(states).reshape(-1)
        rng = np.random.default_rng(_host_seed(key)) if randomize_ties else None
        out = np.zeros((players.shape[0],), np.int32)
        for i in np.flatnonzero(~ended):
            best = sorted(solver.optimal_actions(boards[i], players[i]))
            out[i] = best[0] if rng is None else best[rng.integers(len(best))]
        return out
    return Player(act=act, jittable=False, name="minimax")


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def wilson_interval(score: float, n: int, z: float = 1.96) -> Tuple[float, float]:
    """Wilson score interval of a proportion ``score`` over ``n`` trials.

    Used for arena scores with draws counted as half a win (an approximation:
    draws make the per-game score ternary, which narrows the true interval).
    """
    if n <= 0:
        return (0.0, 1.0)
    denom = 1.0 + z * z / n
    centre = (score + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(score * (1 - score), 0.0) / n
                         + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


# ---------------------------------------------------------------------------
# Arena
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ArenaResult:
    """Outcome of :func:`arena`, from player A's point of view.

    Attributes:
      name_a, name_b: player labels.
      num_games: games played (half with A as player 0).
      wins, draws, losses: ``[2]`` int arrays indexed by A's seat (0 = A moved
        first).
      score: ``(wins + draws / 2) / num_games`` over both seats.
      ci_low, ci_high: 95% Wilson interval of ``score``.
      mean_length: mean number of plies per game (openings included).
      outcomes: ``[num_games]`` int8, +1 / 0 / -1 for A.
      a_seat: ``[num_games]`` int8, A's seat in each game.
    """

    name_a: str
    name_b: str
    num_games: int
    wins: np.ndarray
    draws: np.ndarray
    losses: np.ndarray
    score: float
    ci_low: float
    ci_high: float
    mean_length: float
    outcomes: np.ndarray
    a_seat: np.ndarray

    @property
    def total_wins(self) -> int:
        return int(self.wins.sum())

    @property
    def total_draws(self) -> int:
        return int(self.draws.sum())

    @property
    def total_losses(self) -> int:
        return int(self.losses.sum())

    def summary(self) -> str:
        """One line: score with CI, W/D/L overall and per seat, game length."""
        w, d, l = self.wins, self.draws, self.losses
        return (f"{self.name_a} vs {self.name_b}: {self.num_games} games, "
                f"score {self.score:.3f} [95% CI {self.ci_low:.3f}, "
                f"{self.ci_high:.3f}]; W/D/L {self.total_wins}/"
                f"{self.total_draws}/{self.total_losses} (as P0 {w[0]}/{d[0]}/"
                f"{l[0]}, as P1 {w[1]}/{d[1]}/{l[1]}); "
                f"mean length {self.mean_length:.1f} plies")


def _check_player(player, label):
    if not isinstance(player, Player):
        raise TypeError(f"{label} must be a Player (e.g. random_player(domain)), "
                        f"got {type(player).__name__}")


def _tree_slice(tree, start: int, size: int):
    return jax.tree_util.tree_map(
        lambda x: jax.lax.dynamic_slice_in_dim(x, start, size), tree)


def _tree_concat(a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y]), a, b)


@functools.lru_cache(maxsize=32)
def _arena_setup_fn(domain: Domain, half: int, num_moves: int):
    """Jitted ``key -> (states [2 * half], return_for_player_0 [2 * half])``.

    ``half`` initial states, ``num_moves`` uniformly random plies on each,
    then the batch is duplicated (one copy per seat of A).
    """
    step = jax.vmap(domain.step)

    def run(key):
        k_init, k_open = jax.random.split(key)
        states = jax.vmap(domain.init)(jax.random.split(k_init, half))
        ret0 = jnp.zeros((half,), jnp.float32)
        for k in jax.random.split(k_open, num_moves) if num_moves else ():
            mover = states.current_player
            states = step(states, _masked_uniform(k, states.legal_action_mask))
            ret0 = ret0 + jnp.where(mover == 0, states.reward, -states.reward)
        return _tree_concat(states, states), jnp.concatenate([ret0, ret0])
    return jax.jit(run)


@functools.lru_cache(maxsize=32)
def _init_fn(domain: Domain, num: int):
    """Jitted ``key -> num`` batched initial states."""
    return jax.jit(lambda key: jax.vmap(domain.init)(jax.random.split(key, num)))


@functools.lru_cache(maxsize=32)
def _jitted_step(domain: Domain):
    return jax.jit(jax.vmap(domain.step))


@functools.lru_cache(maxsize=32)
def _jitted_act(program):
    """``jit((params, key, states) -> actions)`` of a player's program."""
    return jax.jit(functools.partial(_apply, program))


def _ply(states, actions, ret0, step):
    """Applies one ply to every game and accumulates player 0's return."""
    mover = states.current_player
    ended = states.terminated | states.truncated
    new = step(states, actions)
    gain = jnp.where(mover == 0, new.reward, -new.reward)
    return new, ret0 + jnp.where(ended, 0.0, gain)


@functools.lru_cache(maxsize=32)
def _arena_loop_fn(domain: Domain, program_a, program_b, half: int, max_plies: int):
    """The jitted all-device match loop (both players jittable), called as
    ``run(key, states, ret0, params_a, params_b)``.

    Games ``[0, half)`` have A as player 0, ``[half, 2 * half)`` A as player 1.
    Every live game has the same player to move at each ply (alternation in
    lockstep), so at each ply A acts on one half and B on the other.
    """
    step = jax.vmap(domain.step)

    def cond(carry):
        t, _, states, _, _ = carry
        return (t < max_plies) & ~jnp.all(states.terminated | states.truncated)

    def body(carry, params_a, params_b):
        t, key, states, ret0, violations = carry
        key, ka, kb = jax.random.split(key, 3)
        ended = states.terminated | states.truncated
        mover = states.current_player[jnp.argmin(ended)]  # a live game's mover
        violations = violations + jnp.sum(~ended & (states.current_player != mover))
        a_half = mover  # the half where A is the player to move
        acts_a = _apply(program_a, params_a, ka, _tree_slice(states, a_half * half, half))
        acts_b = _apply(program_b, params_b, kb,
                        _tree_slice(states, (1 - a_half) * half, half))
        acts_a = acts_a.astype(jnp.int32)
        acts_b = acts_b.astype(jnp.int32)
        actions = jnp.where(a_half == 0, jnp.concatenate([acts_a, acts_b]),
                            jnp.concatenate([acts_b, acts_a]))
        states, ret0 = _ply(states, actions, ret0, step)
        return t + 1, key, states, ret0, violations

    def run(key, states, ret0, params_a, params_b):
        carry = (jnp.int32(0), key, states, ret0, jnp.int32(0))
        _, _, states, ret0, violations = jax.lax.while_loop(
            cond, functools.partial(body, params_a=params_a, params_b=params_b), carry)
        return states, ret0, violations
    return jax.jit(run)


def _host_act(player: Player, key, states, idx: np.ndarray, size: int):
    """Actions ``[size]`` of ``player`` for the sub-batch ``idx`` (host loop)."""
    out = np.zeros((size,), np.int32)
    if player.jittable:
        return np.asarray(_jitted_act(_program(player))(player.params, key, states),
                          np.int32)
    if idx.size:
        sub = jax.tree_util.tree_map(lambda x: np.asarray(x)[idx],
                                     jax.device_get(states))
        acts = np.asarray(player(key, sub)).reshape(-1)
        if acts.shape[0] != idx.size:
            raise ValueError(
                f"player {player.name!r} returned {acts.shape[0]} actions for "
                f"{idx.size} states")
        out[idx] = acts
    return out


def arena(domain: Domain, player_a: Player, player_b: Player, *,
          num_games: int, key: chex.PRNGKey, opening_moves: int = 0
          ) -> ArenaResult:
    """Plays A against B in a two-player domain, half the games in each seat.

    Games ``i`` and ``i + num_games / 2`` share their initial state and their
    random opening (``opening_moves`` uniformly random legal plies played
    before the players take over), with A moving first in the first and
    second in the second, which cancels opening and first-move luck.

    All games run in one batch, move by move: fully on device
    (``lax.while_loop``) when both players are jittable, otherwise a host loop
    over plies in which host players only see the live games where they move.

    Results come from the rewards (each reward goes to the player who made the
    move), so an illegal move losing or a truncated game (a draw unless
    rewards say otherwise) are handled by the domain's own rules. Games that
    end during the random opening still count.

    Args:
      domain: a two-player domain.
      player_a, player_b: :class:`Player`\\ s.
      num_games: even and >= 2.
      key: PRNG key (initial states, openings, players' keys).
      opening_moves: random plies before the players move (>= 0).

    Returns:
      An :class:`ArenaResult` (A's point of view).

    Raises:
      ValueError: one-player domain, odd or non-positive ``num_games``,
        negative ``opening_moves``, or a domain whose players do not alternate.
      TypeError: a player is not a :class:`Player`.
    """
    if domain.num_players != 2:
        raise ValueError(
            f"arena needs a two-player domain; {domain.name!r} has "
            f"{domain.num_players} player(s) (use evaluate_single_player)")
    if (not isinstance(num_games, (int, np.integer)) or num_games < 2
            or num_games % 2):
        raise ValueError(f"num_games must be an even int >= 2 (half per seat), "
                         f"got {num_games!r}")
    if not isinstance(opening_moves, (int, np.integer)) or opening_moves < 0:
        raise ValueError(f"opening_moves must be an int >= 0, got {opening_moves!r}")
    _check_player(player_a, "player_a")
    _check_player(player_b, "player_b")
    half = int(num_games) // 2
    k_setup, k_play = jax.random.split(key)
    states, ret0 = _arena_setup_fn(domain, half, int(opening_moves))(k_setup)
    max_plies = int(domain.max_episode_steps) + 1

    if player_a.jittable and player_b.jittable:
        run = _arena_loop_fn(domain, _program(player_a), _program(player_b), half,
                             max_plies)
        states, ret0, violations = run(k_play, states, ret0, player_a.params,
                                       player_b.params)
        if int(violations):
            raise ValueError(
                f"domain {domain.name!r}: live games do not all have the same "
                "player to move at each ply; arena needs strictly alternating "
                "players starting from the same one")
    else:
        step = _jitted_step(domain)
        for _ in range(max_plies):
            ended = _ended(states)
            if ended.all():
                break
            players = np.asarray(states.current_player)
            mover = int(players[np.argmin(ended)])
            if np.any(~ended & (players != mover)):
                raise ValueError(
                    f"domain {domain.name!r}: live games do not all have the "
                    "same player to move; arena needs alternating players")
            k_play, ka, kb = jax.random.split(k_play, 3)
            a_start, b_start = mover * half, (1 - mover) * half
            sl_a = slice(a_start, a_start + half)
            sl_b = slice(b_start, b_start + half)
            actions = np.zeros((2 * half,), np.int32)
            live = ~ended
            actions[sl_a] = _host_act(
                player_a, ka, _tree_slice(states, a_start, half),
                np.flatnonzero(live[sl_a]), half)
            actions[sl_b] = _host_act(
                player_b, kb, _tree_slice(states, b_start, half),
                np.flatnonzero(live[sl_b]), half)
            states, ret0 = _ply(states, jnp.asarray(actions), ret0, step)

    ret0 = np.asarray(ret0)
    a_seat = np.repeat(np.array([0, 1], np.int8), half)
    ret_a = np.where(a_seat == 0, ret0, -ret0)
    outcomes = np.sign(ret_a).astype(np.int8)
    wins = np.array([np.sum((outcomes == 1) & (a_seat == s)) for s in (0, 1)])
    draws = np.array([np.sum((outcomes == 0) & (a_seat == s)) for s in (0, 1)])
    losses = np.array([np.sum((outcomes == -1) & (a_seat == s)) for s in (0, 1)])
    n = 2 * half
    score = float((wins.sum() + 0.5 * draws.sum()) / n)
    lo, hi = wilson_interval(score, n)
    return ArenaResult(
        name_a=player_a.name, name_b=player_b.name, num_games=n,
        wins=wins, draws=draws, losses=losses, score=score, ci_low=lo,
        ci_high=hi, mean_length=float(np.mean(np.asarray(states.step_count))),
        outcomes=outcomes, a_seat=a_seat)


# ---------------------------------------------------------------------------
# One-player evaluation
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class EpisodeStats:
    """Outcome of :func:`evaluate_single_player`.

    Attributes:
      name: the player's label.
      num_episodes: episodes run.
      mean_return: mean undiscounted return (sum of rewards).
      std_return: sample standard deviation of the returns.
      ci_low, ci_high: 95% normal-approximation interval of the mean.
      mean_length: mean number of steps.
      terminated_fraction: fraction of episodes that ended by the rules (the
        rest were truncated).
      returns: ``[N]`` float per-episode returns.
      lengths: ``[N]`` int per-episode lengths.
    """

    name: str
    num_episodes: int
    mean_return: float
    std_return: float
    ci_low: float
    ci_high: float
    mean_length: float
    terminated_fraction: float
    returns: np.ndarray
    lengths: np.ndarray

    def summary(self) -> str:
        """One line: mean return with CI, length, termination rate."""
        return (f"{self.name}: {self.num_episodes} episodes, mean return "
                f"{self.mean_return:.3f} [95% CI {self.ci_low:.3f}, "
                f"{self.ci_high:.3f}], std {self.std_return:.3f}; mean length "
                f"{self.mean_length:.1f}; terminated "
                f"{100 * self.terminated_fraction:.0f}%")


@functools.lru_cache(maxsize=32)
def _episode_loop_fn(domain: Domain, program, max_steps: int):
    """Jitted episodes of a jittable player: ``run(key, states, params)``."""
    step = jax.vmap(domain.step)

    def cond(carry):
        t, _, states, _ = carry
        return (t < max_steps) & ~jnp.all(states.terminated | states.truncated)

    def body(carry, params):
        t, key, states, ret = carry
        key, sub = jax.random.split(key)
        actions = _apply(program, params, sub, states).astype(jnp.int32)
        ended = states.terminated | states.truncated
        states = step(states, actions)
        return t + 1, key, states, ret + jnp.where(ended, 0.0, states.reward)

    def run(key, states, params):
        ret = jnp.zeros(states.reward.shape, jnp.float32)
        _, _, states, ret = jax.lax.while_loop(
            cond, functools.partial(body, params=params), (jnp.int32(0), key, states, ret))
        return states, ret
    return jax.jit(run)


def init_batch(domain: Domain, num: int, key: chex.PRNGKey) -> State:
    """``num`` batched initial states, ``vmap(domain.init)(split(key, num))``
    (jitted and cached). :func:`evaluate_single_player` draws its episodes
    this way from the first half of ``split(key)``."""
    return _init_fn(domain, int(num))(key)


def evaluate_single_player(domain: Domain, player: Player, *,
                           num_episodes: Optional[int] = None,
                           key: chex.PRNGKey,
                           initial_states: Optional[State] = None
                           ) -> EpisodeStats:
    """Runs ``num_episodes`` episodes of a one-player domain in one batch.

    Episodes end when terminated or truncated (``domain.max_episode_steps``).
    Fully on device for a jittable player, else a host loop over steps (the
    host player sees every episode, ended ones included: their actions are
    ignored).

    Args:
      domain: a one-player domain.
      player: a :class:`Player`.
      num_episodes: >= 1; may be omitted when ``initial_states`` is given.
      key: PRNG key (initial states and the player's keys).
      initial_states: optional batched ``[N]`` start states (e.g. the same
        mazes for several players); default: drawn with ``domain.init``.

    Returns:
      :class:`EpisodeStats` of the undiscounted returns.

    Raises:
      ValueError: two-player domain, ``num_episodes < 1``, or a
        ``num_episodes`` that differs from the batch of ``initial_states``.
    """
    if domain.num_players != 1:
        raise ValueError(
            f"evaluate_single_player needs a one-player domain; {domain.name!r} "
            f"has {domain.num_players} players (use arena)")
    if initial_states is not None:
        batch = int(np.shape(initial_states.reward)[0])
        if num_episodes is not None and num_episodes != batch:
            raise ValueError(f"num_episodes={num_episodes} but initial_states "
                             f"holds {batch} episodes")
        num_episodes = batch
    if not isinstance(num_episodes, (int, np.integer)) or num_episodes < 1:
        raise ValueError(f"num_episodes must be an int >= 1, got {num_episodes!r}")
    _check_player(player, "player")
    k_init, k_play = jax.random.split(key)
    if initial_states is None:
        states = _init_fn(domain, int(num_episodes))(k_init)
    else:
        states = jax.tree_util.tree_map(jnp.asarray, initial_states)
    max_steps = int(domain.max_episode_steps) + 1
    if player.jittable:
        states, ret = _episode_loop_fn(domain, _program(player), max_steps)(
            k_play, states, player.params)
    else:
        step = _jitted_step(domain)
        ret = jnp.zeros((int(num_episodes),), jnp.float32)
        for _ in range(max_steps):
            ended = _ended(states)
            if ended.all():
                break
            k_play, sub = jax.random.split(k_play)
            actions = np.asarray(player(sub, jax.device_get(states)), np.int32)
            states = step(states, jnp.asarray(actions))
            ret = ret + jnp.where(jnp.asarray(ended), 0.0, states.reward)
    returns = np.asarray(ret, np.float64)
    lengths = np.asarray(states.step_count)
    n = returns.shape[0]
    mean = float(returns.mean())
    std = float(returns.std(ddof=1)) if n > 1 else 0.0
    half_width = 1.96 * std / math.sqrt(n)
    return EpisodeStats(
        name=player.name, num_episodes=n, mean_return=mean, std_return=std,
        ci_low=mean - half_width, ci_high=mean + half_width,
        mean_length=float(lengths.mean()),
        terminated_fraction=float(np.mean(np.asarray(states.terminated))),
        returns=returns, lengths=lengths)


# ---------------------------------------------------------------------------
# Tic-tac-toe audit
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _replay_fn():
    from mctx_planner.domains.tictactoe import TicTacToe  # pylint: disable=g-import-not-at-top
    domain = TicTacToe()

    def build(moves, num_moves):
        state = domain.init(jax.random.PRNGKey(0))

        def body(t, s):
            nxt = domain.step(s, jnp.maximum(moves[t], 0))
            return jax.tree_util.tree_map(
                lambda a, b: jnp.where(t < num_moves, a, b), nxt, s)
        return jax.lax.fori_loop(0, 9, body, state)
    return jax.jit(jax.vmap(build))


def tictactoe_states(boards: chex.Array, players: chex.Array) -> State:
    """Batched :class:`~mctx_planner.domains.tictactoe.TicTacToeState`\\ s of
    given non-terminal positions, exactly as the domain would produce them.

    Each state is obtained by replaying the position's stones (X, O, X, ...
    in cell order) with ``TicTacToe.step`` from ``init``, so every field
    (canonical observation, legal mask, ``current_player``, ``step_count``)
    matches the domain.

    Args:
      boards: ``[N, 9]`` boards (``1`` = X, ``-1`` = O), without a completed
        line.
      players: ``[N]`` player to move, consistent with the stone counts.

    Raises:
      ValueError: inconsistent counts/players or a finished position.
    """
    boards = np.asarray(boards).reshape(-1, 9)
    players = np.asarray(players).reshape(-1)
    if boards.shape[0] != players.shape[0]:
        raise ValueError(f"boards [N, 9] and players [N] differ in N: "
                         f"{boards.shape} vs {players.shape}")
    n = boards.shape[0]
    moves = np.full((n, 9), -1, np.int32)
    counts = np.zeros((n,), np.int32)
    for i, (b, p) in enumerate(zip(boards, players)):
        xs, os = np.flatnonzero(b == 1), np.flatnonzero(b == -1)
        if len(xs) - len(os) != int(p) or int(p) not in (0, 1):
            raise ValueError(f"position {i}: {len(xs)} X, {len(os)} O stones is "
                             f"not a position with player {int(p)} to move")
        seq = np.empty((len(xs) + len(os),), np.int32)
        seq[0::2], seq[1::2] = xs, os
        moves[i, :len(seq)] = seq
        counts[i] = len(seq)
    states = _replay_fn()(jnp.asarray(moves), jnp.asarray(counts))
    if np.any(np.asarray(states.terminated)):
        bad = int(np.flatnonzero(np.asarray(states.terminated))[0])
        raise ValueError(f"position {bad} is finished (a completed line)")
    if not (np.array_equal(np.asarray(states.board).reshape(n, 9), boards)
            and np.array_equal(np.asarray(states.current_player), players)):
        raise RuntimeError("replayed tic-tac-toe states disagree with the "
                           "requested boards (domain conventions changed?)")
    return states


class BadMove(NamedTuple):
    """A non-optimal move found by :func:`audit_tictactoe`.

    Attributes:
      board: ``[9]`` int8 position.
      player: player to move.
      action: the policy's move.
      value: minimax value of the position for the mover.
      action_value: minimax value of the move (``-1`` when illegal).
      optimal_actions: the moves achieving ``value``.
      illegal: the move was on an occupied cell.
    """

    board: np.ndarray
    player: int
    action: int
    value: int
    action_value: int
    optimal_actions: Tuple[int, ...]
    illegal: bool


@dataclasses.dataclass(frozen=True, eq=False)
class AuditResult:
    """Outcome of :func:`audit_tictactoe`.

    Attributes:
      num_positions: positions audited (4520: every non-terminal reachable
        position, both seats).
      num_nonoptimal: moves whose minimax value is below the position's.
      num_illegal: moves on occupied cells (counted as non-optimal too).
      num_blunders: non-optimal moves that turn a won or drawn position into
        a lost one (the rest throw away a win).
      forced_loss_as_x, forced_loss_as_o: some opponent strategy beats the
        policy when it plays X (first) / O (second).
      losing_line_x, losing_line_o: a game (cells, X's move first) the policy
        loses in that seat, or None.
      bad_positions: every non-optimal move.
      elapsed_s: wall time of the audit (policy call included).
    """

    num_positions: int
    num_nonoptimal: int
    num_illegal: int
    num_blunders: int
    forced_loss_as_x: bool
    forced_loss_as_o: bool
    losing_line_x: Optional[Tuple[int, ...]]
    losing_line_o: Optional[Tuple[int, ...]]
    bad_positions: List[BadMove]
    elapsed_s: float

    @property
    def nonoptimal_fraction(self) -> float:
        return self.num_nonoptimal / max(self.num_positions, 1)

    @property
    def never_loses(self) -> bool:
        """No losing blunder anywhere: from every reachable position that is
        not already lost, the policy never loses (either seat). This is
        "perfect play" in the sense of the training target."""
        return self.num_blunders == 0

    @property
    def perfect(self) -> bool:
        """No non-optimal move anywhere (implies no forced loss)."""
        return self.num_nonoptimal == 0

    def summary(self) -> str:
        """One line: non-optimal/illegal/blunder counts and forced-loss flags."""
        return (f"tic-tac-toe audit: {self.num_nonoptimal}/{self.num_positions} "
                f"non-optimal moves ({100 * self.nonoptimal_fraction:.1f}%, "
                f"{self.num_blunders} losing blunders, {self.num_illegal} "
                f"illegal); forced loss as X: {self.forced_loss_as_x}"
                f"{' ' + str(self.losing_line_x) if self.losing_line_x else ''}"
                f", as O: {self.forced_loss_as_o}"
                f"{' ' + str(self.losing_line_o) if self.losing_line_o else ''}"
                f" ({self.elapsed_s:.1f} s)")


def _call_policy(act_fn, states, n: int, batch_size: Optional[int]) -> np.ndarray:
    if isinstance(act_fn, Player):
        player = act_fn
        if player.jittable:
            jitted = _jitted_act(_program(player))
            fn = lambda s: jitted(player.params, jax.random.PRNGKey(0), s)  # noqa: E731
        else:
            fn = lambda s: player(jax.random.PRNGKey(0), jax.device_get(s))  # noqa: E731
    elif callable(act_fn):
        fn = act_fn
    else:
        raise TypeError(f"act_fn must be a callable or a Player, got "
                        f"{type(act_fn).__name__}")
    size = n if batch_size is None else int(batch_size)
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = []
    for start in range(0, n, size):
        stop = min(start + size, n)
        sub = jax.tree_util.tree_map(lambda x: x[start:stop], states)
        chunks.append(np.asarray(fn(sub)).reshape(-1))
    actions = np.concatenate(chunks)
    if actions.shape != (n,):
        raise ValueError(f"act_fn must return one action per state ([{n}]), "
                         f"got shape {actions.shape}")
    return actions.astype(np.int64)


def audit_tictactoe(act_fn: Callable[[State], chex.Array] | Player, *,
                    batch_size: Optional[int] = None) -> AuditResult:
    """Audits a tic-tac-toe policy at every reachable position, both seats.

    The policy is queried ONCE per position (4520 non-terminal positions
    reachable from the empty board, X or O to move), so a stochastic policy
    is judged by that one sample; deterministic policies (temperature 0, no
    noise) are expected. Each move is compared with the exact minimax values
    of :class:`~mctx_planner.solvers.TicTacToeSolver`. Then, with the policy
    fixed to those moves, every opponent reply is searched to decide whether
    some opponent strategy wins against it as X and as O.

    Args:
      act_fn: ``act_fn(states) -> [N]`` actions on batched
        :class:`~mctx_planner.domains.tictactoe.TicTacToeState`\\ s (e.g. a
        jitted ``lambda s: planner.search(params, key, s).action``), or a
        :class:`Player` (called with ``PRNGKey(0)``).
      batch_size: query the policy in chunks of this many positions (None:
        all at once).

    Returns:
      An :class:`AuditResult`.
    """
    t0 = time.perf_counter()
    solver = _ttt_solver()
    positions = solver.reachable_positions()
    boards = np.stack([b for b, _ in positions])
    players = np.asarray([p for _, p in positions], np.int32)
    states = tictactoe_states(boards, players)
    actions = _call_policy(act_fn, states, len(positions), batch_size)

    policy = {}
    bad: List[BadMove] = []
    num_illegal = num_blunders = 0
    for (board, player), action in zip(positions, actions):
        key = (tuple(int(v) for v in board), int(player))
        policy[key] = int(action)
        value = solver.value(board, player)
        illegal = not (0 <= action < 9) or board[action] != 0
        if illegal:
            action_value = -1
        else:
            action_value = int(solver.action_values(board, player)[action])
        if illegal or action_value < value:
            num_illegal += int(illegal)
            num_blunders += int(action_value == -1 and value >= 0)
            bad.append(BadMove(
                board=board, player=int(player), action=int(action), value=value,
                action_value=action_value,
                optimal_actions=tuple(sorted(solver.optimal_actions(board, player))),
                illegal=illegal))

    line_x = _losing_line(policy, agent=0)
    line_o = _losing_line(policy, agent=1)
    return AuditResult(
        num_positions=len(positions), num_nonoptimal=len(bad),
        num_illegal=num_illegal, num_blunders=num_blunders,
        forced_loss_as_x=line_x is not None, forced_loss_as_o=line_o is not None,
        losing_line_x=line_x, losing_line_o=line_o, bad_positions=bad,
        elapsed_s=time.perf_counter() - t0)


def _winner(board: Tuple[int, ...]) -> int:
    return solvers._ttt_winner(board)  # pylint: disable=protected-access


def _losing_line(policy, agent: int) -> Optional[Tuple[int, ...]]:
    """A game the fixed ``policy`` (playing seat ``agent``) loses, or None.

    Depth-first over every opponent reply, memoised on the position.
    """
    memo = {}

    def search(board: Tuple[int, ...], player: int):
        key = (board, player)
        if key in memo:
            return memo[key]
        mark = 1 if player == 0 else -1
        if player == agent:
            a = policy[key]
            if not (0 <= a < 9) or board[a] != 0:
                result = (a,)  # an illegal move loses
            else:
                child = board[:a] + (mark,) + board[a + 1:]
                if _winner(child) or 0 not in child:
                    result = None
                else:
                    sub = search(child, 1 - player)
                    result = None if sub is None else (a,) + sub
        else:
            result = None
            for b in range(9):
                if board[b] != 0:
                    continue
                child = board[:b] + (mark,) + board[b + 1:]
                if _winner(child):
                    result = (b,)
                    break
                if 0 in child:
                    sub = search(child, 1 - player)
                    if sub is not None:
                        result = (b,) + sub
                        break
        memo[key] = result
        return result

    return search((0,) * 9, 0)
