"""The native XLA:CPU search kernels (`mctx_planner._native`): built and
used where a C++ compiler and `jax.ffi` exist, bit-identical to mctx, and
the pure-XLA path otherwise."""

import functools
import os
import platform
import re
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import mctx
import numpy as np
import pytest

from mctx_planner import _fast_search, _native

import test_fast_search as golden


# These tests are about XLA:CPU programs: on the CPU device also where JAX's
# default backend is a GPU or TPU.
pytestmark = pytest.mark.usefixtures("on_the_cpu")


def _require_kernels():
  """Skips only where this environment cannot have the kernels (no C++
  compiler, no `jax.ffi`, turned off); elsewhere they must load, so that a
  failed build fails the test instead of skipping it."""
  reason = _native.why_not_here()
  if reason is not None:
    pytest.skip(f"native kernels impossible here: {reason}")
  assert _native.available(), _native.status()


def test_kernels_build_where_they_can():
  """Where a compiler and `jax.ffi` exist (CI has both) the kernels must
  load: a failed build would otherwise only show as a slower search."""
  _require_kernels()
  assert _native.status().startswith("in use ("), _native.status()


def _hlo(fn, *args):
  return jax.jit(fn).lower(*args).as_text()


@functools.lru_cache(maxsize=None)
def _policy_pair(algorithm, num_simulations, max_depth, typed=False):
  """`(mctx's, the fast backend's)` jitted `{algorithm}_policy` on the
  golden toy model (`typed`: a separate trace for typed keys)."""
  del typed

  def run(policy, params, key, root, invalid):
    return policy(params, key, root, golden._recurrent_fn, num_simulations,  # pylint: disable=protected-access
                  invalid_actions=invalid, max_depth=max_depth)
  return tuple(jax.jit(functools.partial(run, getattr(module,
                                                      f"{algorithm}_policy")))
               for module in (mctx, _fast_search))


# (batch, num_simulations, num_actions, max_depth, discount, typed keys)
# 40 actions: more than one 8-lane vector and a partial one; B = 512: the
# descent and the expansion split over XLA's threads.
NATIVE_CASES = [
    (16, 24, 9, None, 0.95, False),
    (8, 17, 40, 4, -1.0, True),
    (32, 12, 3, None, -1.0, False),
    (512, 6, 4, None, 0.95, False),
]


def _muzero_inputs(batch, num_actions, discount, typed=False):
  """`(seed, params, key, root, invalid)` of the golden toy model for seeds
  0 to 2; the last has flat priors: exact ties, drawn by the noise."""
  for seed in range(3):
    params = golden._params(num_actions, discount, flat_prior=seed == 2)  # pylint: disable=protected-access
    root = golden._root(batch, num_actions, seed)  # pylint: disable=protected-access
    if seed == 2:
      root = root.replace(prior_logits=jnp.zeros_like(root.prior_logits))
    invalid = golden._invalid(batch, num_actions, seed)  # pylint: disable=protected-access
    key = jax.random.key(seed) if typed else jax.random.PRNGKey(seed)
    if typed:
      invalid = invalid.astype(bool)
    yield seed, params, key, root, invalid


@pytest.mark.parametrize("case", NATIVE_CASES,
                         ids=lambda c: "-".join(map(str, c)))
def test_native_muzero_matches_mctx(case):
  _require_kernels()
  batch, sims, num_actions, max_depth, discount, typed = case
  ref, fast = _policy_pair("muzero", sims, max_depth, typed)
  for seed, params, key, root, invalid in _muzero_inputs(
      batch, num_actions, discount, typed):
    golden._assert_same(fast(params, key, root, invalid),  # pylint: disable=protected-access
                        ref(params, key, root, invalid))
    if seed == 0:
      text = fast.lower(params, key, root, invalid).as_text()
      assert "mctx_planner_muzero_descend" in text
      # With the selection cache, the expansion and the next descent are
      # one call.
      fused = (num_actions >= _fast_search._SELECT_CACHE_MIN_ACTIONS and  # pylint: disable=protected-access
               _fast_search._FUSED_DESCENT)  # pylint: disable=protected-access
      assert ("mctx_planner_expand_descend" if fused
              else "mctx_planner_expand_backup") in text


# (batch, num_simulations, num_actions, max_depth, discount): from 20
# actions the descent keeps its selection cache (`_native.muzero_descend`);
# enough simulations for nodes to be revisited many times.  From 16
# examples and up to 64 actions, with AVX-512, the descent runs in vector
# lanes (`DescendLanes` in tree_kernels.cc; 4 examples: the scalar code),
# also at a depth limit, where the last level's nodes are scored by the
# scalar code.
CACHE_CASES = [
    (16, 48, 20, None, 0.95),
    (4, 40, 64, None, -1.0),
    (64, 40, 33, None, 0.95),
    (80, 32, 64, 6, -1.0),
    # From 128 examples the fused expansion and descent
    # (`_native.expand_descend`) hand blocks of examples to the threads.
    (160, 24, 24, None, 0.95),
]


def _wild_recurrent_fn(params, rng_key, action, embedding):
  """The golden toy model with values, rewards and priors that are not
  finite in some transitions."""
  out, nxt = golden._recurrent_fn(params, rng_key, action, embedding)  # pylint: disable=protected-access
  logits = jnp.where((nxt[:, 1] > 0.85)[:, None], jnp.nan, out.prior_logits)
  logits = logits.at[:, 3].set(jnp.where(nxt[:, 2] > 0.5, -jnp.inf,
                                         logits[:, 3]))
  return out.replace(
      value=jnp.where(nxt[:, 3] > 0.9, jnp.inf, out.value),
      reward=jnp.where(nxt[:, 4] < -0.9, jnp.nan, out.reward),
      prior_logits=logits), nxt


def _clean_even_roots(invalid):
  """`invalid` with no invalid action in the even examples: their roots are
  scored from the selection cache (and in the lanes), the odd ones' by the
  whole row (`PuctSelector::RootCached`)."""
  return invalid.at[::2].set(0)


