"""Flax networks for AlphaZero and (Stochastic) MuZero.

* :class:`AlphaZeroNet` -- prediction ``f(observation) -> (policy, value)``.
* :class:`MuZeroNet` -- representation ``h``, dynamics ``g`` and prediction
  ``f`` (Schrittwieser et al., 2020), plus the afterstate dynamics, afterstate
  prediction and chance dynamics of Stochastic MuZero (Antonoglou et al., 2022)
  when ``num_chance_outcomes > 0``.

Both use an MLP or a small ResNet torso (pre-activation blocks with LayerNorm
rather than BatchNorm, so that applying a network is a pure function with no
mutable batch statistics). Values and rewards are categorical over a
:class:`~mctx_planner.transforms.Support`; use ``support.logits_to_scalar`` to
read a scalar. Latent states are min-max scaled to ``[0, 1]`` per example, as in
MuZero (Appendix G).

Every method takes a batch: observations ``[B, *observation_shape]``, actions
``[B]`` int32, latents ``[B, *latent_shape]``.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from mctx_planner.transforms import Support

_TORSOS = ("mlp", "resnet")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the networks.

    Attributes:
      torso: ``"mlp"`` (any observation, flattened) or ``"resnet"`` (needs
        observations of shape ``[H, W, C]``).
      hidden_size: width of MLP layers.
      num_layers: MLP layers in each torso.
      latent_size: MuZero latent width for the MLP torso.
      channels: ResNet channels (also the latent channels).
      num_blocks: ResNet residual blocks in each torso.
      value_support: categorical support of values.
      reward_support: categorical support of rewards (MuZero).
    """

    torso: str = "mlp"
    hidden_size: int = 64
    num_layers: int = 2
    latent_size: int = 64
    channels: int = 32
    num_blocks: int = 2
    value_support: Support = Support(size=10)
    reward_support: Support = Support(size=10)

    def __post_init__(self):
        if self.torso not in _TORSOS:
            raise ValueError(
                f"NetworkConfig.torso must be one of {_TORSOS}, got {self.torso!r}")
        for field in ("hidden_size", "num_layers", "latent_size", "channels",
                      "num_blocks"):
            if int(getattr(self, field)) < 1:
                raise ValueError(
                    f"NetworkConfig.{field} must be >= 1, got {getattr(self, field)}")


def scale_to_unit(x: chex.Array) -> chex.Array:
    """Min-max scales each example of ``x`` (``[B, ...]``) to ``[0, 1]``."""
    axes = tuple(range(1, x.ndim))
    low = jnp.min(x, axis=axes, keepdims=True)
    high = jnp.max(x, axis=axes, keepdims=True)
    return (x - low) / jnp.maximum(high - low, 1e-5)


class MLP(nn.Module):
    """``num_layers`` x (Dense -> LayerNorm -> ReLU) on flattened inputs."""

    hidden_size: int
    num_layers: int

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for _ in range(self.num_layers):
            x = nn.relu(nn.LayerNorm()(nn.Dense(self.hidden_size)(x)))
        return x


class ResidualBlock(nn.Module):
    """Pre-activation residual block: x + conv(relu(ln(conv(relu(ln(x))))))."""

    channels: int

    @nn.compact
    def __call__(self, x):
        y = nn.Conv(self.channels, (3, 3))(nn.relu(nn.LayerNorm()(x)))
        y = nn.Conv(self.channels, (3, 3))(nn.relu(nn.LayerNorm()(y)))
        return x + y


class ResNet(nn.Module):
    """A 3x3 conv stem followed by ``num_blocks`` residual blocks."""

    channels: int
    num_blocks: int

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4:
            raise ValueError(
                "the resnet torso needs observations of shape [H, W, C]; got "
                f"per-example shape {x.shape[1:]}: use torso='mlp'")
        x = nn.Conv(self.channels, (3, 3))(x)
        for _ in range(self.num_blocks):
            x = ResidualBlock(self.channels)(x)
        return nn.relu(nn.LayerNorm()(x))


def _torso(config: NetworkConfig) -> nn.Module:
    if config.torso == "mlp":
        return MLP(config.hidden_size, config.num_layers)
    return ResNet(config.channels, config.num_blocks)


class _Heads(nn.Module):
    """Policy logits ``[B, A]`` and value logits ``[B, V]`` from features."""

    num_actions: int
    num_value_bins: int
    hidden_size: int

    @nn.compact
    def __call__(self, features):
        x = features.reshape(features.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden_size)(x))
        # Zero-initialised outputs: an untrained network is uninformed
        # (uniform prior, value 0), which makes early search unbiased.
        policy = nn.Dense(self.num_actions, kernel_init=nn.initializers.zeros)(x)
        value = nn.Dense(self.num_value_bins, kernel_init=nn.initializers.zeros)(x)
        return policy, value


