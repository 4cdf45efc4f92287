"""`dirichlet`: `jax.random.dirichlet`'s samples, bit for bit, sooner.

MuZero's root noise is a Dirichlet sample per root: mctx calls
`jax.random.dirichlet(key, alpha * ones(A), shape=(B,))`. JAX draws it as
the softmax of log-gamma samples, from one Marsaglia-Tsang rejection
sampler per element (`_gamma_one` in `jax._src.random`, in log space), and
lowers the `B * A` samplers as one vmapped `while_loop` (Marsaglia and
Tsang, "A simple method for generating gamma variables", 2000). A vmapped
loop takes every element through as many steps as the slowest one needs.
On the 2-core CPU of docs/benchmarks.md that is 1.7 ms at B = 64, A = 64
(a MuZero search there with a 64-wide MLP and S = 64 takes 7.6 ms) and
27 ms at B = 1024.

Here every element takes its first round at once. That round accepts about
98% of them; the rest are gathered, a sixteenth of the elements at a time,
and go on through one loop each. A step is either another draw of `x`
while `v <= 0` (JAX's inner loop) or a new round (its outer loop).

Each element sees the same operations on the same values as in JAX's
sampler, so the samples are the same bits. That also needs XLA to fuse
the same operations, since XLA:CPU turns a product and a sum in one kernel
into a fused multiply-add. Here an optimization barrier keeps XLA from
folding the sampler's constants, all but `log(d)`, which it folds in JAX's
program too; without the barrier some samples differed in the last bit.
`tests/test_dirichlet.py` compares the samples with `jax.random.dirichlet`,
constant and traced `alpha`, with raw and typed keys. A JAX or XLA that
changes the sampler or those fusions fails those tests. `dirichlet` falls
back to `jax.random.dirichlet` where it does not apply: 64-bit floats, key
types other than threefry. The search uses it on XLA:CPU only, from
`MIN_ELEMENTS` samples: a search compiles 0.8 to 1.3 s longer with it.
"""

import jax
import jax.numpy as jnp
from jax import lax

from mctx_planner._compat import key_impl_name

__all__ = ["dirichlet", "MIN_ELEMENTS"]

# From this many samples (`B * A`) the search draws them here: at B = 64,
# A = 64 (4096) a MuZero search with a 64-wide MLP ran 1.05x to 1.16x
# faster; below, the gain is under 0.1 ms a search, and the compile is
# 0.8 to 1.3 s longer at any size.
MIN_ELEMENTS = 2048

# Elements gathered per turn after the first round: this share of them, at
# least `_MIN_LEFT` (the first round leaves about 2%).
_LEFT_SHARE = 16
_MIN_LEFT = 64


def _threefry_key(key) -> bool:
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key_impl_name(key) == "threefry2x32"
  return str(jax.config.jax_default_prng_impl) == "threefry2x32"


def _constants(alpha):
  """`(boost, d, c)` of the sampler for `alpha` (float32, any shape)."""
  one, third = jnp.float32(1), jnp.float32(1. / 3.)
  boost = alpha >= one
  boosted = jnp.where(boost, alpha, alpha + one)
  d = boosted - third
  c = third / jnp.sqrt(d)
  return boost, d, c


def _normal_step(key, c):
  """One draw of the sampler's inner loop: `(key, x, v)`."""
  key, subkey = jax.random.split(key)
  x = jax.random.normal(subkey, (), jnp.float32)
  return key, x, jnp.float32(1) + x * c


def _step(state, c):
  """One step of one element's sampler: another draw of `x` while
  `v <= 0` (JAX's inner loop), else a new round (JAX's outer loop body:
  a split in three, the uniform, the round's first draw). A fresh element
  (`v` = 1) starts its first round. `X` and `V` are carried, as in JAX's
  loop, so that XLA tests the stored values."""
  key, x_key, _, v, u, _, _ = state
  new_round = v > 0
  next_key, round_x_key, u_key = jax.random.split(key, 3)
  key = jnp.where(new_round, next_key, key)
  x_key = jnp.where(new_round, round_x_key, x_key)
  u = jnp.where(new_round, jax.random.uniform(u_key, (), jnp.float32), u)
  x_key, x, v = _normal_step(x_key, c)
  return key, x_key, x, v, u, x * x, v * v * v