@pytest.mark.parametrize("case", CACHE_CASES,
                         ids=lambda c: "-".join(map(str, c)))
def test_native_muzero_selection_cache_matches_mctx(case):
  """With the selection cache the native descent still picks mctx's actions
  (flat priors: ties broken by the noise), at roots with and without
  invalid actions."""
  _require_kernels()
  batch, sims, num_actions, max_depth, discount = case
  assert num_actions >= _fast_search._SELECT_CACHE_MIN_ACTIONS  # pylint: disable=protected-access
  ref, fast = _policy_pair("muzero", sims, max_depth)
  for seed, params, key, root, invalid in _muzero_inputs(
      batch, num_actions, discount):
    invalid = _clean_even_roots(invalid)
    if seed == 0:
      text = fast.lower(params, key, root, invalid).as_text()
      _, _, width = _native.select_cache_shape((batch, sims + 1, num_actions))
      assert f"tensor<{batch}x{sims + 1}x{width}xui32>" in text
    _assert_bit_identical(fast(params, key, root, invalid),
                          ref(params, key, root, invalid))


@pytest.mark.parametrize("batch", [16, 64])
def test_native_muzero_selection_cache_with_values_not_finite(batch):
  """NaN and infinite values, rewards and priors send the cached selection
  back to the whole row, which breaks ties as mctx does (64 examples: from
  the vector lanes too)."""
  _require_kernels()
  _, sims, num_actions, _, discount = CACHE_CASES[0]
  wild = [jax.jit(lambda p, k, r, i, policy=policy: policy(  # pylint: disable=g-long-lambda
      p, k, r, _wild_recurrent_fn, sims, invalid_actions=i))
          for policy in (_fast_search.muzero_policy, mctx.muzero_policy)]
  params = golden._params(num_actions, discount)  # pylint: disable=protected-access
  root = golden._root(batch, num_actions, 0)  # pylint: disable=protected-access
  invalid = _clean_even_roots(golden._invalid(batch, num_actions, 0))  # pylint: disable=protected-access
  out = [fn(params, jax.random.PRNGKey(1), root, invalid) for fn in wild]
  assert not np.isfinite(np.asarray(out[1].search_tree.node_values)).all()
  golden._assert_same(*out)  # pylint: disable=protected-access


class _Masked(NamedTuple):
  """A toy state with its legal-move mask (the planner's embeddings)."""
  x: jax.Array
  legal_action_mask: jax.Array


def _legal_moves(x, num_actions):
  """About two thirds of the moves legal, a different set per state; none
  in some states (all children then score `masked_score` alike: ties)."""
  legal = jnp.cos(7. * x[:, :1] + jnp.arange(num_actions)) > -0.5
  return legal & (x[:, 1:2] < 0.8)


def _masked_recurrent_fn(params, rng_key, action, embedding):
  out, nxt = golden._recurrent_fn(params, rng_key, action, embedding.x)  # pylint: disable=protected-access
  return out, _Masked(nxt, _legal_moves(nxt, out.prior_logits.shape[-1]))


def _masked_qtransform():
  """The planner's qtransform for states with legal-move masks, as
  `search._qtransform` makes it (with the attributes that select the
  native masked descent)."""
  from mctx_planner import search  # pylint: disable=g-import-not-at-top
  base = mctx.qtransform_by_parent_and_siblings
  masked = functools.partial(search._legal_qtransform, base=base)  # pylint: disable=protected-access
  masked.native_base = base
  masked.native_masked_score = search._MASKED_SCORE  # pylint: disable=protected-access
  return masked


@pytest.mark.parametrize("case", CACHE_CASES,
                         ids=lambda c: "-".join(map(str, c)))
def test_native_muzero_selection_cache_with_legal_masks_matches_mctx(case):
  """With legal-move masks (AlphaZero over a true model) the cache keeps
  the two best legal and the two best illegal unvisited children and the
  node's mask, and the native descent still picks mctx's actions."""
  _require_kernels()
  batch, sims, num_actions, max_depth, discount = case
  qtransform = _masked_qtransform()
  ref, fast = (jax.jit(lambda p, k, r, i, policy=policy: policy(  # pylint: disable=g-long-lambda
      p, k, r, _masked_recurrent_fn, sims, invalid_actions=i,
      max_depth=max_depth, qtransform=qtransform))
               for policy in (mctx.muzero_policy, _fast_search.muzero_policy))
  for seed, params, key, root, invalid in _muzero_inputs(
      batch, num_actions, discount):
    root = root.replace(embedding=_Masked(
        root.embedding, _legal_moves(root.embedding, num_actions)))
    if seed == 0:
      text = fast.lower(params, key, root, invalid).as_text()
      _, _, width = _native.select_cache_shape((batch, sims + 1, num_actions),
                                               masked=True)
      assert "mctx_planner_muzero_descend_cached" in text
      assert f"tensor<{batch}x{sims + 1}x{width}xui32>" in text
    out = fast(params, key, root, invalid)
    # Expanded nodes with some moves illegal, and some with none legal.
    expanded = np.asarray(out.search_tree.node_visits) > 0
    legal = np.asarray(out.search_tree.embeddings.legal_action_mask)[expanded]
    assert (~legal).any() and not legal.any(axis=-1).all()
    _assert_bit_identical(out, ref(params, key, root, invalid))


# The priors of node 1 in `_cache_probe`'s store: 5 is the best.
_PROBE_PRIORS = np.linspace(0.01, 0.05, 20).astype(np.float32)
_PROBE_PRIORS[5] = 0.2


def _cache_row(state, best, second, visited, spare=(None, None)):
  """A cache row (`SelectCacheWords` in tree_kernels.cc) of node 1 of
  `_cache_probe`'s store, for 20 actions: 16 words, the last 9 the vector
  descent's slots (`LaneSlots`), which a descent of one example leaves at
  0, but for the third and fourth best unvisited children in word 7
  (`spare`, `SpareTags`; None: none)."""
  prior = lambda a: int(_PROBE_PRIORS[a:a + 1].view(np.uint32)[0])
  tag = lambda a: 0 if a is None else a + 1
  spare_word = (tag(spare[0]) << 8) | (tag(spare[1]) << 24)
  return [state, best + 1, second + 1, prior(best), prior(second),
          sum(1 << a for a in visited), 0, spare_word] + [0] * 8


