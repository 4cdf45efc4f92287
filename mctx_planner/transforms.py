"""Categorical value/reward representation used by MuZero.

MuZero (Schrittwieser et al., 2020, Appendix F) predicts values and rewards as
categorical distributions over an integer support ``{-n, ..., n}`` after an
invertible squashing transform

    h(x) = sign(x) * (sqrt(|x| + 1) - 1) + eps * x,          (Pohlen et al. 2018)

and trains them against a *two-hot* projection of the transformed target. The
inverse (obtained by solving the quadratic in sqrt(|x| + 1)) is

    h^-1(y) = sign(y) * (((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1).

All functions here are elementwise and work on any leading batch shape.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp

DEFAULT_EPS = 1e-3


def signed_hyperbolic(x: chex.Array, eps: float = DEFAULT_EPS) -> chex.Array:
    """MuZero's value transform h(x) = sign(x)(sqrt(|x|+1)-1) + eps x."""
    return jnp.sign(x) * (jnp.sqrt(jnp.abs(x) + 1.0) - 1.0) + eps * x


def signed_parabolic(y: chex.Array, eps: float = DEFAULT_EPS) -> chex.Array:
    """Inverse of :func:`signed_hyperbolic`.

    Computed as ``((z - 1) / (2 eps))^2 - 1`` rewritten without the
    cancellation in ``z - 1`` (``z = sqrt(1 + 4 eps (|y| + 1 + eps))``):
    ``(z - 1) / (2 eps) = 2 (|y| + 1 + eps) / (1 + z)``, which keeps float32
    accurate near 0 (the direct form loses ~5 digits there).
    """
    a = jnp.abs(y)
    z = jnp.sqrt(1.0 + 4.0 * eps * (a + 1.0 + eps))
    return jnp.sign(y) * (jnp.square(2.0 * (a + 1.0 + eps) / (1.0 + z)) - 1.0)


@dataclasses.dataclass(frozen=True)
class Support:
    """An integer-spaced categorical support ``{-size, ..., size}``.

    Attributes:
      size: half-width ``n``; the distribution has ``2n + 1`` atoms.
      transform: apply :func:`signed_hyperbolic` before projecting (MuZero).
        Without it the support covers raw values in ``[-n, n]``.
      eps: the transform's linear term.
    """

    size: int = 10
    transform: bool = True
    eps: float = DEFAULT_EPS

    def __post_init__(self):
        if int(self.size) < 1:
            raise ValueError(f"Support.size must be >= 1, got {self.size}")

    @property
    def num_bins(self) -> int:
        return 2 * self.size + 1

    @property
    def atoms(self) -> chex.Array:
        """``[2n+1]`` float32 atom positions in transformed space."""
        return jnp.arange(-self.size, self.size + 1, dtype=jnp.float32)

    def scalar_to_probs(self, x: chex.Array) -> chex.Array:
        """Two-hot projection: ``[...]`` scalars -> ``[..., 2n+1]`` probs."""
        y = signed_hyperbolic(x, self.eps) if self.transform else x
        return two_hot(y, -self.size, self.size)

    def logits_to_scalar(self, logits: chex.Array) -> chex.Array:
        """Expected value: ``[..., 2n+1]`` logits -> ``[...]`` scalars."""
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        return self.probs_to_scalar(probs)

    def probs_to_scalar(self, probs: chex.Array) -> chex.Array:
        """``[..., 2n+1]`` probabilities -> ``[...]`` scalars."""
        y = jnp.sum(probs * self.atoms, axis=-1)
        return signed_parabolic(y, self.eps) if self.transform else y


def two_hot(y: chex.Array, low: int, high: int) -> chex.Array:
    """Projects ``y`` onto the integer atoms ``low..high`` (two-hot).

    The two atoms around ``y`` get weights proportional to closeness, so the
    expectation of the result equals ``clip(y, low, high)`` exactly.

    Args:
      y: ``[...]`` float values.
      low, high: integer bounds of the support.

    Returns:
      ``[..., high - low + 1]`` float32 probabilities.
    """
    y = jnp.clip(jnp.asarray(y, jnp.float32), low, high)
    lower = jnp.floor(y)
    upper_weight = y - lower
    lower_index = (lower - low).astype(jnp.int32)
    upper_index = jnp.minimum(lower_index + 1, high - low)
    num_bins = high - low + 1
    return (jax.nn.one_hot(lower_index, num_bins) * (1.0 - upper_weight)[..., None]
            + jax.nn.one_hot(upper_index, num_bins) * upper_weight[..., None])
