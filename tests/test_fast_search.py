"""Golden equivalence of `mctx_planner._fast_search` against raw mctx."""

import functools
import inspect

import chex
import jax
import jax.numpy as jnp
import mctx
import numpy as np
import pytest

from mctx_planner import _fast_search, _native

EMBED = 6

@pytest.fixture(autouse=True, scope="module")
def _compact_small_batches():
  """Lets B=8 run the compacted phase of the lockstep loops (B=1, 3 don't)."""
  saved = _fast_search._COMPACT_MIN
  _fast_search._COMPACT_MIN = 8
  yield
  _fast_search._COMPACT_MIN = saved


TREE_FIELDS = ("node_visits", "children_index", "node_values",
               "children_values", "children_visits", "children_rewards",
               "children_discounts", "parents", "action_from_parent",
               "raw_values", "children_prior_logits", "root_invalid_actions")


def _params(num_actions, discount, seed=0, flat_prior=False):
  """Toy model parameters; `flat_prior` gives exact ties between actions."""
  ks = jax.random.split(jax.random.PRNGKey(seed), 5)
  w_logits = jax.random.normal(ks[2], (EMBED, num_actions))
  return dict(
      action_embed=jax.random.normal(ks[0], (num_actions, EMBED)),
      w=jax.random.normal(ks[1], (EMBED, EMBED)) / np.sqrt(EMBED),
      w_logits=w_logits * (0. if flat_prior else 1.),
      w_value=jax.random.normal(ks[3], (EMBED,)),
      w_reward=jax.random.normal(ks[4], (EMBED,)),
      discount=jnp.float32(discount))


def _recurrent_fn(params, rng_key, action, embedding):
  """Deterministic toy model: a small random linear network."""
  del rng_key
  nxt = jnp.tanh(embedding @ params["w"] + params["action_embed"][action])
  terminal = nxt[:, 0] > 0.7  # some transitions end the episode
  out = mctx.RecurrentFnOutput(
      reward=nxt @ params["w_reward"],
      discount=jnp.where(terminal, 0.0, params["discount"]),
      prior_logits=nxt @ params["w_logits"],
      value=jnp.tanh(nxt @ params["w_value"]))
  return out, nxt


def _root(batch, num_actions, seed):
  ks = jax.random.split(jax.random.PRNGKey(100 + seed), 3)
  return mctx.RootFnOutput(
      prior_logits=jax.random.normal(ks[0], (batch, num_actions)),
      value=jax.random.normal(ks[1], (batch,)),
      embedding=jax.random.normal(ks[2], (batch, EMBED)))


def _invalid(batch, num_actions, seed):
  mask = jax.random.bernoulli(jax.random.PRNGKey(200 + seed), 0.4,
                              (batch, num_actions))
  mask = mask.at[:, 0].set(False)  # keep at least one valid action
  if batch > 2:
    mask = mask.at[-1].set(True)  # one example with all actions invalid
  return mask.astype(jnp.float32)


def _assert_same(fast, ref):
  np.testing.assert_array_equal(fast.action, ref.action)
  np.testing.assert_allclose(fast.action_weights, ref.action_weights,
                             rtol=1e-5, atol=1e-6)
  ft, rt = fast.search_tree, ref.search_tree
  for name in TREE_FIELDS:
    a, b = np.asarray(getattr(ft, name)), np.asarray(getattr(rt, name))
    assert a.shape == b.shape and a.dtype == b.dtype, name
    if np.issubdtype(a.dtype, np.floating):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    else:
      np.testing.assert_array_equal(a, b, err_msg=name)
  chex.assert_trees_all_close(ft.embeddings, rt.embeddings, rtol=1e-5,
                              atol=1e-6)
  chex.assert_trees_all_close(ft.extra_data, rt.extra_data)


# (policy, batch, num_simulations, num_actions, masked, max_depth, discount)
# A > 16 exercises the integer-key argmax, B = 8 the compacted loop phase.
CASES = [
    ("muzero", 1, 17, 4, False, None, 0.95),
    ("muzero", 3, 5, 20, True, None, -1.0),
    ("muzero", 8, 17, 5, True, 3, -1.0),
    ("muzero_minmax_typed_keys", 3, 17, 4, True, None, 0.95),
    ("gumbel", 1, 17, 5, False, None, -1.0),
    ("gumbel_raw_value", 3, 5, 4, True, None, 0.95),
    ("gumbel", 8, 17, 20, True, 2, -1.0),
    ("gumbel", 8, 1, 4, False, None, 0.95),
    ("muzero_prior_qtransform", 3, 9, 5, True, None, 0.95),
]