def _masked_cache_row(state, legal_two, illegal_two, visited, illegal):
  """A cache row with legal-move masks (`CacheLayout<true>` in
  tree_kernels.cc) of node 1 of `_cache_probe`'s store: the two best legal
  and illegal unvisited children, then the visited and legal bits."""
  unmasked = _cache_row(state, *legal_two, visited)
  # A second illegal child of None: there is none (0, and a prior of 0).
  first, second = illegal_two
  illegal_part = (_cache_row(state, first, second, [])[1:5] if second is not None
                  else _cache_row(state, first, first, [])[1:2] + [0] +
                  _cache_row(state, first, first, [])[3:4] + [0])
  legal_bits = sum(1 << a for a in range(20) if a not in illegal)
  return unmasked[:5] + illegal_part + [unmasked[5], legal_bits, 0]


def _cache_probe(cache_row, illegal=None):
  """One descent of a hand-made store (B = 1, 20 actions) whose root leads
  to node 1, an expanded node with no visited child: `(action picked at
  node 1, node 1's cache row after the descent)`, given node 1's cache row
  before it (None: zeros, i.e. not built).  `illegal`: the actions illegal
  at node 1 (legal-move masks, with the planner's masked score), or None
  (no masks)."""
  num_actions, num_nodes = 20, 3
  bits = lambda x: np.asarray(x, np.float32).view(np.int32)
  edges = np.zeros([1, num_nodes, num_actions, 6], np.int32)
  edges[0, 0, 0] = [bits(1.), bits(1.), 1, bits(0.), bits(1.), 2]
  edges[0, 1, :, 0] = bits(_PROBE_PRIORS)
  stats = np.zeros([1, num_nodes, 3], np.int32)
  stats[0, 0, 0], stats[0, 1, 0] = 2, 1
  masked = illegal is not None
  cache = np.zeros(_native.select_cache_shape(edges.shape, masked=masked),
                   np.uint32)
  assert cache.shape[-1] == (12 if masked else 16)
  if cache_row is not None:
    cache[0, 1] = cache_row
  legal = None
  if masked:
    legal = np.ones([1, num_nodes, num_actions], bool)
    legal[0, 1, illegal] = False
  node, action, _, cache = _native.muzero_descend(
      jnp.asarray(edges), jnp.asarray(stats),
      jnp.zeros([1, num_actions], bool), jnp.zeros([1, 2], jnp.uint32),
      jnp.ones([4], jnp.float32), 10, legal=legal, masked_score=-1e9,
      cache=jnp.asarray(cache))
  assert int(node[0]) == 1
  return int(action[0]), np.asarray(cache)[0, 1].tolist()


def test_native_muzero_descent_reads_and_keeps_its_cache():
  """The descent builds a node's cache row at its first visit (visited
  children as bits, the next four unvisited children by prior) and, once
  built, reads only the children it names: a row naming the wrong children
  changes the action, which shows that the cache is used at all."""
  _require_kernels()
  # Not built: the whole row is scored (action 5, the best prior), then the
  # row is built with 5 visited and 19, 18 as the best unvisited children,
  # 17 and 16 as the spares.
  action, row = _cache_probe(None)
  assert action == 5
  assert row == _cache_row(1, 19, 18, [5], spare=(17, 16))
  # A ready row naming 7 and 8 as the best unvisited, no spares: 8 (the
  # higher prior of the two) is picked, then counted as visited, and the
  # best four unvisited children recomputed from all priors.
  action, row = _cache_probe(_cache_row(1, 7, 8, []))
  assert action == 8
  assert row == _cache_row(1, 5, 19, [8], spare=(18, 17))
  # With spares, no rescan: the third moves up, its prior read from its
  # edge, whether the pick was the second (8) ...
  action, row = _cache_probe(_cache_row(1, 7, 8, [], spare=(9, 10)))
  assert action == 8
  assert row == _cache_row(1, 7, 9, [8], spare=(10, None))
  # ... or the first (8 again, named first; 7 moves up to first).
  action, row = _cache_probe(_cache_row(1, 8, 7, [], spare=(6, 4)))
  assert action == 8
  assert row == _cache_row(1, 7, 6, [8], spare=(4, None))
  # A row marked unusable is ignored.
  action, row = _cache_probe(_cache_row(2, 7, 8, []))
  assert action == 5 and row == _cache_row(2, 7, 8, [])


def test_native_muzero_descent_reads_and_keeps_its_masked_cache():
  """With legal-move masks the row keeps the two best legal and the two best
  illegal unvisited children and the node's mask, and is read as such."""
  _require_kernels()
  illegal = [5, 19]  # the two best priors
  # Not built: the best legal prior (18) is picked, then the row is built.
  action, row = _cache_probe(None, illegal)
  assert action == 18
  assert row == _masked_cache_row(1, (17, 16), (5, 19), [18], illegal)
  # A ready row naming 7 and 8 as the best legal children: 8 is picked, and
  # the best of each kind recomputed.
  action, row = _cache_probe(
      _masked_cache_row(1, (7, 8), (5, 19), [], illegal), illegal)
  assert action == 8
  assert row == _masked_cache_row(1, (18, 17), (5, 19), [8], illegal)
  # The row's own legal bits are read, not the mask: a row that calls 5
  # legal picks it (the best prior) and keeps the row's bits.
  action, row = _cache_probe(
      _masked_cache_row(1, (5, 18), (19, None), [], [19]), illegal)
  assert action == 5
  assert row == _masked_cache_row(1, (18, 17), (19, None), [5], [19])


def _assert_bit_identical(fast, ref):
  """Actions, weights and every tree field equal to the last bit."""
  np.testing.assert_array_equal(fast.action, ref.action)
  for name, a, b in [("action_weights", fast.action_weights,
                      ref.action_weights)] + [
                          (n, getattr(fast.search_tree, n),
                           getattr(ref.search_tree, n))
                          for n in golden.TREE_FIELDS]:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, name
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8),
                                  err_msg=name)


