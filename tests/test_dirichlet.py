"""`_dirichlet.dirichlet` draws `jax.random.dirichlet`'s samples bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mctx_planner import _dirichlet

_KEYS = (jax.random.PRNGKey(3), jax.random.key(11))


def _assert_same_bits(a, b):
  np.testing.assert_array_equal(np.asarray(a).view(np.uint32),
                                np.asarray(b).view(np.uint32))


@pytest.mark.parametrize("alpha", [0.3, 2.5])
def test_matches_jax_with_constant_alpha(alpha):
  # A constant alpha, as the search passes it (XLA folds the sampler's
  # constants), with a raw and a typed key; alpha = 2.5 takes no boost.
  def draw(sampler):
    return jax.jit(lambda k: sampler(k, jnp.full([64], alpha)))
  ref = draw(lambda k, a: jax.random.dirichlet(k, a, shape=(64,)))
  new = draw(lambda k, a: _dirichlet.dirichlet(k, a, 64))
  for key in _KEYS:
    _assert_same_bits(new(key), ref(key))


def test_matches_jax_with_traced_alpha():
  alpha = jnp.asarray([0.05, 0.3, 1.0, 4.0] * 4, jnp.float32)
  ref = jax.jit(lambda k, a: jax.random.dirichlet(k, a, shape=(200,)))
  new = jax.jit(lambda k, a: _dirichlet.dirichlet(k, a, 200))
  _assert_same_bits(new(_KEYS[1], alpha), ref(_KEYS[1], alpha))


@pytest.mark.parametrize("min_left,share", [(1, 10**6), (10**6, 1)])
def test_both_sizes_of_the_gathered_turns(monkeypatch, min_left, share):
  # One element per turn (many turns of the loop over the rejected ones),
  # and every element in one turn.
  monkeypatch.setattr(_dirichlet, "_MIN_LEFT", min_left)
  monkeypatch.setattr(_dirichlet, "_LEFT_SHARE", share)
  key = jax.random.PRNGKey(5)
  ref = jax.random.dirichlet(key, jnp.full([16], 0.3), shape=(64,))
  new = jax.jit(lambda k: _dirichlet.dirichlet(k, jnp.full([16], 0.3), 64))(key)
  _assert_same_bits(new, ref)
  np.testing.assert_allclose(np.asarray(new).sum(-1), 1., rtol=1e-5)


def test_the_first_round_leaves_some_to_the_loop():
  # The comparisons above see the loop's work only if the first round
  # rejects some elements (about 2% at alpha = 0.3).
  n = 64 * 64
  keys = jax.vmap(lambda k: jax.random.split(k)[0])(
      jax.random.split(jax.random.key(3), n))
  _, d, c = _dirichlet._constants(jnp.full([n], 0.3, jnp.float32))
  state = _dirichlet._first_round(keys, c)
  left = int(_dirichlet._rejected_state(state, d).sum())
  assert 0 < left < n // 16


def test_search_noise_uses_it_from_min_elements(monkeypatch):
  # The search's root noise is mctx's: with the whole weight on the noise
  # (`(1 - 1) * probs + 1 * noise` is the noise exactly).
  from mctx_planner import _fast_search  # pylint: disable=g-import-not-at-top
  assert 64 * 64 >= _dirichlet.MIN_ELEMENTS
  calls = []
  sampler = _dirichlet.dirichlet
  monkeypatch.setattr(_dirichlet, "dirichlet",
                      lambda *a: calls.append(a) or sampler(*a))
  probs = jnp.zeros([64, 64])
  noise = jax.jit(lambda k, p: _fast_search._dirichlet_mix(
      k, p, dirichlet_alpha=0.3, dirichlet_fraction=1.0))(_KEYS[0], probs)
  ref = jax.random.dirichlet(_KEYS[0], jnp.full([64], 0.3), shape=(64,))
  _assert_same_bits(noise, ref)
  # (Traced once, for the CPU branch of `platform_dependent`.)
  assert len(calls) == 1
