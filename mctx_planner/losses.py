"""AlphaZero and (Stochastic) MuZero losses.

* AlphaZero (Silver et al., 2018): ``l = CE(pi, p) + CE(z, v)`` on the
  prediction network, with categorical (two-hot) value targets.
* MuZero (Schrittwieser et al., 2020, eq. 1 and Appendix G): unroll the
  dynamics ``K`` steps along the actions that were played; at every step a
  policy cross-entropy to the search policy, a categorical value loss to the
  n-step target and (for k < K) a categorical reward loss. The gradient that
  flows back through each dynamics step is scaled by 1/2, and the losses of
  the unrolled steps by 1/K, so that the total gradient stays of the same
  order whatever K.
* Stochastic MuZero (Antonoglou et al., 2022): each step goes through an
  afterstate; its chance head is trained by cross-entropy to the chance
  outcome that happened (recorded by self-play: the domain exposes its chance
  outcomes, so the chance *encoder* of the paper is the identity here) and its
  value to ``Q = r + d * z_{k+1}``.

With the Gumbel search the policy target is the completed-Q improved policy
``softmax(logits + sigma(completedQ))`` (Danihelka et al., 2022, eq. 11) that
mctx returns as ``action_weights``; nothing changes in the loss.

Every loss takes examples ``[N, ...]`` and importance weights ``[N]`` and
returns ``(scalar loss, metrics dict, per-example value error [N])``.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp

from mctx_planner.networks import AlphaZeroNet, MuZeroNet
from mctx_planner.targets import Example


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms.

    Attributes:
      value_weight: multiplier of the value loss (MuZero Reanalyse used 0.25).
      policy_weight: multiplier of the policy loss.
      reward_weight: multiplier of the reward loss (MuZero).
      chance_weight: multiplier of the chance loss (Stochastic MuZero).
      two_player: two-player zero-sum (sign of d in the afterstate target).
      discount: one-player discount gamma.
    """

    value_weight: float = 1.0
    policy_weight: float = 1.0
    reward_weight: float = 1.0
    chance_weight: float = 1.0
    two_player: bool = False
    discount: float = 1.0


def _cross_entropy(target_probs, logits):
    return -jnp.sum(target_probs * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def _masked_logits(logits, legal):
    return jnp.where(legal, logits, jnp.finfo(logits.dtype).min)


def _weighted_mean(x, mask, weights):
    return jnp.sum(x * mask * weights) / jnp.maximum(jnp.sum(mask), 1.0)


def alphazero_loss(net: AlphaZeroNet, config: LossConfig, params: chex.ArrayTree,
                   examples: Example, weights: chex.Array):
    """AlphaZero loss on the first step of each example (``K`` is ignored)."""
    support = net.config.value_support
    logits, value_logits = net.apply(params, examples.observation)
    logits = _masked_logits(logits, examples.legal_action_mask)
    policy_mask = examples.policy_mask[:, 0]
    value_mask = examples.value_mask[:, 0]
    policy_loss = _weighted_mean(
        _cross_entropy(examples.policies[:, 0], logits), policy_mask, weights)
    value_target = support.scalar_to_probs(examples.values[:, 0])
    value_loss = _weighted_mean(_cross_entropy(value_target, value_logits),
                                value_mask, weights)
    value = support.logits_to_scalar(value_logits)
    loss = config.policy_weight * policy_loss + config.value_weight * value_loss
    metrics = dict(loss=loss, policy_loss=policy_loss, value_loss=value_loss,
                   value_error=jnp.sum(jnp.abs(value - examples.values[:, 0]) * value_mask)
                   / jnp.maximum(jnp.sum(value_mask), 1.0),
                   policy_entropy=jnp.mean(_cross_entropy(jax.nn.softmax(logits), logits)))
    return loss, metrics, value - examples.values[:, 0]


def _scale_gradient(x, scale):
    return jax.tree_util.tree_map(
        lambda y: y * scale + jax.lax.stop_gradient(y) * (1.0 - scale), x)


def muzero_loss(net: MuZeroNet, config: LossConfig, params: chex.ArrayTree,
                examples: Example, weights: chex.Array):
    """MuZero / Stochastic MuZero loss over the K-step unroll."""
    value_support = net.config.value_support
    reward_support = net.config.reward_support
    stochastic = net.num_chance_outcomes > 0
    K = examples.actions.shape[1]
    apply = net.apply
    continuing = -1.0 if config.two_player else config.discount

    latent = apply(params, examples.observation, method=MuZeroNet.represent)
    totals = dict(policy_loss=0.0, value_loss=0.0, reward_loss=0.0, chance_loss=0.0)
    first_value = None
    for k in range(K + 1):
        step_scale = 1.0 if k == 0 else 1.0 / K
        logits, value_logits = apply(params, latent, method=MuZeroNet.predict)
        if k == 0:
            logits = _masked_logits(logits, examples.legal_action_mask)
            first_value = value_support.logits_to_scalar(value_logits)
        totals["policy_loss"] += step_scale * _weighted_mean(
            _cross_entropy(examples.policies[:, k], logits),
            examples.policy_mask[:, k], weights)
        totals["value_loss"] += step_scale * _weighted_mean(
            _cross_entropy(value_support.scalar_to_probs(examples.values[:, k]),
                           value_logits), examples.value_mask[:, k], weights)
        if k == K:
            break
        action = examples.actions[:, k]
        next_scale = 1.0 / K
        if stochastic:
            after = apply(params, latent, action, method=MuZeroNet.afterstate_dynamics)
            chance_logits, after_value_logits = apply(
                params, after, method=MuZeroNet.afterstate_predict)
            outcome = examples.chance_outcomes[:, k]
            totals["chance_loss"] += next_scale * _weighted_mean(
                _cross_entropy(jax.nn.one_hot(outcome, net.num_chance_outcomes),
                               chance_logits), examples.policy_mask[:, k], weights)
            q_target = examples.rewards[:, k] + continuing * examples.values[:, k + 1]
            q_mask = examples.reward_mask[:, k] * examples.value_mask[:, k + 1]
            totals["value_loss"] += next_scale * _weighted_mean(
                _cross_entropy(value_support.scalar_to_probs(q_target),
                               after_value_logits), q_mask, weights)
            latent, reward_logits = apply(params, after, outcome,
                                          method=MuZeroNet.chance_dynamics)
        else:
            latent, reward_logits = apply(params, latent, action,
                                          method=MuZeroNet.dynamics)
        totals["reward_loss"] += next_scale * _weighted_mean(
            _cross_entropy(reward_support.scalar_to_probs(examples.rewards[:, k]),
                           reward_logits), examples.reward_mask[:, k], weights)
        latent = _scale_gradient(latent, 0.5)

    loss = (config.policy_weight * totals["policy_loss"]
            + config.value_weight * totals["value_loss"]
            + config.reward_weight * totals["reward_loss"]
            + config.chance_weight * totals["chance_loss"])
    value_mask = examples.value_mask[:, 0]
    error = first_value - examples.values[:, 0]
    metrics = dict(loss=loss, **totals,
                   value_error=jnp.sum(jnp.abs(error) * value_mask)
                   / jnp.maximum(jnp.sum(value_mask), 1.0))
    return loss, metrics, error