# (batch, num_simulations, num_actions, max_depth, discount)
# 64 actions: XLA sums the rows in two windows of 32 (`XlaRowSum`), and the
# kernel's loops run in vector lanes; 40: windows padded on both sides.
# From 16 examples and 16 to 64 actions, with AVX-512, the interior
# selections run in vector lanes (`GumbelLanes` in tree_kernels.cc).
GUMBEL_CASES = [
    (16, 24, 9, None, 0.95),
    (8, 17, 16, 4, -1.0),
    (32, 40, 5, None, -1.0),
    (8, 20, 64, None, 0.95),
    (8, 16, 40, 3, -1.0),
    (32, 24, 64, None, 0.95),
    (16, 20, 40, 3, -1.0),
]


@pytest.mark.parametrize("case", GUMBEL_CASES,
                         ids=lambda c: "-".join(map(str, c)))
def test_native_gumbel_matches_mctx(monkeypatch, case):
  """Gumbel MuZero's native descent: the same search as mctx, to the bit
  (invalid root actions, depth limits, two-player discounts), with the
  lanes' prefetch of visited edges off and on
  (`MCTX_PLANNER_PREFETCH_EDGES`: searches with a store over 32 MB turn it
  on; these stores are smaller)."""
  _require_kernels()
  batch, sims, num_actions, max_depth, discount = case
  assert _native.gumbel_exact(num_actions,
                              mctx.qtransform_completed_by_mix_value), (
      "XLA no longer rounds Gumbel's interior selection as "
      "tree_kernels.cc's GumbelScores (a new jaxlib?): the native Gumbel "
      "descent is off; see _native.gumbel_exact")
  ref, fast = _policy_pair("gumbel_muzero", sims, max_depth)
  for seed in range(2):
    params = golden._params(num_actions, discount, seed=seed)  # pylint: disable=protected-access
    root = golden._root(batch, num_actions, seed)  # pylint: disable=protected-access
    invalid = golden._invalid(batch, num_actions, seed)  # pylint: disable=protected-access
    key = jax.random.PRNGKey(seed)
    if seed == 0:
      text = fast.lower(params, key, root, invalid).as_text()
      assert "mctx_planner_gumbel_descend" in text
    want = ref(params, key, root, invalid)
    for prefetch in ("0", "1"):
      monkeypatch.setenv("MCTX_PLANNER_PREFETCH_EDGES", prefetch)
      _assert_bit_identical(fast(params, key, root, invalid), want)


def test_native_gumbel_with_values_not_finite():
  """NaN and infinite values, rewards and priors: the vector lanes hand such
  nodes to the scalar code, which rounds them as XLA does."""
  _require_kernels()
  batch, sims, num_actions = 16, 24, 20
  wild = [jax.jit(lambda p, k, r, i, policy=policy: policy(  # pylint: disable=g-long-lambda
      p, k, r, _wild_recurrent_fn, sims, invalid_actions=i))
          for policy in (_fast_search.gumbel_muzero_policy,
                         mctx.gumbel_muzero_policy)]
  params = golden._params(num_actions, 0.95)  # pylint: disable=protected-access
  root = golden._root(batch, num_actions, 0)  # pylint: disable=protected-access
  invalid = golden._invalid(batch, num_actions, 0)  # pylint: disable=protected-access
  assert "mctx_planner_gumbel_descend" in wild[0].lower(
      params, jax.random.PRNGKey(1), root, invalid).as_text()
  out = [fn(params, jax.random.PRNGKey(1), root, invalid) for fn in wild]
  assert not np.isfinite(np.asarray(out[1].search_tree.node_values)).all()
  _assert_bit_identical(*out)


def test_native_gumbel_cache_with_a_stochastic_model_at_the_depth_limit():
  """The Gumbel kernel keeps each node's prior probabilities from its first
  visit.  A model whose logits depend on the key re-evaluates nodes at the
  depth limit with new logits; those nodes are never interior, so the
  search still equals mctx's."""
  _require_kernels()
  num_actions, batch = 6, 16

  def noisy_fn(params, rng_key, action, embedding):
    out, nxt = golden._recurrent_fn(params, rng_key, action, embedding)  # pylint: disable=protected-access
    noise = jax.random.normal(rng_key, out.prior_logits.shape)
    return out.replace(prior_logits=out.prior_logits + noise), nxt

  params = golden._params(num_actions, 0.95)  # pylint: disable=protected-access
  root = golden._root(batch, num_actions, 0)  # pylint: disable=protected-access
  key = jax.random.PRNGKey(0)
  run = lambda fn: jax.jit(lambda p, k, r: fn(p, k, r, noisy_fn, 40,
                                              max_depth=2))
  fast = run(_fast_search.gumbel_muzero_policy)
  assert "mctx_planner_gumbel_descend" in fast.lower(params, key,
                                                     root).as_text()
  _assert_bit_identical(fast(params, key, root),
                        run(mctx.gumbel_muzero_policy)(params, key, root))