class AlphaZeroNet(nn.Module):
    """Prediction network for AlphaZero: ``obs [B, ...] -> (logits, value_logits)``.

    Returns policy logits ``[B, num_actions]`` and value logits
    ``[B, 2 * value_support.size + 1]``.
    """

    num_actions: int
    config: NetworkConfig = NetworkConfig()

    @nn.compact
    def __call__(self, observation):
        features = _torso(self.config)(observation.astype(jnp.float32))
        return _Heads(self.num_actions, self.config.value_support.num_bins,
                      self.config.hidden_size)(features)


class _Transition(nn.Module):
    """Latent + one-hot input -> scaled next latent (same shape) + optional reward."""

    config: NetworkConfig
    num_inputs: int
    reward_bins: int  # 0 = no reward head

    @nn.compact
    def __call__(self, latent, index):
        config = self.config
        onehot = jax.nn.one_hot(index, self.num_inputs)
        if config.torso == "mlp":
            x = jnp.concatenate([latent, onehot], axis=-1)
            x = MLP(config.hidden_size, config.num_layers)(x)
            next_latent = scale_to_unit(nn.Dense(config.latent_size)(x))
        else:
            # Broadcast a learned embedding of the input as extra planes.
            planes = nn.Dense(config.channels)(onehot)[:, None, None, :]
            planes = jnp.broadcast_to(planes, latent.shape[:-1] + (config.channels,))
            x = nn.Conv(config.channels, (3, 3))(
                jnp.concatenate([latent, planes], axis=-1))
            for _ in range(config.num_blocks):
                x = ResidualBlock(config.channels)(x)
            next_latent = scale_to_unit(x)
        if not self.reward_bins:
            return next_latent, None
        r = nn.relu(nn.Dense(config.hidden_size)(x.reshape(x.shape[0], -1)))
        reward = nn.Dense(self.reward_bins, kernel_init=nn.initializers.zeros)(r)
        return next_latent, reward


class MuZeroNet(nn.Module):
    """MuZero's three functions (and Stochastic MuZero's three more).

    Methods (all batched, call with ``net.apply(params, ..., method=...)``):
      represent(obs ``[B, ...]``) -> latent ``[B, L]`` or ``[B, H, W, C]``.
      dynamics(latent, action ``[B]``) -> (next latent, reward logits ``[B, R]``).
      predict(latent) -> (policy logits ``[B, A]``, value logits ``[B, V]``).
      afterstate_dynamics(latent, action) -> afterstate latent.
      afterstate_predict(afterstate) -> (chance logits ``[B, C]``, value logits).
      chance_dynamics(afterstate, outcome ``[B]``) -> (next latent, reward logits).

    The last three exist only when ``num_chance_outcomes > 0``.
    """

    num_actions: int
    config: NetworkConfig = NetworkConfig()
    num_chance_outcomes: int = 0

    def setup(self):
        config = self.config
        self._represent_torso = _torso(config)
        if config.torso == "mlp":
            self._represent_out = nn.Dense(config.latent_size)
        self._dynamics = _Transition(config, self.num_actions,
                                     config.reward_support.num_bins)
        self._prediction = _Heads(self.num_actions, config.value_support.num_bins,
                                  config.hidden_size)
        if self.num_chance_outcomes:
            self._afterstate_dynamics = _Transition(config, self.num_actions, 0)
            self._afterstate_prediction = _Heads(
                self.num_chance_outcomes, config.value_support.num_bins,
                config.hidden_size)
            self._chance_dynamics = _Transition(
                config, self.num_chance_outcomes, config.reward_support.num_bins)

    def represent(self, observation):
        x = self._represent_torso(observation.astype(jnp.float32))
        if self.config.torso == "mlp":
            x = self._represent_out(x)
        return scale_to_unit(x)

    def dynamics(self, latent, action):
        return self._dynamics(latent, action)

    def predict(self, latent):
        return self._prediction(latent)

    def afterstate_dynamics(self, latent, action):
        return self._afterstate_dynamics(latent, action)[0]

    def afterstate_predict(self, afterstate):
        return self._afterstate_prediction(afterstate)

    def chance_dynamics(self, afterstate, outcome):
        return self._chance_dynamics(afterstate, outcome)

    def __call__(self, observation, action, outcome=None):
        """Touches every sub-network once (used by ``init``)."""
        latent = self.represent(observation)
        out = self.predict(latent)
        next_latent, reward = self.dynamics(latent, action)
        out = out + (next_latent, reward)
        if self.num_chance_outcomes:
            afterstate = self.afterstate_dynamics(latent, action)
            chance_logits, _ = self.afterstate_predict(afterstate)
            if outcome is None:
                outcome = jnp.zeros_like(action)
            out = out + (chance_logits,) + self.chance_dynamics(afterstate, outcome)
        return out


def init_params(net: nn.Module, key: chex.PRNGKey,
                observation_shape: Tuple[int, ...]) -> chex.ArrayTree:
    """Initialises ``net`` (AlphaZeroNet or MuZeroNet) for one example shape."""
    obs = jnp.zeros((1,) + tuple(observation_shape), jnp.float32)
    if isinstance(net, MuZeroNet):
        return net.init(key, obs, jnp.zeros((1,), jnp.int32))
    return net.init(key, obs)