def _policies(name):
  if name == "muzero":
    return mctx.muzero_policy, _fast_search.muzero_policy, {}
  if name == "muzero_minmax_typed_keys":
    q = functools.partial(mctx.qtransform_by_min_max, min_value=-2.,
                          max_value=2.)
    return (mctx.muzero_policy, _fast_search.muzero_policy,
            dict(qtransform=q, temperature=0.5))
  if name == "muzero_prior_qtransform":
    # A qtransform that reads the prior logits, which a MuZero search keeps
    # apart from the edge records (`_Store.logits`).
    return (mctx.muzero_policy, _fast_search.muzero_policy,
            dict(qtransform=mctx.qtransform_completed_by_mix_value))
  if name == "gumbel":
    return (mctx.gumbel_muzero_policy, _fast_search.gumbel_muzero_policy,
            dict(max_num_considered_actions=4))
  if name == "gumbel_raw_value":
    q = functools.partial(mctx.qtransform_completed_by_mix_value,
                          use_mixed_value=False, rescale_values=False)
    return (mctx.gumbel_muzero_policy, _fast_search.gumbel_muzero_policy,
            dict(qtransform=q))
  raise ValueError(name)


@functools.lru_cache(maxsize=None)
def _jitted(name, num_simulations, max_depth, native=True):
  """(mctx, fast) jitted; `native=False`: a fast search to trace inside
  `_native.disabled()` (a function of its own, as JAX caches traces)."""
  del native  # only part of the cache key
  ref_fn, fast_fn, kwargs = _policies(name)

  def run(fn, params, key, root, invalid):
    return fn(params, key, root, _recurrent_fn, num_simulations,
              invalid_actions=invalid, max_depth=max_depth, **kwargs)

  return (jax.jit(functools.partial(run, ref_fn)),
          jax.jit(functools.partial(run, fast_fn)))


@pytest.mark.parametrize("name", ["muzero_policy", "gumbel_muzero_policy",
                                  "stochastic_muzero_policy"])
def test_drop_in_policies_take_mctx_parameters(name):
  """Each drop-in policy takes mctx's parameters, in mctx's order and with
  mctx's defaults, plus `mesh` and `batch_axis`, and says it returns a
  `PolicyOutput` (its `*_with_root` variant returns the root too)."""
  ours = inspect.signature(getattr(_fast_search, name))
  theirs = inspect.signature(getattr(mctx, name))
  params = list(ours.parameters.values())
  assert [p.name for p in params] == list(theirs.parameters) + ["mesh",
                                                                "batch_axis"]
  for p in params[:-2]:
    assert p.default == theirs.parameters[p.name].default, p.name
    assert p.kind == theirs.parameters[p.name].kind, p.name
  assert ours.return_annotation is mctx.PolicyOutput
  assert getattr(_fast_search, name).__name__ == name


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_matches_mctx(case):
  """With the native CPU kernels where they load (`mctx_planner._native`:
  MuZero's descent with mctx's default qtransform, every backup)."""
  _check_matches_mctx(case, native=True)


@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[6]],
                         ids=lambda c: "-".join(map(str, c)))
def test_matches_mctx_without_native_kernels(case):
  """The pure-XLA tree loops, used where the native kernels do not load."""
  with _native.disabled():
    _check_matches_mctx(case, native=False)


def _check_matches_mctx(case, native):
  name, batch, sims, num_actions, masked, max_depth, discount = case
  typed = name.endswith("typed_keys")  # new-style keys and a boolean mask
  ref_fn, fast_fn = _jitted(name, sims, max_depth, native)
  for seed in range(3):
    # The last seed uses a model with flat priors (many exact ties).
    params = _params(num_actions, discount, flat_prior=seed == 2)
    root = _root(batch, num_actions, seed)
    if seed == 2:
      root = root.replace(prior_logits=jnp.zeros_like(root.prior_logits))
    invalid = _invalid(batch, num_actions, seed) if masked else None
    if typed:
      key, invalid = jax.random.key(seed), invalid.astype(bool)
    else:
      key = jax.random.PRNGKey(seed)
    _assert_same(fast_fn(params, key, root, invalid),
                 ref_fn(params, key, root, invalid))