def _rejected_state(state, d):
  """Whether an element's sampler goes on from `state`: its draw has
  `v <= 0` (JAX's inner loop) or its round `(X, V, U)` is rejected (the
  outer loop's condition, as JAX writes it)."""
  *_, v, u, x_sq, v_cubed = state
  one, half = jnp.float32(1), jnp.float32(0.5)
  squeeze = jnp.float32(0.0331)
  rejected = (u >= one - squeeze * (x_sq * x_sq)) & (
      jnp.log(u) >= x_sq * half + d * ((one - v_cubed) + jnp.log(v_cubed)))
  return (v <= 0) | rejected


def _first_round(key, c):
  """Every element's state after its first round, from its key after the
  sampler's first split (`key[N]`, `c[N]`)."""
  zeros = jnp.zeros(key.shape[:1], jnp.float32)
  ones = jnp.ones(key.shape[:1], jnp.float32)
  # A fresh element (`v` = 1) starts a new round.
  return jax.vmap(_step)((key, key, zeros, ones, zeros, zeros, ones), c)


def _finish_one(state, c, d):
  """One element's `V`: its sampler's steps from `state` until accepted."""
  return lax.while_loop(lambda s: _rejected_state(s, d),
                        lambda s: _step(s, c), state)[-1]


def _log_gamma(keys, alpha):
  """`jax.random.loggamma` of one key per element: `keys[N]`, `alpha[N]`
  float32. Every element takes its first round at once; the ~2% that go on
  are gathered `capacity` at a time and finished in a loop each."""
  boost, d, c = _constants(alpha)
  # `log(d)` from the constants as JAX has them (XLA folds it where alpha is
  # constant); the barrier keeps XLA from folding anything else here, which
  # changed the last bit of some samples.
  log_d = jnp.log(d)
  boost, d, c = lax.optimization_barrier((boost, d, c))
  first = jax.vmap(jax.random.split)(keys)
  key, subkey = first[:, 0], first[:, 1]
  n = keys.shape[0]
  state = _first_round(key, c)
  left = _rejected_state(state, d)
  capacity = min(n, max(_MIN_LEFT, -(-n // _LEFT_SHARE)))
  finish = jax.vmap(_finish_one)

  def finish_some(carry):
    v_cubed, left = carry
    # Up to `capacity` of the elements left, gathered (index `n`: none).
    index = jnp.nonzero(left, size=capacity, fill_value=n)[0]
    take = lambda a: a.at[index].get(mode="clip")
    done = finish(tuple(take(a) for a in state), take(c), take(d))
    return (v_cubed.at[index].set(done, mode="drop"),
            left.at[index].set(False, mode="drop"))

  v_cubed, _ = lax.while_loop(lambda s: jnp.any(s[1]), finish_some,
                              (state[-1], left))
  # The sample: log(d) + log(V) plus the boost for alpha < 1, in log space.
  log_samples = -jax.vmap(lambda k: jax.random.exponential(k, (), jnp.float32))(
      subkey)
  log_boost = jnp.where(boost | (log_samples == 0), jnp.float32(0),
                        log_samples * (jnp.float32(1) / alpha))
  return (log_d + jnp.log(v_cubed)) + log_boost


def dirichlet(key, alpha, batch_size: int):
  """`jax.random.dirichlet(key, alpha, shape=(batch_size,))`, the same bits.

  Args:
    key: one PRNG key (typed or raw `uint32[2]`).
    alpha: `[A]` concentrations (float32).
    batch_size: `B`.

  Returns:
    `[B, A]` float32 samples, rows summing to one.
  """
  alpha = jnp.asarray(alpha)
  if (alpha.dtype != jnp.float32 or alpha.ndim != 1 or
      jax.config.jax_enable_x64 or not _threefry_key(key)):
    return jax.random.dirichlet(key, alpha, shape=(batch_size,))
  if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.wrap_key_data(key)
  num_actions = alpha.shape[0]
  keys = jax.random.split(key, batch_size * num_actions)
  alphas = jnp.broadcast_to(alpha, (batch_size, num_actions)).reshape(-1)
  log_gamma = _log_gamma(keys, alphas).reshape(batch_size, num_actions)
  return jax.nn.softmax(log_gamma, -1)