@pytest.mark.parametrize("broken", ["interior", "root"])
def test_gumbel_probe_turns_the_kernel_off_where_it_rounds_otherwise(
    monkeypatch, broken):
  """`gumbel_exact` compares the kernel's scores with XLA's bit for bit: one
  ulp off, it says no, and the search keeps XLA's selection there (the
  whole descent for the interior, the root step for the root), still
  exact."""
  _require_kernels()
  num_actions, batch = 6, 8
  qtransform = mctx.qtransform_completed_by_mix_value
  exact = _native._gumbel_scores  # pylint: disable=protected-access

  def one_ulp_off(*rows, mix, root):
    scores = exact(*rows, mix=mix, root=root)
    return jnp.nextafter(scores, jnp.inf) if root == (broken == "root") else scores

  monkeypatch.setattr(_native, "_GUMBEL_EXACT", {})
  monkeypatch.setattr(_native, "_gumbel_scores", one_ulp_off)
  assert not _native.gumbel_exact(num_actions, qtransform,
                                  root=broken == "root")
  assert _native.gumbel_exact(num_actions, qtransform,
                              root=broken != "root")
  params = golden._params(num_actions, 0.95)  # pylint: disable=protected-access
  root = golden._root(batch, num_actions, 0)  # pylint: disable=protected-access
  invalid = golden._invalid(batch, num_actions, 0)  # pylint: disable=protected-access
  key = jax.random.PRNGKey(0)

  def search(policy):
    return jax.jit(lambda p, k, r, i: policy(p, k, r, golden._recurrent_fn,  # pylint: disable=protected-access
                                             8, invalid_actions=i))

  fast = search(_fast_search.gumbel_muzero_policy)
  text = fast.lower(params, key, root, invalid).as_text()
  assert ("mctx_planner_gumbel_descend" in text) == (broken == "root")
  assert "mctx_planner_expand_backup" in text
  _assert_bit_identical(
      fast(params, key, root, invalid),
      search(mctx.gumbel_muzero_policy)(params, key, root, invalid))


def test_native_expansion_writes_as_xla():
  """`store_init` then `expand_backup` leave the store exactly as XLA's
  initial store, expansion writes and backup do: a new child of the root, a
  grandchild, and a node evaluated again (as at the depth limit), with and
  without the store's logits."""
  _require_kernels()
  batch, num_actions, sims = 3, 4, 5
  params = golden._params(num_actions, 0.9)  # pylint: disable=protected-access
  root = golden._root(batch, num_actions, 0)  # pylint: disable=protected-access
  steps = [  # (parent, action, child) per example
      ([0, 0, 0], [1, 3, 0], [1, 1, 1]),
      ([1, 1, 0], [0, 2, 2], [2, 2, 2]),
      ([0, 1, 0], [1, 2, 0], [1, 2, 1]),  # nodes 1 and 2 evaluated again
  ]

  def run(native, prior_probs):
    store = _fast_search._init_store(root, sims, prior_probs, native=native)  # pylint: disable=protected-access
    for parent, action, child in steps:
      store = _fast_search._expand(  # pylint: disable=protected-access
          params, jax.random.PRNGKey(0), store, golden._recurrent_fn,  # pylint: disable=protected-access
          jnp.array(parent), jnp.array(action), jnp.array(child),
          prior_probs, native_backup=native)
    return store

  for prior_probs in (None, jax.nn.softmax):
    native = jax.jit(functools.partial(run, True, prior_probs))()
    xla = jax.jit(functools.partial(run, False, prior_probs))()
    for name in ("edges", "stats", "links", "embeddings", "logits"):
      a, b = getattr(native, name), getattr(xla, name)
      if a is None:
        assert b is None
        continue
      np.testing.assert_array_equal(np.asarray(a).view(np.uint8),
                                    np.asarray(b).view(np.uint8),
                                    err_msg=name)
  with pytest.raises(Exception, match="out of range"):
    store = _fast_search._init_store(root, sims)  # pylint: disable=protected-access
    bad = jnp.array([0, sims + 1, 0])  # a node past the store
    jax.block_until_ready(_native.expand_backup(
        store.stats, store.edges, store.links, bad, jnp.zeros(3, jnp.int32),
        jnp.ones(3, jnp.int32), jnp.zeros(3), jnp.zeros(3), jnp.ones(3),
        jnp.zeros([3, num_actions])))


def test_store_init_writes_the_first_node_and_zeros():
  """`store_init(first, n)` is `zeros([B, n, ...]).at[:, 0].set(first)` bit
  for bit, for any element type and trailing shape, also for a store of
  several MB (split over threads, in memory advised for huge pages or not)
  and when XLA hands it memory that held other values."""
  _require_kernels()
  rng = np.random.default_rng(0)
  cases = [np.asarray(rng.integers(-9, 9, [3, 4, 6]), np.int32),
           np.asarray(rng.normal(size=[2, 5]), jnp.bfloat16),
           rng.random([3, 7]) < 0.5,
           np.asarray([1, 2], np.uint32),
           # 64 x 40 x 4 KB: 10 MB.
           np.asarray(rng.normal(size=[64, 1024]), np.float32)]
  for first, advise in [(x, True) for x in cases] + [(cases[-1], False)]:
    num_nodes = 40 if first.shape[0] == 64 else 6

    @jax.jit
    def both(x, n=num_nodes, advise=advise):
      garbage = jnp.full((x.shape[0], n) + x.shape[1:], 7, x.dtype).sum()
      return _native.store_init(x, n, advise=advise), garbage

    want = np.zeros((first.shape[0], num_nodes) + first.shape[1:], first.dtype)
    want[:, 0] = first
    for _ in range(2):
      got, _ = both(jnp.asarray(first))
      assert got.dtype == want.dtype and got.shape == want.shape
      np.testing.assert_array_equal(np.asarray(got).view(np.uint8),
                                    want.view(np.uint8))
  # A search's store: packed int4 embeddings keep XLA's initial store.
  root = mctx.RootFnOutput(
      prior_logits=jnp.zeros([2, 3]), value=jnp.ones([2]),
      embedding=(jnp.ones([2, 5], jnp.int4), jnp.ones([2, 5], bool)))
  stores = [jax.jit(functools.partial(_fast_search._init_store, num_simulations=4,  # pylint: disable=protected-access
                                      native=native))(root)
            for native in (True, False)]
  for a, b in zip(jax.tree.leaves(stores[0]), jax.tree.leaves(stores[1])):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a.astype(jnp.int32)),
                                  np.asarray(b.astype(jnp.int32)))


