"""`top_k`: `jax.lax.top_k` with a faster exact kernel on CPU.

Domains that retrieve their candidate actions by vector search (the
built-in `recommendation` domain, a user's own) call a top-k inside every
step of the model, so a search calls it once per simulation for the whole
batch. XLA:CPU's TopK keeps a heap per row (O(n log k)); with 500 items and
k = 64 that is 13.6 us per row, more than half of a `recommendation`
search. On XLA:CPU, where the native kernels load (`native_cpu_kernels`),
`top_k` finds the `k` largest by a radix select over the floats'
order-keeping integer bits and sorts only those, with the same outputs bit
for bit; elsewhere (GPU, TPU, other dtypes, no kernels) it is
`jax.lax.top_k` itself.
"""

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner import _native

__all__ = ["top_k"]


def top_k(operand: jax.Array, k: int):
  """The `k` largest entries along the last axis, as `jax.lax.top_k`.

  Args:
    operand: `[..., n]` array.
    k: how many, `0 <= k <= n`: a Python int, or anything `operator.index`
      takes (a NumPy integer, a concrete JAX integer scalar), as
      `jax.lax.top_k` accepts.

  Returns:
    `(values [..., k], indices [..., k] int32)`: exactly `jax.lax.top_k`'s,
    largest first, equal values by lower index, NaN ordered by its bits as
    XLA does (+NaN above +inf, -NaN below -inf).

  Raises:
    ValueError: if `k` is not an int in `[0, n]` or `operand` is a scalar.
  """
  operand = jnp.asarray(operand)
  if operand.ndim == 0:
    raise ValueError("top_k: operand must have at least one axis, got a scalar")
  n = operand.shape[-1]
  k_given = k
  try:
    k = None if isinstance(k, (bool, np.bool_)) else operator.index(k)
  except TypeError:  # a float, a traced value
    k = None
  if k is None or not 0 <= k <= n:
    raise ValueError(f"top_k: k must be an int in [0, {n}] (the last axis), "
                     f"got {k_given!r}")
  if operand.dtype != jnp.float32 or k == 0 or not _native.available():
    return tuple(jax.lax.top_k(operand, k))
  return _native_or_lax(operand, k)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _native_or_lax(operand, k):
  # JAX lowers only the branch of the platform it compiles for.
  return jax.lax.platform_dependent(
      operand, cpu=lambda x: _native.top_k_rows(x, k),
      default=lambda x: tuple(jax.lax.top_k(x, k)))


@_native_or_lax.defjvp
def _native_or_lax_jvp(k, primals, tangents):
  """As `jax.lax.top_k`'s: the values' tangents are the operand's at the
  chosen indices (the indices have none)."""
  (operand,), (tangent,) = primals, tangents
  values, indices = _native_or_lax(operand, k)
  return (values, indices), (
      jnp.take_along_axis(tangent, indices, axis=-1),
      np.zeros(indices.shape, jax.dtypes.float0))