def _fresh_search(case, platform="cpu", **extra):
  """A newly jitted fast search of `case` (a new function, as JAX caches
  traces per function) and its StableHLO lowered for `platform` (lowering
  needs no device of that platform)."""
  name, batch, sims, num_actions, _, max_depth, discount = case
  _, fast_fn, kwargs = _policies(name)
  fast = jax.jit(functools.partial(
      fast_fn, recurrent_fn=_recurrent_fn, num_simulations=sims,
      max_depth=max_depth, **kwargs, **extra))
  # The XLA layouts are the subject here, not the native kernels.
  with _native.disabled():
    traced = fast.trace(_params(num_actions, discount), jax.random.PRNGKey(0),
                        _root(batch, num_actions, 0))
  return fast, traced.lower(lowering_platforms=(platform,)).as_text()


def _loops_and_conds(text):
  return text.count("stablehlo.while"), text.count("stablehlo.case")


@pytest.mark.parametrize("case", [CASES[2], CASES[6]],
                         ids=lambda c: "-".join(map(str, c)))
def test_accelerator_layouts_match_mctx(case, monkeypatch):
  """The layouts used off CPU (two-index gathers, no loop compaction, XLA's
  argmax, MuZero's noise always drawn) give mctx's results too; run here
  with the CPU checks patched."""
  name, batch, sims, num_actions, masked, max_depth, discount = case
  ref = _jitted(name, sims, max_depth)[0]
  _, cpu_text = _fresh_search(case)
  monkeypatch.setattr(_fast_search, "_on_cpu", lambda: False)
  monkeypatch.setattr(_fast_search, "_COMPACT_BACKENDS", ())
  fast, other_text = _fresh_search(case)
  (cpu_loops, cpu_conds), (loops, conds) = map(_loops_and_conds,
                                                (cpu_text, other_text))
  assert loops < cpu_loops  # no compaction (B = 8 compacts in this module)
  # MuZero's lazy noise has conditionals on CPU only; gumbel has none.
  assert (conds < cpu_conds) == (name == "muzero")
  for seed in range(2):
    params = _params(num_actions, discount)
    root, key = _root(batch, num_actions, seed), jax.random.PRNGKey(seed)
    invalid = _invalid(batch, num_actions, seed) if masked else None
    _assert_same(fast(params, key, root, invalid_actions=invalid),
                 ref(params, key, root, invalid))


def _prunes_platform_branches() -> bool:
  """Whether this JAX lowers only the lowering platform's branch of
  `platform_dependent` (jax 0.10 does, 0.4.30 lowers both and leaves the
  choice to XLA's compiler: the same program, more compile work)."""
  def f(x):
    loop = lambda: jax.lax.while_loop(lambda v: v[0] < 1., lambda v: v + 1., x)
    return jax.lax.platform_dependent(cpu=loop, default=lambda: x)
  text = jax.jit(f).trace(jnp.zeros(1)).lower(
      lowering_platforms=("cuda",)).as_text()
  return "stablehlo.while" not in text


def test_layouts_follow_the_lowering_platform(monkeypatch):
  """The CPU-only layout choices are made per lowering platform
  (`jax.lax.platform_dependent`), not by the machine that traces."""
  if not _prunes_platform_branches():
    pytest.skip("this JAX lowers every platform_dependent branch "
                f"(jax {jax.__version__}); XLA picks the CPU one when compiling")
  small = ("muzero", 3, 3, 5, True, None, -1.0)  # below _COMPACT_MIN
  large = ("muzero", _fast_search._COMPACT_MIN, 3, 5, True, None, -1.0)
  cpu = {c: _loops_and_conds(_fresh_search(c, "cpu")[1]) for c in (small, large)}
  gpu = {c: _loops_and_conds(_fresh_search(c, "cuda")[1]) for c in (small, large)}
  # Loop compaction (from B = _COMPACT_MIN) adds while loops on CPU only.
  assert cpu[large][0] > cpu[small][0] and gpu[large][0] == gpu[small][0]
  # MuZero's lazily drawn noise adds conditionals on CPU only.
  assert cpu[small][1] > gpu[small][1]
  # The default backend does not matter: the CPU program stays the same.
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert _loops_and_conds(_fresh_search(large, "cpu")[1]) == cpu[large]
  assert _loops_and_conds(_fresh_search(large, "cuda")[1]) == gpu[large]


