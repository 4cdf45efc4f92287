"""Training targets from a self-play chunk (value, policy, reward; K-step unroll).

Conventions (see :mod:`mctx_planner.domains.base`): ``reward[t]`` is the reward
of the action taken at ``t`` to the player who took it; values are from the
point of view of the player to move. The return of step ``t`` is therefore

    G_t = r_t + d_t * G_{t+1},   d_t = 0 if the action at t ended the episode,
                                 else -1 (two-player zero-sum) or gamma,

and the n-step target (MuZero, Appendix G; AlphaZero uses n = infinity, the
Monte Carlo return) is

    z_t = sum_{i<n} (prod_{j<i} d_{t+j}) r_{t+i} + (prod_{j<n} d_{t+j}) v_{t+n}

with ``v`` the search value at ``t+n``. A target is *valid* only when it is
fully known inside the chunk: the episode terminated inside the window, or
``t+n`` lies inside the chunk. Windows that cross a truncation have no known
bootstrap and are masked out; so are the unrolled steps that run past the
chunk. States past a terminal are absorbing: value 0, reward 0, uniform policy
(not trained). Episodes never leak into each other across an automatic reset.
"""

from __future__ import annotations

from typing import Any, Optional

import chex
import jax
import jax.numpy as jnp

from mctx_planner.selfplay import Trajectory


@chex.dataclass(frozen=True)
class Example:
    """One training example: a state and the ``K`` steps that followed it.

    Batched examples carry leading axes (e.g. ``[N, ...]``).

    Attributes:
      observation: ``[*obs]`` at the start state.
      legal_action_mask: ``[A]`` at the start state.
      actions: ``[K]`` int32 actions taken (0 past the end).
      chance_outcomes: ``[K]`` int32 chance outcomes after those actions.
      rewards: ``[K]`` rewards of those actions.
      values: ``[K+1]`` value targets ``z``.
      policies: ``[K+1, A]`` policy targets.
      search_values: ``[K+1]`` search values (for priorities / diagnostics).
      reward_mask: ``[K]`` float32, 1 where the reward target is known.
      value_mask: ``[K+1]`` float32, 1 where the value target is known.
      policy_mask: ``[K+1]`` float32, 1 where the policy target is a real search.
      state: the domain state at the start when self-play recorded states
        (AlphaZero reanalyze), else None.
    """

    observation: chex.Array
    legal_action_mask: chex.Array
    actions: chex.Array
    chance_outcomes: chex.Array
    rewards: chex.Array
    values: chex.Array
    policies: chex.Array
    search_values: chex.Array
    reward_mask: chex.Array
    value_mask: chex.Array
    policy_mask: chex.Array
    state: Any = None


def step_discounts(traj: Trajectory, *, two_player: bool,
                   discount: float) -> chex.Array:
    """``[T, B]`` d_t: 0 after a terminal, -1 (two-player) or gamma otherwise."""
    continuing = -1.0 if two_player else discount
    return jnp.where(traj.terminated, 0.0, continuing).astype(jnp.float32)


def value_targets(traj: Trajectory, *, two_player: bool, discount: float = 1.0,
                  td_steps: Optional[int] = None):
    """n-step (or Monte Carlo when ``td_steps`` is None) value targets.

    Returns:
      (targets ``[T, B]``, valid ``[T, B]`` bool).
    """
    d = step_discounts(traj, two_player=two_player, discount=discount)
    r = traj.reward
    T = r.shape[0]
    cut = traj.truncated
    if td_steps is None or td_steps >= T:
        def backward(carry, x):
            g_next, known_next = carry
            r_t, d_t, term_t, cut_t = x
            g = r_t + d_t * g_next
            known = term_t | (known_next & ~cut_t)
            return (g, known), (g, known)
        init = (jnp.zeros_like(r[0]), jnp.zeros_like(traj.terminated[0]))
        _, (g, known) = jax.lax.scan(backward, init, (r, d, traj.terminated, cut),
                                     reverse=True)
        return g, known
    n = int(td_steps)
    pad = lambda x, v: jnp.concatenate(  # noqa: E731
        [x, jnp.full((n,) + x.shape[1:], v, x.dtype)])
    r_p, d_p = pad(r, 0.0), pad(d, 0.0)
    v_p = pad(traj.root_value, 0.0)
    term_p, cut_p = pad(traj.terminated, False), pad(cut, False)
    ended_p = term_p | cut_p
    in_chunk = pad(jnp.ones_like(traj.terminated), False)
    z = jnp.zeros_like(r)
    scale = jnp.ones_like(r)
    alive = jnp.ones_like(traj.terminated)  # no end before offset i
    valid = jnp.zeros_like(traj.terminated)
    for i in range(n):
        sl = slice(i, i + T)
        z = z + jnp.where(alive, scale * r_p[sl], 0.0)
        # An end inside the window: valid iff it is a terminal in the chunk.
        ends_here = alive & ended_p[sl] & in_chunk[sl]
        valid = valid | (ends_here & term_p[sl])
        scale = scale * d_p[sl]
        alive = alive & ~ended_p[sl] & in_chunk[sl]
    # Survived n steps without an end: bootstrap from the search value at t+n.
    boot_in_chunk = in_chunk[n:n + T]
    z = z + jnp.where(alive & boot_in_chunk, scale * v_p[n:n + T], 0.0)
    valid = valid | (alive & boot_in_chunk)
    return z, valid


