"""Symmetry augmentation of training examples.

A domain that lists its symmetries (:meth:`Domain.symmetries`) lets the learner
show every sampled example in a random symmetric frame: the observation is
transformed and every action-indexed quantity (policy targets, legal mask,
the actions of a MuZero unroll) is permuted to match. Values and rewards are
invariant. AlphaZero used the 8 symmetries of Go this way (Silver et al.,
2017); for Connect Four the mirror doubles the positions the network sees.
"""

from __future__ import annotations

from typing import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner.domains.base import Symmetry
from mctx_planner.targets import Example


def augment_examples(examples: Example, symmetries: Sequence[Symmetry],
                     key: chex.PRNGKey) -> Example:
    """Each example in a frame drawn uniformly from {identity} + ``symmetries``.

    Args:
      examples: a batch ``[N, ...]`` of :class:`~mctx_planner.targets.Example`.
      symmetries: the domain's non-identity symmetries.
      key: PRNG key of the draw.

    Returns:
      The batch with observations, ``legal_action_mask`` ``[N, A]``,
      ``policies`` ``[N, K+1, A]`` and ``actions`` ``[N, K]`` in the drawn
      frames; everything else unchanged (a stored ``state`` too: AlphaZero
      reanalyze reads it before the augmentation).
    """
    if not symmetries:
        return examples
    num_actions = examples.legal_action_mask.shape[-1]
    n = examples.observation.shape[0]
    perms = np.stack([np.arange(num_actions)]
                     + [np.asarray(s.action_permutation) for s in symmetries])
    # Policy in the new frame: new[perm[a]] = old[a], i.e. new[b] = old[inv[b]].
    inverses = np.argsort(perms, axis=1)
    frame = jax.random.randint(key, (n,), 0, len(perms))
    views = jnp.stack([examples.observation]
                      + [jax.vmap(s.transform)(examples.observation) for s in symmetries])
    inverse = jnp.asarray(inverses, jnp.int32)[frame]  # [N, A]
    perm = jnp.asarray(perms, jnp.int32)[frame]  # [N, A]
    return examples.replace(
        observation=views[frame, jnp.arange(n)],
        legal_action_mask=jnp.take_along_axis(examples.legal_action_mask, inverse, -1),
        policies=jnp.take_along_axis(examples.policies, inverse[:, None, :], -1),
        actions=jnp.take_along_axis(perm, examples.actions.astype(jnp.int32), -1
                                    ).astype(examples.actions.dtype))
