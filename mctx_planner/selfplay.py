"""On-device self-play: a batch of episodes stepped with ``lax.scan``.

Every step runs the planner on the whole batch of domain states, applies the
chosen actions and resets the episodes that ended, all inside one compiled
program (no host round trip per step; the Anakin pattern of Hessel et al.,
2021, "Podracer architectures").

Time-major records ``[T, B, ...]`` keep what the learner needs; see
:class:`Trajectory`.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

import chex
import jax
import jax.numpy as jnp

from mctx_planner.domains.base import Domain, StochasticDomain

SearchFn = Callable  # (params, key, batched_states) -> PlanOutput


@chex.dataclass(frozen=True)
class Trajectory:
    """A chunk of self-play, time-major ``[T, B, ...]``.

    Attributes:
      observation: ``[T, B, *obs]`` observation at the decision state ``t``.
      legal_action_mask: ``[T, B, A]`` legal actions at ``t``.
      action: ``[T, B]`` int32 action taken at ``t``.
      policy: ``[T, B, A]`` search policy at ``t`` (the policy target).
      root_value: ``[T, B]`` search value at ``t`` (player to move's view).
      reward: ``[T, B]`` reward of the action at ``t`` (to its mover).
      terminated: ``[T, B]`` bool, the action at ``t`` ended the episode.
      truncated: ``[T, B]`` bool, the episode was cut after the action at ``t``.
      player: ``[T, B]`` int32 player to move at ``t``.
      chance_outcome: ``[T, B]`` int32 chance outcome after the action at ``t``
        (stochastic domains; 0 otherwise).
      state: the domain states ``[T, B]`` at ``t`` when recorded
        (``rollout(..., record_states=True)``, for AlphaZero reanalyze),
        else None.
    """

    observation: chex.Array
    legal_action_mask: chex.Array
    action: chex.Array
    policy: chex.Array
    root_value: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    player: chex.Array
    chance_outcome: chex.Array
    state: Any = None


def init_states(domain: Domain, key: chex.PRNGKey, batch_size: int,
                opening_moves: int = 0) -> Any:
    """``batch_size`` fresh episodes (a batched domain state).

    With ``opening_moves = k > 0`` each episode first plays a random number,
    uniform in ``0..k``, of uniformly random legal moves (never one that ends
    the episode). Self-play then visits positions that its own play would
    rarely reach, which is what an agent needs to play well from *any*
    position (the tic-tac-toe audit checks every reachable one).
    """
    init_key, count_key, move_key = jax.random.split(key, 3)
    states = jax.vmap(domain.init)(jax.random.split(init_key, batch_size))
    if not opening_moves:
        return states
    count = jax.random.randint(count_key, (batch_size,), 0, opening_moves + 1)
    for i, k in enumerate(jax.random.split(move_key, opening_moves)):
        logits = jnp.where(states.legal_action_mask, 0.0, -jnp.inf)
        action = jax.random.categorical(k, logits).astype(jnp.int32)
        moved = jax.vmap(domain.step)(states, action)
        keep = (i < count) & ~(moved.terminated | moved.truncated)
        states = _where(keep, moved, states)
    return states


def _where(mask, a, b):
    def select(x, y):
        m = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
        return jnp.where(m, x, y)
    return jax.tree_util.tree_map(select, a, b)


def transition(domain: Domain, states: Any, action: chex.Array,
               key: chex.PRNGKey) -> Tuple[Any, chex.Array]:
    """Applies ``action`` ``[B]``; returns (next states, chance outcome ``[B]``).

    For a :class:`StochasticDomain` the chance outcome is drawn explicitly from
    ``chance_probs`` with ``key`` so it can be recorded (Stochastic MuZero
    trains its chance model on it); otherwise it is 0.
    """
    if isinstance(domain, StochasticDomain):
        after = jax.vmap(domain.afterstate)(states, action)
        probs = jax.vmap(domain.chance_probs)(after)
        outcome = jax.random.categorical(
            key, jnp.log(jnp.maximum(probs, 1e-30))).astype(jnp.int32)
        next_states = jax.vmap(domain.apply_chance)(after, outcome)
        # Keep the domain's own absorbing rule for episodes already over.
        ended = states.terminated | states.truncated
        next_states = _where(ended, jax.vmap(domain.step)(states, action),
                             next_states)
        return next_states, outcome
    return jax.vmap(domain.step)(states, action), jnp.zeros_like(action)


def rollout(domain: Domain, search_fn: SearchFn, params: chex.ArrayTree,
            states: Any, key: chex.PRNGKey, num_steps: int,
            opening_moves: int = 0,
            record_states: bool = False) -> Tuple[Any, Trajectory]:
    """Plays ``num_steps`` steps of self-play from ``states`` (batched).

    Episodes that end are reset in place with fresh ``init`` states, so every
    column of the trajectory may hold several episodes back to back; the
    ``terminated`` / ``truncated`` flags mark the boundaries.

    Args:
      domain: the domain.
      search_fn: ``(params, key, states) -> PlanOutput`` (``planner.search``).
      params: network parameters.
      states: batched domain states ``[B]``.
      key: PRNG key (consumed).
      num_steps: ``T``.
      opening_moves: random opening moves of reset episodes (see
        :func:`init_states`).
      record_states: also keep the domain state of every step in
        ``Trajectory.state`` (memory: one state per step).

    Returns:
      (states after the last step, :class:`Trajectory` ``[T, B, ...]``).
    """
    batch_size = states.legal_action_mask.shape[0]

    def one_step(states, step_key):
        search_key, chance_key, reset_key = jax.random.split(step_key, 3)
        out = search_fn(params, search_key, states)
        next_states, outcome = transition(domain, states, out.action, chance_key)
        record = Trajectory(
            observation=states.observation,
            legal_action_mask=states.legal_action_mask,
            action=out.action,
            policy=out.action_weights,
            root_value=out.root_value,
            reward=next_states.reward.astype(jnp.float32),
            terminated=next_states.terminated,
            truncated=next_states.truncated & ~next_states.terminated,
            player=states.current_player.astype(jnp.int32),
            chance_outcome=outcome,
            state=states if record_states else None)
        ended = next_states.terminated | next_states.truncated
        fresh = init_states(domain, reset_key, batch_size, opening_moves)
        return _where(ended, fresh, next_states), record

    return jax.lax.scan(one_step, states, jax.random.split(key, num_steps))