def make_examples(traj: Trajectory, *, num_unroll_steps: int, two_player: bool,
                  discount: float = 1.0, td_steps: Optional[int] = None) -> Example:
    """Turns a chunk ``[T, B]`` into ``[T, B]`` examples with a K-step unroll.

    Args:
      traj: the self-play chunk.
      num_unroll_steps: ``K`` (0 for AlphaZero).
      two_player: zero-sum alternating players.
      discount: one-player discount gamma.
      td_steps: n of the n-step value target; None = Monte Carlo.

    Returns:
      An :class:`Example` with leading axes ``[T, B]``.
    """
    K = int(num_unroll_steps)
    z, z_valid = value_targets(traj, two_player=two_player, discount=discount,
                               td_steps=td_steps)
    T = z.shape[0]
    num_actions = traj.policy.shape[-1]

    def pad(x, value):
        return jnp.concatenate([x, jnp.full((K,) + x.shape[1:], value, x.dtype)])

    def window(x, length):
        """``[T + K, B, ...] -> [T, B, length, ...]`` shifted copies."""
        if length == 0:
            return jnp.zeros(x.shape[1:2] and (T,) + x.shape[1:2] + (0,) + x.shape[2:],
                             x.dtype)
        stacked = jnp.stack([x[k:k + T] for k in range(length)], axis=1)
        return jnp.moveaxis(stacked, 1, 2)

    ended = pad(traj.terminated | traj.truncated, False)
    term = pad(traj.terminated, False)
    in_chunk = pad(jnp.ones_like(traj.terminated), False)
    # past_end[t, b, k]: an episode end occurred at t..t+k-1.
    ends = window(ended, K + 1)
    past_end = jnp.cumsum(ends.astype(jnp.int32), axis=-1) - ends.astype(jnp.int32) > 0
    terms = window(term, K + 1)
    # The end before k was a terminal (absorbing targets known) vs truncation.
    term_before = (jnp.cumsum(terms.astype(jnp.int32), axis=-1)
                   - terms.astype(jnp.int32)) > 0
    inside = window(in_chunk, K + 1)
    live = inside & ~past_end

    zw = window(pad(z, 0.0), K + 1)
    zvalid = window(pad(z_valid, False), K + 1)
    values = jnp.where(live, zw, 0.0)
    value_mask = jnp.where(live, zvalid, past_end & term_before)
    uniform = jnp.full((num_actions,), 1.0 / num_actions)
    policies = jnp.where(live[..., None], window(pad(traj.policy, 0.0), K + 1),
                         uniform)
    search_values = jnp.where(live, window(pad(traj.root_value, 0.0), K + 1), 0.0)

    live_k = live[..., :K]
    actions = jnp.where(live_k, window(pad(traj.action, 0), K), 0)
    chance = jnp.where(live_k, window(pad(traj.chance_outcome, 0), K), 0)
    rewards = jnp.where(live_k, window(pad(traj.reward, 0.0), K), 0.0)
    reward_mask = live_k | (past_end[..., :K] & term_before[..., :K])
    return Example(
        observation=traj.observation,
        legal_action_mask=traj.legal_action_mask,
        actions=actions.astype(jnp.int32),
        chance_outcomes=chance.astype(jnp.int32),
        rewards=rewards,
        values=values,
        policies=policies,
        search_values=search_values,
        reward_mask=reward_mask.astype(jnp.float32),
        value_mask=value_mask.astype(jnp.float32),
        policy_mask=live.astype(jnp.float32),
        state=traj.state)
