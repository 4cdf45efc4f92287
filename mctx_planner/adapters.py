"""Adapters: pgx and gymnax environments as mctx_planner domains.

Two functions turn environments of the JAX game/RL ecosystems into
:class:`~mctx_planner.domains.base.Domain` objects that the planner, the
self-play trainer, :func:`~mctx_planner.testing.check_domain` and the
evaluation helpers accept::

    from mctx_planner import adapters
    ttt = adapters.from_pgx("tic_tac_toe")           # two-player board game
    cartpole = adapters.from_gymnax("CartPole-v1",   # one-player control task
                                    max_episode_steps=200)

Both packages are *optional*: nothing here imports them until an adapter is
built from an environment id, and a missing package raises an ``ImportError``
that says what to install (``pip install pgx`` / ``pip install gymnax``).
Passing an environment *object* instead of an id never imports the package,
so any object with the same interface works (this is how the adapters are
tested without the packages).

What the wrappers do
--------------------
Each wrapper state is a frozen ``chex.dataclass`` carrying the fields every
domain state needs (``observation`` float32, ``legal_action_mask``,
``reward`` for the player who moved, ``terminated``, ``truncated``,
``current_player``, ``step_count``), an ``rng_key`` and the wrapped
environment state in ``env_state``.

pgx (``from_pgx``):

* ``state.rewards`` is per player; the wrapper's ``reward`` is
  ``rewards[mover]``, the reward of the player who made the move (pgx games
  are zero-sum, so the opponent receives ``-reward``, as the library's sign
  convention assumes).
* pgx draws the first player at random (``current_player`` is 0 or 1 at
  ``init``). The library numbers players by seat in the order of play
  (player 0 moves first), so the wrapper's ``current_player`` is
  ``pgx_current_player XOR pgx_first_player``; the pgx id of the first mover
  is kept in ``first_player``.
* The observation is pgx's own (from the point of view of the player to
  move, i.e. canonical), cast to float32.
* ``step`` passes a fresh key split from ``rng_key`` to pgx (stochastic games
  such as ``"2048"`` need it; deterministic ones ignore it).
* Episodes end when pgx says ``terminated`` or ``truncated``, or after
  ``max_episode_steps`` moves (``truncated``). Ended states absorb with
  reward 0 and an all-True legal mask, as the protocol requires.
* Only games whose two players strictly alternate fit the library's
  two-player convention (tic-tac-toe, Connect Four, Othello, Hex, Go, chess,
  ...); :func:`~mctx_planner.testing.check_domain` reports any other.

gymnax (``from_gymnax``):

* Discrete action spaces only (``env.action_space(params).n`` actions, all
  legal at every step).
* ``step`` calls ``env.step_env(key, env_state, action, params)`` with a key
  split from the wrapper's ``rng_key`` (gymnax steps need one) and does *not*
  auto-reset: the episode ends with ``terminated = done`` and stays ended;
  self-play resets it. ``truncated`` is set after ``max_episode_steps``
  moves (default ``params.max_steps_in_episode``).
* The observation is ``env.step_env``'s, cast to float32.

A true-model search (:func:`~mctx_planner.search.true_model`) through a
wrapper calls the environment's step with the state's ``rng_key``. For an
environment whose transitions are random (pgx ``"2048"``, gymnax tasks with
noisy dynamics) that key would show the search the *actual* future draws,
so ``true_model`` replaces the root states' keys with fresh ones drawn from
the search key (``resample_rng=True``, the default). CartPole, tic-tac-toe
and Connect Four are deterministic.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional, Tuple

import chex
import jax
import jax.numpy as jnp

from mctx_planner.domains.base import Domain, select_state
from mctx_planner._compat import typeof

__all__ = ["PgxState", "PgxDomain", "from_pgx", "GymnaxState", "GymnaxDomain",
           "from_gymnax"]


def _strong(tree: Any) -> Any:
    """``tree`` with every weakly typed leaf given a strong type.

    Wrapped environments may return a Python-scalar-derived (weakly typed)
    leaf from ``reset`` and a strongly typed one from ``step``; a state whose
    abstract types change makes jitted code re-trace, so the wrappers pin
    every leaf's type.
    """
    def fix(x):
        x = jnp.asarray(x)
        if getattr(typeof(x), "weak_type", False):
            return jax.lax.convert_element_type(x, x.dtype)
        return x
    return jax.tree_util.tree_map(fix, tree)


def _import(module: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(
            f"this adapter needs the optional package {module!r}, which could "
            f"not be imported ({e}): run `pip install {module}` (or pass an "
            f"environment object instead of an id)") from e


# ---------------------------------------------------------------------------
# pgx
# ---------------------------------------------------------------------------


@chex.dataclass(frozen=True)
class PgxState:
    """A pgx state wrapped for the library (one example, no batch axis).

    Attributes:
      observation: pgx's observation (player to move's view), float32.
      legal_action_mask: ``[A]`` bool (all True once the episode ended).
      reward: ``[]`` float32, reward of the last move to the player who made
        it (``env_state.rewards[mover]``).
      terminated: ``[]`` bool, pgx ended the game by its rules.
      truncated: ``[]`` bool, pgx truncated it or ``max_episode_steps``
        moves were made.
      current_player: ``[]`` int32 seat of the player to move (0 = the one
        who moved first).
      step_count: ``[]`` int32 moves made since ``init``.
      first_player: ``[]`` int32 pgx player id of the first mover.
      rng_key: key split at every ``step`` to feed pgx's ``step``.
      env_state: the wrapped ``pgx.State``.
    """

    observation: chex.Array
    legal_action_mask: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    current_player: chex.Array
    step_count: chex.Array
    first_player: chex.Array
    rng_key: chex.Array
    env_state: Any


class PgxDomain(Domain):
    """A pgx environment as a domain (build it with :func:`from_pgx`).

    Attributes:
      env: the wrapped ``pgx.Env``.
      name: ``"pgx:<env id>"``.
    """

    def __init__(self, env: Any, *, max_episode_steps: int = 1000,
                 reward_range: Optional[Tuple[float, float]] = None,
                 discount: float = 1.0):
        num_players = int(env.num_players)
        if num_players not in (1, 2):
            raise ValueError(
                f"pgx environment {getattr(env, 'id', env)!r} has {num_players} "
                "players; the library handles 1 or 2 (alternating, zero-sum)")
        if not isinstance(max_episode_steps, int) or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be an int >= 1, got "
                             f"{max_episode_steps!r}")
        self.env = env
        self.env_id = str(getattr(env, "id", type(env).__name__))
        self.name = f"pgx:{self.env_id}"
        self.num_players = num_players
        self.num_actions = int(env.num_actions)
        self.max_episode_steps = int(max_episode_steps)
        self.discount = float(discount)
        if reward_range is None:
            reward_range = ((-1.0, 1.0) if num_players == 2
                            else (float("-inf"), float("inf")))
        self.reward_range = (float(reward_range[0]), float(reward_range[1]))
        try:
            params = inspect.signature(env.step).parameters
            self._step_takes_key = "key" in params
        except (TypeError, ValueError):
            self._step_takes_key = False
        shape = jax.eval_shape(env.init, jax.random.PRNGKey(0)).observation.shape
        self.observation_shape = tuple(int(d) for d in shape)
        self._id = (type(env).__module__, type(env).__qualname__, self.env_id,
                    str(getattr(env, "version", "")), self.max_episode_steps,
                    self.reward_range, self.discount)

    def __hash__(self):
        return hash((type(self), self._id))

    def __eq__(self, other):
        return type(self) is type(other) and self._id == other._id

    def __repr__(self):
        return f"PgxDomain({self.env_id!r})"

    def init(self, key: chex.PRNGKey) -> PgxState:
        """pgx's ``init`` with a key split off; the first mover is seat 0."""
        init_key, rng_key = jax.random.split(key)
        env_state = _strong(self.env.init(init_key))
        first = jnp.asarray(env_state.current_player, jnp.int32)
        ended = env_state.terminated | env_state.truncated
        return PgxState(
            observation=jnp.asarray(env_state.observation, jnp.float32),
            legal_action_mask=jnp.asarray(env_state.legal_action_mask, jnp.bool_)
            | ended,
            reward=jnp.float32(0.0),
            terminated=jnp.asarray(env_state.terminated, jnp.bool_),
            truncated=jnp.asarray(env_state.truncated, jnp.bool_)
            & ~env_state.terminated,
            current_player=jnp.int32(0),
            step_count=jnp.int32(0),
            first_player=first,
            rng_key=rng_key,
            env_state=env_state)

    def step(self, state: PgxState, action: chex.Array) -> PgxState:
        """One pgx ``step``; the reward is the mover's entry of ``rewards``."""
        action = jnp.asarray(action, jnp.int32)
        ended = state.terminated | state.truncated
        rng_key, step_key = jax.random.split(state.rng_key)
        mover = jnp.asarray(state.env_state.current_player, jnp.int32)
        if self._step_takes_key:
            env_state = self.env.step(state.env_state, action, step_key)
        else:
            env_state = self.env.step(state.env_state, action)
        env_state = _strong(env_state)
        reward = jnp.asarray(env_state.rewards, jnp.float32).reshape(-1)[mover]
        step_count = state.step_count + 1
        terminated = jnp.asarray(env_state.terminated, jnp.bool_)
        truncated = ((jnp.asarray(env_state.truncated, jnp.bool_)
                      | (step_count >= self.max_episode_steps)) & ~terminated)
        done = terminated | truncated
        seat = jnp.where(jnp.asarray(env_state.current_player, jnp.int32)
                         == state.first_player, 0, 1)
        new = PgxState(
            observation=jnp.asarray(env_state.observation, jnp.float32),
            legal_action_mask=jnp.asarray(env_state.legal_action_mask,
                                          jnp.bool_) | done,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            current_player=seat.astype(jnp.int32) if self.num_players == 2
            else jnp.int32(0),
            step_count=step_count,
            first_player=state.first_player,
            rng_key=rng_key,
            env_state=env_state)
        return select_state(ended, state.replace(reward=jnp.float32(0.0)), new)

    def render(self, state: PgxState) -> str:
        s = jax.device_get(state)
        return (f"{self.name}: seat {int(s.current_player)} to move, step "
                f"{int(s.step_count)}, legal {list(map(int, s.legal_action_mask.nonzero()[0]))}")