@pytest.mark.parametrize("with_logits", [False, True])
def test_unpack_streamed_or_not_matches_numpy(monkeypatch, with_logits):
  """The native unpack of a random store, its outputs written with
  non-temporal stores (`MCTX_PLANNER_STREAM_UNPACK=1`, as for trees of more
  than 16 MB) and without (`0`), against NumPy: the same bits.  66,690
  edges: more than one of the kernel's 65,536-edge chunks, and not whole
  16-edge lines (the tail is written the ordinary way)."""
  _require_kernels()
  batch, nodes, num_actions = 3, 130, 171
  rng = np.random.default_rng(0)
  edges = rng.integers(-2**31, 2**31 - 1, (batch, nodes, num_actions, 6),
                       dtype=np.int64).astype(np.int32)
  # Children: none (0), a node (1 to N) or out of range; stats random bits.
  edges[..., 5] = rng.integers(-1, nodes + 3, edges.shape[:-1])
  stats = rng.integers(-2**31, 2**31 - 1, (batch, nodes, 3),
                       dtype=np.int64).astype(np.int32)
  unpack = jax.jit(functools.partial(_native.unpack_edges,
                                     with_logits=with_logits))
  child = edges[..., 5]
  inside = (child > 0) & (child <= nodes)
  of_child = stats[np.arange(batch)[:, None, None],
                   np.clip(child - 1, 0, nodes - 1)]
  expected = [child - 1,
              np.where(inside, of_child[..., 0], edges[..., 2]),
              edges[..., 3], edges[..., 4],
              np.where(inside, of_child[..., 1], edges[..., 1]),
              edges[..., 0]]
  for stream in ("0", "1"):
    monkeypatch.setenv("MCTX_PLANNER_STREAM_UNPACK", stream)
    out = [x for x in unpack(jnp.asarray(edges), jnp.asarray(stats))
           if x is not None]
    # The kernel streams only 64-byte-aligned outputs, as XLA:CPU's are.
    assert all(x.unsafe_buffer_pointer() % 64 == 0 for x in out)
    assert len(out) == (6 if with_logits else 5)
    for got, want in zip(out, expected):
      np.testing.assert_array_equal(np.asarray(got).view(np.int32), want,
                                    err_msg=f"stream={stream}")


def test_xla_unpack_reads_the_children_statistics(monkeypatch):
  """With MuZero's selection-cache rows the native backup leaves narrow
  nodes' edges (`LazyEdges` in tree_kernels.cc); the XLA unpack (the
  `--unpack` A/B's other side) then takes an expanded child's visit count
  and value from its statistics, as the native unpack does: mctx's tree to
  the bit."""
  _require_kernels()
  monkeypatch.setattr(_fast_search, "_NATIVE_UNPACK", False)
  batch, sims, num_actions = 16, 24, 24

  def run(module, params, key, root, invalid):
    return module.muzero_policy(params, key, root, golden._recurrent_fn,  # pylint: disable=protected-access
                                sims, invalid_actions=invalid)

  _, params, key, root, invalid = next(_muzero_inputs(batch, num_actions,
                                                      0.95))
  args = (params, key, root, invalid)
  fast = jax.jit(functools.partial(run, _fast_search))
  text = fast.lower(*args).as_text()
  assert "mctx_planner_expand_descend" in text
  assert "mctx_planner_unpack_edges" not in text
  _assert_bit_identical(fast(*args),
                        jax.jit(functools.partial(run, mctx))(*args))


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel_muzero"])
def test_outputs_without_the_tree_drop_its_unpack(algorithm):
  """The policies compute the action and the weights from the root alone
  (`_to_tree`'s `root_only`), so a program that drops the whole tree, as
  self-play does, has no unpack of it left after XLA's optimizations, and
  gives the same action and weights to the bit.  (That these are mctx's:
  the tests above, which run the same code.)  20 actions: MuZero's
  selection-cache rows, whose narrow nodes' edges are stale, so the root's
  children's numbers must come from their statistics."""
  _require_kernels()
  batch, sims, num_actions = 16, 12, 20
  _, whole = _policy_pair(algorithm, sims, None)
  _, params, key, root, invalid = next(_muzero_inputs(batch, num_actions,
                                                      0.95))
  args = (params, key, root, _clean_even_roots(invalid))

  @jax.jit
  def kept(*a):
    out = whole(*a)
    return out.action, out.action_weights

  assert "mctx_planner_unpack_edges" in whole.lower(*args).compile().as_text()
  lean = kept.lower(*args).compile()
  assert "mctx_planner_unpack_edges" not in lean.as_text()
  assert "mctx_planner_expand" in lean.as_text()  # the search itself stays
  out = whole(*args)
  action, weights = lean(*args)
  np.testing.assert_array_equal(action, out.action)
  np.testing.assert_array_equal(np.asarray(weights).view(np.uint32),
                                np.asarray(out.action_weights).view(np.uint32))


def test_self_play_does_not_unpack_the_tree():
  """`selfplay.rollout` keeps the planner's action, weights and root value,
  which come from the root alone: its compiled program searches with the
  kernels but has no unpack of the whole tree, while `plan` (which returns
  the tree) has one."""
  _require_kernels()
  from mctx_planner import selfplay  # pylint: disable=g-import-not-at-top
  from mctx_planner.domains import TicTacToe  # pylint: disable=g-import-not-at-top
  from mctx_planner.search import (SearchConfig, make_planner, true_model,  # pylint: disable=g-import-not-at-top
                                   uniform_predict_fn)
  domain = TicTacToe()
  states = jax.vmap(domain.init)(jax.random.split(jax.random.PRNGKey(0), 4))
  for algorithm in ("muzero", "gumbel_muzero"):
    planner = make_planner(
        true_model(domain, uniform_predict_fn(domain.num_actions)),
        SearchConfig(algorithm=algorithm, num_simulations=4,
                     max_num_considered_actions=4))
    play = jax.jit(lambda p, s, k, search=planner.search: selfplay.rollout(
        domain, search, p, s, k, 2))
    text = play.lower({}, states, jax.random.PRNGKey(1)).compile().as_text()
    assert "mctx_planner_expand" in text, algorithm
    assert "mctx_planner_unpack_edges" not in text, algorithm
    plan = jax.jit(planner.search).lower({}, jax.random.PRNGKey(0), states)
    assert "mctx_planner_unpack_edges" in plan.compile().as_text(), algorithm