def test_custom_loop_fn_takes_the_expected_platforms_layouts(monkeypatch):
  """A custom `loop_fn` is not wrapped in `platform_dependent`: the search is
  traced once, with the layouts of the platform JAX expects at trace time
  (the `jax.default_device` in effect, else the default backend)."""
  def loop_fn(lower, upper, body, init):  # e.g. Haiku's hk.fori_loop
    return jax.lax.fori_loop(lower, upper, body, init)

  conds = lambda: _loops_and_conds(_fresh_search(CASES[2], loop_fn=loop_fn)[1])[1]
  with jax.default_device(jax.devices("cpu")[0]):  # also on a GPU machine
    on_cpu = conds()
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert _fast_search._platform() == "gpu" and conds() < on_cpu  # no lazy noise
  devices = [jax.devices("cpu")[0]]
  try:
    with jax.default_device("cpu"):
      devices.append("cpu")
  except ValueError:
    pass  # jax 0.4.30 takes Device objects only
  for device in devices:
    with jax.default_device(device):
      assert _fast_search._on_cpu() and conds() == on_cpu


def _decision_fn(params, rng_key, action, embedding):
  del rng_key
  after = jnp.tanh(embedding @ params["w"] + params["action_embed"][action])
  return mctx.DecisionRecurrentFnOutput(
      chance_logits=after[:, :3] * 2.0,
      afterstate_value=jnp.tanh(after @ params["w_value"])), after


def _chance_fn(params, rng_key, outcome, afterstate):
  del rng_key
  nxt = jnp.tanh(afterstate @ params["w"].T + outcome[:, None] * 0.5)
  return mctx.ChanceRecurrentFnOutput(
      action_logits=nxt @ params["w_logits"],
      value=jnp.tanh(nxt @ params["w_value"]),
      reward=nxt @ params["w_reward"],
      discount=jnp.where(nxt[:, 1] > 0.7, 0.0, params["discount"])), nxt


def test_stochastic_matches_mctx():
  num_actions, batch, sims, max_depth = 4, 8, 17, 4

  def run(fn, params, key, root, invalid):
    return fn(params, key, root, _decision_fn, _chance_fn, sims,
              invalid_actions=invalid, max_depth=max_depth)

  ref_fn = jax.jit(functools.partial(run, mctx.stochastic_muzero_policy))
  fast_fn = jax.jit(
      functools.partial(run, _fast_search.stochastic_muzero_policy))
  for seed in range(3):
    # The last seed has flat priors: exact PUCT ties at decision nodes, where
    # the tie-breaking noise decides (drawn lazily on CPU).
    params = _params(num_actions, -1.0, flat_prior=seed == 2)
    root = _root(batch, num_actions, seed)
    if seed == 2:
      root = root.replace(prior_logits=jnp.zeros_like(root.prior_logits))
    invalid = _invalid(batch, num_actions, seed)
    key = jax.random.PRNGKey(seed)
    _assert_same(fast_fn(params, key, root, invalid),
                 ref_fn(params, key, root, invalid))


def _swapping_recurrent_fn(params, rng_key, action, embedding):
  # Each new leaf comes from the *other* leaf only (as Stochastic MuZero's
  # state and afterstate do).
  first, second = embedding
  out, from_first = _recurrent_fn(params, rng_key, action, first)
  return out, (jnp.tanh(second * 0.5), from_first)


@pytest.mark.parametrize("name", ["muzero", "gumbel"])
def test_embedding_leaves_computed_from_other_leaves(name):
  # Same results as mctx, and no copy of the `[B, N, ...]` stores: unless
  # the expansion ties each new leaf to the row it read (`_after_read`), XLA
  # copies every such store twice per simulation.
  num_actions, batch, sims = 4, 8, 17
  ref_fn, fast_fn, kwargs = _policies(name)
  params = _params(num_actions, 0.95)
  root = _root(batch, num_actions, 0)
  root = root.replace(embedding=(root.embedding, -root.embedding))
  key = jax.random.PRNGKey(0)
  outputs = []
  for fn in (fast_fn, ref_fn):
    run = jax.jit(functools.partial(fn, recurrent_fn=_swapping_recurrent_fn,
                                    num_simulations=sims, **kwargs))
    compiled = run.lower(params, key, root).compile()
    outputs.append(compiled(params, key, root))
    if fn is fast_fn:
      assert not _fast_search._store_copies(compiled.as_text(), batch, sims + 1)
  _assert_same(*outputs)