def from_pgx(env_id_or_env: Any, *, max_episode_steps: int = 1000,
             reward_range: Optional[Tuple[float, float]] = None,
             discount: float = 1.0, **make_kwargs: Any) -> PgxDomain:
    """A pgx environment as a domain.

    Args:
      env_id_or_env: a pgx id (``"tic_tac_toe"``, ``"connect_four"``,
        ``"othello"``, ``"2048"``, ...; needs ``pip install pgx``) or a
        ``pgx.Env``-like object (``init(key)``, ``step(state, action[, key])``,
        ``num_actions``, ``num_players``, states with ``observation``,
        ``rewards``, ``current_player``, ``legal_action_mask``,
        ``terminated``, ``truncated``).
      max_episode_steps: truncation horizon of the wrapper (pgx games
        usually end sooner by their own rules).
      reward_range: bounds of one move's reward; default ``(-1, 1)`` for
        two-player games, unbounded for one-player ones.
      discount: the domain's per-step discount (one-player games).
      **make_kwargs: passed to ``pgx.make`` when an id is given.

    Returns:
      A :class:`PgxDomain`.

    Raises:
      ImportError: an id was given and pgx is not installed.
      ValueError: more than two players, or a bad ``max_episode_steps``.
    """
    env = env_id_or_env
    if isinstance(env, str):
        pgx = _import("pgx")
        env = pgx.make(env, **make_kwargs)
    elif make_kwargs:
        raise TypeError(f"unexpected arguments {sorted(make_kwargs)} with an "
                        "environment object (they are pgx.make arguments)")
    return PgxDomain(env, max_episode_steps=max_episode_steps,
                     reward_range=reward_range, discount=discount)