def test_native_kernels_replace_the_tree_loops():
  """With the kernels, MuZero's and Gumbel MuZero's searches have no descent
  or backup loop left; with a qtransform other than mctx's default, they
  keep the XLA descent."""
  _require_kernels()
  num_actions, batch = 5, 8
  params = golden._params(num_actions, 0.95)  # pylint: disable=protected-access
  root = golden._root(batch, num_actions, 0)  # pylint: disable=protected-access
  key = jax.random.PRNGKey(0)

  def search(policy, **kwargs):
    return lambda p, k, r: policy(p, k, r, golden._recurrent_fn, 8, **kwargs)  # pylint: disable=protected-access

  muzero = _hlo(search(_fast_search.muzero_policy), params, key, root)
  assert "mctx_planner_muzero_descend" in muzero
  assert "mctx_planner_store_init" in muzero
  gumbel = _hlo(search(_fast_search.gumbel_muzero_policy), params, key, root)
  assert "mctx_planner_muzero_descend" not in gumbel
  assert "mctx_planner_gumbel_descend" in gumbel
  assert "mctx_planner_expand_backup" in gumbel
  gumbel_raw = _hlo(search(_fast_search.gumbel_muzero_policy,
                           qtransform=functools.partial(
                               mctx.qtransform_completed_by_mix_value,
                               use_mixed_value=False)), params, key, root)
  assert "mctx_planner_gumbel_descend" not in gumbel_raw
  assert "mctx_planner_expand_backup" in gumbel_raw
  minmax = _hlo(search(_fast_search.muzero_policy,
                       qtransform=functools.partial(
                           mctx.qtransform_by_min_max, min_value=-1.,
                           max_value=1.)), params, key, root)
  assert "mctx_planner_muzero_descend" not in minmax
  with _native.disabled():
    plain = _hlo(search(_fast_search.muzero_policy), params, key, root)
  assert "mctx_planner" not in plain
  # The descent and the backup loops (one each: B = 8 is not compacted).
  assert (plain.count("stablehlo.while") ==
          muzero.count("stablehlo.while") + 2)


def test_environment_variable_turns_the_kernels_off(monkeypatch):
  monkeypatch.setenv("MCTX_PLANNER_NATIVE", "0")
  with pytest.raises(RuntimeError, match="MCTX_PLANNER_NATIVE"):
    _native._load()  # pylint: disable=protected-access


def test_a_failed_build_says_why(monkeypatch, tmp_path):
  if not hasattr(getattr(jax, "ffi", None), "ffi_call"):
    pytest.skip(f"jax {jax.__version__} has no jax.ffi.ffi_call: nothing to build")
  monkeypatch.delenv("MCTX_PLANNER_NATIVE", raising=False)
  monkeypatch.setenv("MCTX_PLANNER_CACHE_DIR", str(tmp_path))
  monkeypatch.setattr(_native, "_compiler", lambda: "/bin/false")
  with pytest.raises(RuntimeError, match="failed"):
    _native._load()  # pylint: disable=protected-access
  assert not list(tmp_path.iterdir())  # no half-written library left


def test_status_inside_disabled():
  with _native.disabled():
    assert not _native.available()
    assert "disabled" in _native.status()


@pytest.mark.parametrize("domain_name,batch,sims,algorithm", [
    ("tictactoe", 6, 24, "muzero"), ("connect4", 8, 32, "muzero"),
    ("connect4", 8, 32, "gumbel_muzero")])
def test_native_alphazero_with_legal_masks_matches_mctx(domain_name, batch,
                                                        sims, algorithm):
  """AlphaZero over a true model masks illegal children inside the tree
  (the planner's `_legal_qtransform`, over PUCT's default qtransform or
  Gumbel's with the planner's constants); the native descents do that too
  and give mctx's search through the planner, bit for bit."""
  import mctx_planner as mp  # pylint: disable=g-import-not-at-top
  _require_kernels()
  domain = mp.domains.make(domain_name)
  keys = jax.random.split(jax.random.PRNGKey(1), batch)
  states = jax.vmap(domain.init)(keys)
  # A few random moves, different per example, so that the masks differ.
  for step in range(3):
    moves = jax.vmap(lambda k, s: jax.random.choice(
        k, domain.num_actions, p=s.legal_action_mask / s.legal_action_mask.sum()))(
            jax.random.split(jax.random.PRNGKey(10 + step), batch), states)
    states = jax.vmap(domain.step)(states, moves)
  for predict in (mp.uniform_predict_fn(domain.num_actions),  # many ties
                  None):
    if predict is None:
      net = mp.AlphaZeroNet(domain.num_actions,
                            mp.NetworkConfig(hidden_size=8, num_layers=1))
      params = mp.init_params(net, jax.random.PRNGKey(0),
                              domain.observation_shape)
      predict = mp.network_predict_fn(net)
    else:
      params = None
    model = mp.true_model(domain, predict)
    outs = {}
    for backend in ("mctx", "fast"):
      planner = mp.make_planner(model, mp.SearchConfig(
          algorithm=algorithm, num_simulations=sims, backend=backend))
      outs[backend] = planner.plan(params, jax.random.PRNGKey(3), states)
      if backend == "fast":
        text = jax.jit(planner.search).lower(
            params, jax.random.PRNGKey(3), states).as_text()
        assert f"mctx_planner_{algorithm.split('_')[0]}_descend" in text
    fast, ref = outs["fast"], outs["mctx"]
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(ref)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


