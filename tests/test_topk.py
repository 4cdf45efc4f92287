"""`mctx_planner.top_k`: `jax.lax.top_k`'s outputs, bit for bit, by a native
kernel on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mctx_planner as mp

import test_fast_search as golden
from test_native import _require_kernels

# Every float class XLA orders by its bits: +NaN above +inf, +0 above -0,
# -NaN below -inf; equal values by lower index.
SPECIAL = np.array([1., np.nan, 2., -0.0, 0.0, -np.inf, 2., -np.nan, 0.0,
                    -0.0, np.inf, -3.], np.float32)


def _assert_equal_to_lax(operand, k):
  values, indices = jax.jit(lambda x: mp.top_k(x, k))(operand)
  ref_values, ref_indices = jax.lax.top_k(operand, k)
  assert values.dtype == ref_values.dtype and indices.dtype == jnp.int32
  assert values.shape == ref_values.shape == indices.shape
  np.testing.assert_array_equal(np.asarray(indices), np.asarray(ref_indices))
  # Bits, so that NaNs and signed zeros count.
  np.testing.assert_array_equal(
      np.asarray(values).view(np.uint8), np.asarray(ref_values).view(np.uint8))


@pytest.mark.parametrize("k", range(len(SPECIAL) + 1))
def test_special_values_in_xla_order(k):
  _assert_equal_to_lax(jnp.asarray(SPECIAL), k)


@pytest.mark.parametrize("shape,k", [((7, 500), 64), ((3, 4, 33), 5),
                                     ((200,), 200), ((9, 300), 1),
                                     ((9, 300), 299)])
def test_matches_lax_top_k(shape, k):
  rng = np.random.default_rng(sum(shape) + k)
  _assert_equal_to_lax(jnp.asarray(rng.normal(size=shape), jnp.float32), k)
  # Many ties (and equal values across radix buckets).
  _assert_equal_to_lax(
      jnp.asarray(rng.integers(-3, 3, shape), jnp.float32), k)


def test_under_vmap_and_other_dtypes():
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 40))
  values, indices = jax.vmap(lambda row: mp.top_k(row, 7))(x)
  ref_values, ref_indices = jax.lax.top_k(x, 7)
  np.testing.assert_array_equal(values, ref_values)
  np.testing.assert_array_equal(indices, ref_indices)
  for dtype in (jnp.bfloat16, jnp.int32):
    _assert_equal_to_lax(x.astype(dtype), 7)


def test_gradients_match_lax_top_k():
  """Differentiable as `jax.lax.top_k` (the values, through their indices),
  forward and reverse, also under jit."""
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 40))
  weights = jnp.arange(5.)
  loss = lambda fn: lambda v: (fn(v, 5)[0] * weights).sum()
  for transform in (jax.grad, jax.jacfwd):
    np.testing.assert_array_equal(
        jax.jit(transform(loss(mp.top_k)))(x),
        jax.jit(transform(loss(jax.lax.top_k)))(x))


def test_native_kernel_on_cpu_lax_top_k_elsewhere():
  _require_kernels()
  x = jnp.zeros((4, 50), jnp.float32)
  traced = jax.jit(lambda v: mp.top_k(v, 5)).trace(x)
  assert "mctx_planner_top_k" in traced.lower(lowering_platforms=("cpu",)).as_text()
  if golden._prunes_platform_branches():  # pylint: disable=protected-access
    gpu = traced.lower(lowering_platforms=("cuda",)).as_text()
    assert "mctx_planner_top_k" not in gpu and "top_k" in gpu


@pytest.mark.parametrize("k", [-1, 51, 2.0, True, np.bool_(True),
                               np.float32(3.)])
def test_bad_k_is_a_value_error(k):
  with pytest.raises(ValueError, match="k must be an int in"):
    mp.top_k(jnp.zeros(50), k)


def test_k_as_numpy_or_jax_integer():
  """`k` as a NumPy integer or a concrete JAX integer, as `jax.lax.top_k`
  takes it; a traced `k` is a ValueError, not a trace."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 50)), jnp.float32)
  want = jax.lax.top_k(x, 4)
  for k in (np.int64(4), np.int32(4), jnp.int32(4)):
    got = mp.top_k(x, k)
    for a, b in zip(got, want):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ValueError, match="k must be an int in"):
    jax.jit(mp.top_k)(x, 4)


def test_scalar_operand_is_a_value_error():
  with pytest.raises(ValueError, match="at least one axis"):
    mp.top_k(jnp.float32(1.), 1)