# ---------------------------------------------------------------------------
# gymnax
# ---------------------------------------------------------------------------


@chex.dataclass(frozen=True)
class GymnaxState:
    """A gymnax state wrapped for the library (one example, no batch axis).

    Attributes:
      observation: ``[*obs]`` float32 observation.
      legal_action_mask: ``[A]`` bool, all True.
      reward: ``[]`` float32 reward of the last step.
      terminated: ``[]`` bool, gymnax's ``done``.
      truncated: ``[]`` bool, ``max_episode_steps`` moves were made.
      current_player: ``[]`` int32, always 0.
      step_count: ``[]`` int32 moves made since ``init``.
      rng_key: key split at every ``step`` (gymnax's step needs a key).
      env_state: the wrapped gymnax environment state.
    """

    observation: chex.Array
    legal_action_mask: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    current_player: chex.Array
    step_count: chex.Array
    rng_key: chex.Array
    env_state: Any


class GymnaxDomain(Domain):
    """A discrete-action gymnax environment as a one-player domain (build it
    with :func:`from_gymnax`).

    Attributes:
      env: the wrapped gymnax environment.
      env_params: its parameters.
      name: ``"gymnax:<env name>"``.
    """

    num_players = 1

    def __init__(self, env: Any, env_params: Any, *,
                 max_episode_steps: Optional[int] = None,
                 reward_range: Optional[Tuple[float, float]] = None,
                 discount: float = 1.0):
        space = env.action_space(env_params)
        if not hasattr(space, "n"):
            raise ValueError(
                f"gymnax environment {getattr(env, 'name', env)!r} has a "
                f"{type(space).__name__} action space; only discrete action "
                "spaces (with .n actions) can be searched")
        if max_episode_steps is None:
            max_episode_steps = getattr(env_params, "max_steps_in_episode", None)
            if max_episode_steps is None:
                raise ValueError("pass max_episode_steps: the environment's "
                                 "params have no max_steps_in_episode")
        max_episode_steps = int(max_episode_steps)
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got "
                             f"{max_episode_steps}")
        self.env = env
        self.env_params = env_params
        self.env_name = str(getattr(env, "name", type(env).__name__))
        self.name = f"gymnax:{self.env_name}"
        self.num_actions = int(space.n)
        self.max_episode_steps = max_episode_steps
        self.discount = float(discount)
        self.reward_range = ((float("-inf"), float("inf")) if reward_range is None
                             else (float(reward_range[0]), float(reward_range[1])))
        obs, _ = jax.eval_shape(lambda k: env.reset_env(k, env_params),
                                jax.random.PRNGKey(0))
        self.observation_shape = tuple(int(d) for d in obs.shape)
        self._id = (type(env).__module__, type(env).__qualname__, self.env_name,
                    repr(env_params), self.max_episode_steps, self.reward_range,
                    self.discount)

    def __hash__(self):
        return hash((type(self), self._id))

    def __eq__(self, other):
        return type(self) is type(other) and self._id == other._id

    def __repr__(self):
        return f"GymnaxDomain({self.env_name!r})"

    def init(self, key: chex.PRNGKey) -> GymnaxState:
        """gymnax's ``reset_env`` with a key split off."""
        reset_key, rng_key = jax.random.split(key)
        obs, env_state = self.env.reset_env(reset_key, self.env_params)
        return GymnaxState(
            observation=jnp.asarray(obs, jnp.float32).reshape(
                self.observation_shape),
            legal_action_mask=jnp.ones((self.num_actions,), jnp.bool_),
            reward=jnp.float32(0.0),
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            current_player=jnp.int32(0),
            step_count=jnp.int32(0),
            rng_key=rng_key,
            env_state=_strong(env_state))

    def step(self, state: GymnaxState, action: chex.Array) -> GymnaxState:
        """gymnax's ``step_env`` (no auto-reset); ended states absorb."""
        action = jnp.asarray(action, jnp.int32)
        ended = state.terminated | state.truncated
        rng_key, step_key = jax.random.split(state.rng_key)
        obs, env_state, reward, done, _ = self.env.step_env(
            step_key, state.env_state, action, self.env_params)
        step_count = state.step_count + 1
        terminated = jnp.asarray(done, jnp.bool_).reshape(())
        truncated = (step_count >= self.max_episode_steps) & ~terminated
        new = GymnaxState(
            observation=jnp.asarray(obs, jnp.float32).reshape(
                self.observation_shape),
            legal_action_mask=jnp.ones((self.num_actions,), jnp.bool_),
            reward=jnp.asarray(reward, jnp.float32).reshape(()),
            terminated=terminated,
            truncated=truncated,
            current_player=jnp.int32(0),
            step_count=step_count,
            rng_key=rng_key,
            env_state=_strong(env_state))
        return select_state(ended, state.replace(reward=jnp.float32(0.0)), new)

    def render(self, state: GymnaxState) -> str:
        s = jax.device_get(state)
        return (f"{self.name}: step {int(s.step_count)}, observation "
                f"{s.observation.round(3).tolist()}")