def test_store_copies_finds_copies_of_tree_stores():
  # The check the two tests around this one rely on can fail: it finds a
  # copy of a `[B, N, ...]` store (rank >= 3), and nothing else.
  hlo = "\n".join([
      "  %copy.1 = s32[8,18,4,6]{3,2,1,0} copy(%p)",
      "  ROOT %copy.2 = f32[8,18,32]{2,1,0} copy(%q)",
      "  %copy.3 = pred[8,18]{1,0} copy(%c)",        # rank 2: not a store
      "  %copy.4 = f32[8,19,32]{2,1,0} copy(%r)",    # other node count
      "  %add.5 = f32[8,18,32]{2,1,0} add(%q, %q)",  # not a copy
  ])
  assert _fast_search._store_copies(hlo, 8, 18) == [
      ("copy.1", "s32[8,18,4,6]{3,2,1,0}"), ("copy.2", "f32[8,18,32]{2,1,0}")]


def test_stochastic_updates_the_embedding_stores_in_place():
  # The next state comes from the afterstate and the afterstate from the
  # state: unless the expansion ties each new value to the row it read
  # (`_after_read`), XLA copies both `[B, N, ...]` stores twice per
  # simulation (3.4x slower at B = 1024, S = 256).
  num_actions, batch, sims = 4, 8, 17
  params = _params(num_actions, -1.0)
  root = _root(batch, num_actions, 0)

  def run(params, key, root):
    return _fast_search.stochastic_muzero_policy(
        params, key, root, _decision_fn, _chance_fn, sims)

  text = jax.jit(run).lower(params, jax.random.PRNGKey(0),
                            root).compile().as_text()
  copies = _fast_search._store_copies(text, batch, sims + 1)
  assert not copies, copies


def test_sequential_halving_table_matches_mctx():
  from mctx._src import seq_halving  # pylint: disable=g-import-not-at-top
  for max_considered in range(0, 20):
    for sims in (1, 2, 3, 5, 16, 17, 64, 100):
      assert (_fast_search._considered_visits_table(max_considered, sims) ==
              seq_halving.get_table_of_considered_visits(max_considered, sims))


def test_random_bits_match_jax():
  # Our unrolled threefry reproduces JAX's partitionable bit layout, the
  # default since jax 0.5; under the older layout the search uses jax.random.
  saved = jax.config.jax_threefry_partitionable
  try:
    jax.config.update("jax_threefry_partitionable", False)
    assert not _fast_search._own_threefry_ok()
    jax.config.update("jax_threefry_partitionable", True)
    _check_random_bits()
  finally:
    jax.config.update("jax_threefry_partitionable", saved)


def _check_random_bits():
  for seed in range(3):
    key = jax.random.PRNGKey(seed)
    for num in (1, 2, 3, 8):
      np.testing.assert_array_equal(_fast_search._split_raw(key, num),
                                    jax.random.split(key, num))
    for size in (1, 9, 64):
      np.testing.assert_array_equal(_fast_search._uniform01(key, (size,)),
                                    jax.random.uniform(key, (size,)))
    # A device's slice of the batch's keys, the offset traced as under a mesh.
    sliced = jax.jit(lambda k, off: _fast_search._split_batch(k, 8, off, 4))
    raw = lambda keys: (jax.random.key_data(keys) if jnp.issubdtype(
        keys.dtype, jax.dtypes.prng_key) else keys)
    for k in (key, jax.random.key(seed)):
      np.testing.assert_array_equal(raw(sliced(k, 3)),
                                    raw(jax.random.split(k, 8)[3:7]))


def test_argmax_matches_jnp():
  x = jax.random.normal(jax.random.PRNGKey(0), (64, 40))
  x = jnp.where(jax.random.uniform(jax.random.PRNGKey(1), x.shape) < 0.2,
                jnp.round(x), x)  # ties
  x = x.at[0, 5].set(jnp.nan).at[0, 30].set(jnp.nan).at[1].set(-0.0)
  x = x.at[2, 3].set(jnp.inf).at[3].set(-jnp.inf).at[4, 1:].set(0.0)
  x = x.at[4, 0].set(-0.0).at[5, 39].set(jnp.nan)
  np.testing.assert_array_equal(jax.jit(_fast_search._argmax)(x),
                                jnp.argmax(x, axis=-1))
