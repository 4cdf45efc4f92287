"""A fixed-capacity replay buffer of training examples, on the device.

Layout ``[B, L, ...]``: one ring of ``L`` examples per self-play column ``b``.
Every self-play chunk of ``T`` steps writes ``T`` rows into every ring at the
same position, so the leading axis ``B`` can be sharded over devices like the
self-play batch (``jax.sharding``); nothing in here assumes one device.

Sampling is proportional to a priority per slot: 0 for empty slots and for
examples whose first value target is unknown (see :mod:`targets`), 1 for
uniform replay, or ``(|z - v| + eps)^alpha`` for prioritized replay (Schaul et
al., 2016) with importance weights ``(N p_i)^-beta`` normalised by their max.
Sampling uses the inverse CDF (one cumulative sum, then a binary search per
sample), so it costs O(B L + N log(B L)), not O(N B L).

We write our own buffer instead of using flashbax: examples arrive with their
targets already computed (episode boundaries are resolved in
:func:`mctx_planner.targets.make_examples`), so the buffer is a plain pytree
ring with priorities; ~100 lines, no extra dependency, and the same layout
shards over devices.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner.targets import Example


@chex.dataclass(frozen=True)
class ReplayState:
    """Attributes:
      data: an :class:`Example` pytree with leading axes ``[B, L]``.
      priorities: ``[B, L]`` float32 sampling weights (0 = never sampled).
      position: ``[]`` int32 next row to write in every ring.
      size: ``[]`` int32 rows written so far (saturates at ``L``).
    """

    data: Example
    priorities: chex.Array
    position: chex.Array
    size: chex.Array


class Sample(NamedTuple):
    """A sampled batch: examples ``[N, ...]``, their slots and IS weights."""

    examples: Example
    column: chex.Array  # [N] int32
    row: chex.Array  # [N] int32
    weights: chex.Array  # [N] float32, importance-sampling weights (max 1)


class Replay(NamedTuple):
    """Pure replay functions (the optax-style factory pattern)."""

    init: Callable
    add: Callable
    sample: Callable
    update_priorities: Callable
    nbytes: Callable


def make_replay(rows_per_column: int, *, prioritized: bool = False,
                alpha: float = 0.6, beta: float = 0.4,
                eps: float = 1e-3) -> Replay:
    """Builds a :class:`Replay`.

    Args:
      rows_per_column: ``L``; the capacity is ``B * L`` examples.
      prioritized: priority ``(|z - v| + eps)^alpha`` instead of uniform.
      alpha, beta, eps: prioritized replay exponents and floor.
    """
    if rows_per_column < 1:
        raise ValueError(f"replay rows_per_column must be >= 1, got {rows_per_column}")
    L = int(rows_per_column)

    def init(example: Example, num_columns: int) -> ReplayState:
        """Empty buffer shaped like one (unbatched) ``example``."""
        data = jax.tree_util.tree_map(
            lambda x: jnp.zeros((num_columns, L) + x.shape, x.dtype), example)
        return ReplayState(data=data,
                           priorities=jnp.zeros((num_columns, L), jnp.float32),
                           position=jnp.zeros((), jnp.int32),
                           size=jnp.zeros((), jnp.int32))

    def _priority(examples: Example) -> chex.Array:
        valid = examples.value_mask[..., 0] > 0
        if prioritized:
            err = jnp.abs(examples.values[..., 0] - examples.search_values[..., 0])
            p = (err + eps) ** alpha
        else:
            p = jnp.ones_like(examples.values[..., 0])
        return jnp.where(valid, p, 0.0)

    def add(state: ReplayState, examples: Example) -> ReplayState:
        """Writes a chunk of examples ``[T, B, ...]`` (T rows per ring)."""
        T = examples.values.shape[0]
        if T > L:
            raise ValueError(f"a chunk of {T} steps does not fit a replay of "
                             f"{L} rows per column: raise the replay capacity")
        rows = (state.position + jnp.arange(T)) % L
        batch_major = jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), examples)
        data = jax.tree_util.tree_map(lambda buf, new: buf.at[:, rows].set(new),
                                      state.data, batch_major)
        priorities = state.priorities.at[:, rows].set(
            jnp.swapaxes(_priority(examples), 0, 1))
        return ReplayState(data=data, priorities=priorities,
                           position=(state.position + T) % L,
                           size=jnp.minimum(state.size + T, L))

    def sample(state: ReplayState, key: chex.PRNGKey, batch_size: int) -> Sample:
        """Samples ``batch_size`` examples proportionally to priority."""
        flat = state.priorities.reshape(-1)
        cdf = jnp.cumsum(flat)
        total = cdf[-1]
        u = jax.random.uniform(key, (batch_size,)) * total
        index = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, flat.shape[0] - 1)
        column, row = jnp.divmod(index, L)
        examples = jax.tree_util.tree_map(lambda x: x[column, row], state.data)
        p = flat[index] / jnp.maximum(total, 1e-12)
        if prioritized:
            n = jnp.sum(flat > 0)
            w = (n * jnp.maximum(p, 1e-12)) ** (-beta)
            w = w / jnp.max(w)
        else:
            w = jnp.ones_like(p)
        # Nothing valid stored yet (e.g. no episode has ended): zero weights
        # make the update a no-op instead of training on empty slots.
        w = jnp.where(total > 0, w, 0.0)
        return Sample(examples=examples, column=column.astype(jnp.int32),
                      row=row.astype(jnp.int32), weights=w.astype(jnp.float32))

    def update_priorities(state: ReplayState, sample: Sample,
                          errors: chex.Array) -> ReplayState:
        """Sets new priorities ``(|error| + eps)^alpha`` (prioritized only)."""
        if not prioritized:
            return state
        new = (jnp.abs(errors) + eps) ** alpha
        return state.replace(
            priorities=state.priorities.at[sample.column, sample.row].set(new))

    def nbytes(example: Example, num_columns: int) -> int:
        """Bytes the buffer occupies for this example shape and ``B`` columns."""
        leaves = jax.tree_util.tree_leaves(example)
        per_example = sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize
                          for x in leaves)
        return (per_example + 4) * num_columns * L

    return Replay(init=init, add=add, sample=sample,
                  update_priorities=update_priorities, nbytes=nbytes)


def abstract_example(examples_tb: Example) -> Example:
    """Strips the ``[T, B]`` axes of an abstract chunk of examples."""
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape[2:], x.dtype), examples_tb)