def from_gymnax(env_id_or_env: Any, env_params: Any = None, *,
                max_episode_steps: Optional[int] = None,
                reward_range: Optional[Tuple[float, float]] = None,
                discount: float = 1.0, **make_kwargs: Any) -> GymnaxDomain:
    """A discrete-action gymnax environment as a one-player domain.

    Args:
      env_id_or_env: a gymnax id (``"CartPole-v1"``, ``"Acrobot-v1"``,
        ``"MountainCar-v0"``, ...; needs ``pip install gymnax``) or a
        gymnax-like environment object (``reset_env(key, params) -> (obs,
        state)``, ``step_env(key, state, action, params) -> (obs, state,
        reward, done, info)``, ``action_space(params).n``).
      env_params: the environment's parameters; default: those returned by
        ``gymnax.make`` (for an id) or ``env.default_params`` (for an object).
      max_episode_steps: truncation horizon; default
        ``env_params.max_steps_in_episode``.
      reward_range: bounds of one step's reward (checked by
        :func:`~mctx_planner.testing.check_domain`); default unbounded.
      discount: the domain's per-step discount, used by search and targets.
      **make_kwargs: passed to ``gymnax.make`` when an id is given.

    Returns:
      A :class:`GymnaxDomain`.

    Raises:
      ImportError: an id was given and gymnax is not installed.
      ValueError: a non-discrete action space, or no horizon known.
    """
    env = env_id_or_env
    if isinstance(env, str):
        gymnax = _import("gymnax")
        env, default_params = gymnax.make(env, **make_kwargs)
        if env_params is None:
            env_params = default_params
    elif make_kwargs:
        raise TypeError(f"unexpected arguments {sorted(make_kwargs)} with an "
                        "environment object (they are gymnax.make arguments)")
    if env_params is None:
        env_params = getattr(env, "default_params", None)
    return GymnaxDomain(env, env_params, max_episode_steps=max_episode_steps,
                        reward_range=reward_range, discount=discount)