_PORTABLE_SCRIPT = """
import ctypes, sys
import jax, mctx
sys.path.insert(0, sys.argv[1])
from mctx_planner import _fast_search, _native
import test_fast_search as golden
import test_native
assert _native.available(), _native.status()
library = ctypes.CDLL(_native.status()[len("in use ("):-1])
assert library.MctxPlannerPuctLanes() == 1  # the portable PUCT rows
# Gumbel's rows from the kernel's least number of actions.
_fast_search._GUMBEL_ROWS_MIN_ACTIONS = _native.GUMBEL_ROWS_MIN_ACTIONS
for policy, ref, a, name in [
    (_fast_search.muzero_policy, mctx.muzero_policy, 11, "muzero"),
    (_fast_search.muzero_policy, mctx.muzero_policy, 20, "muzero"),
    (_fast_search.gumbel_muzero_policy, mctx.gumbel_muzero_policy, 9,
     "gumbel"),
    # Narrow nodes' rows, scalar (`NarrowGumbelSelect`, `RankLogits`).
    (_fast_search.gumbel_muzero_policy, mctx.gumbel_muzero_policy, 20,
     "gumbel")]:
  params = golden._params(a, -1.0)
  root = golden._root(40, a, 0)
  invalid = golden._invalid(40, a, 0)
  key = jax.random.PRNGKey(0)
  run = lambda fn: jax.jit(lambda p, k, r, i: fn(
      p, k, r, golden._recurrent_fn, 20, invalid_actions=i))
  fast = run(policy)
  assert f"mctx_planner_{name}_descend" in fast.lower(
      params, key, root, invalid).as_text()
  test_native._assert_bit_identical(fast(params, key, root, invalid),
                                    run(ref)(params, key, root, invalid))
print("portable kernels match mctx")
"""


def _run_script(script, **env):
  """Runs `script` (with this directory as its argument) in a new Python on
  the CPU with `env` added, as a switch read once per process needs; the
  finished process, which must have succeeded."""
  done = subprocess.run(
      [sys.executable, "-c", script, os.path.dirname(__file__)],
      env=dict(os.environ, JAX_PLATFORMS="cpu", **env), capture_output=True,
      text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


_CHECK_ROWS_SCRIPT = """
import sys
import jax, mctx
sys.path.insert(0, sys.argv[1])
from mctx_planner import _fast_search, _native
import test_fast_search as golden
import test_native
# Rows from 16 actions (the kernel's least; searches take them from more).
_fast_search._GUMBEL_ROWS_MIN_ACTIONS = _native.GUMBEL_ROWS_MIN_ACTIONS
# (batch, simulations, actions, max_depth, discount): from 16 examples the
# lanes decide (`DecideNarrow`), below the scalar code (`NarrowGumbelSelect`).
for batch, sims, a, depth, discount in [(32, 64, 64, None, 0.95),
                                        (8, 48, 40, 3, -1.0),
                                        (16, 40, 20, None, -1.0)]:
  for seed in range(2):
    params = golden._params(a, discount, seed=seed)
    root = golden._root(batch, a, seed)
    invalid = golden._invalid(batch, a, seed)
    run = lambda fn: jax.jit(lambda p, k, r, i: fn(
        p, k, r, golden._recurrent_fn, sims, invalid_actions=i,
        max_depth=depth))
    key = jax.random.PRNGKey(seed)
    test_native._assert_bit_identical(
        run(_fast_search.gumbel_muzero_policy)(params, key, root, invalid),
        run(mctx.gumbel_muzero_policy)(params, key, root, invalid))
print("rows checked")
"""


def test_gumbel_rows_decide_as_the_whole_row():
  """`MCTX_PLANNER_CHECK_GUMBEL_ROWS=1`: every selection the kernel decides
  from a narrow node's row (`GumbelRow`: visited children and the best
  unvisited one, the softmax's denominator bounded) is scored from the whole
  row as well, and the process aborts where the two differ.  In a
  subprocess (the switch is read once), with the lanes and the scalar code,
  depth limits and two-player discounts; the searches are mctx's, and the
  rows decided many selections (their count, printed at exit)."""
  _require_kernels()
  done = _run_script(_CHECK_ROWS_SCRIPT, MCTX_PLANNER_CHECK_GUMBEL_ROWS="1")
  assert "rows checked" in done.stdout
  checked = re.search(r"(\d+) narrow Gumbel selections checked", done.stderr)
  assert checked and int(checked.group(1)) > 5000, done.stderr[-2000:]


def test_portable_code_paths_match_mctx(tmp_path):
  """Built without AVX2 (`MCTX_PLANNER_NATIVE_FLAGS=-mno-avx2`, as on a CPU
  without it), the kernels take their portable code and still give
  mctx's searches bit for bit (in a subprocess: the kernels' targets are
  registered once per process).  `MCTX_PLANNER_NATIVE_SPLIT_NS=0` splits
  every small batch over the threads too (`AdaptiveFor`), which real
  searches do only when their paths are long."""
  _require_kernels()
  if platform.machine().lower() not in ("x86_64", "amd64"):
    pytest.skip("-mno-avx2 is an x86 flag; elsewhere the portable code is "
                "the only code")
  done = _run_script(_PORTABLE_SCRIPT, MCTX_PLANNER_NATIVE_FLAGS="-mno-avx2",
                     MCTX_PLANNER_CACHE_DIR=str(tmp_path),
                     MCTX_PLANNER_NATIVE_SPLIT_NS="0")
  assert "portable kernels match mctx" in done.stdout


def test_x64_runs_mctx_itself():
  """With x64 on, JAX promotes parts of mctx's arithmetic (the Dirichlet
  noise, the PUCT constants) to float64, which neither the float32 store nor
  the kernels reproduce: the fast policies run mctx itself (they raised a
  ValueError before)."""
  try:  # jax 0.4.30
    from jax.experimental import enable_x64  # pylint: disable=g-import-not-at-top
    x64 = enable_x64()
  except ImportError:  # newer JAX: the config option is a context manager
    x64 = jax.enable_x64(True)
  num_actions, batch = 5, 4
  params = golden._params(num_actions, 0.95)  # pylint: disable=protected-access
  root = golden._root(batch, num_actions, 0)  # pylint: disable=protected-access
  with x64:
    run = lambda policy: jax.jit(lambda p, k, r: policy(  # pylint: disable=g-long-lambda
        p, k, r, golden._recurrent_fn, 4))  # pylint: disable=protected-access
    args = (params, jax.random.PRNGKey(0), root)
    fast, ref = run(_fast_search.muzero_policy), run(mctx.muzero_policy)
    assert "mctx_planner" not in fast.lower(*args).as_text()
    golden._assert_same(fast(*args), ref(*args))  # pylint: disable=protected-access
