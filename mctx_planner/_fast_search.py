"""Batch-first MCTS search with the exact semantics of DeepMind's ``mctx``.

``mctx.search`` vmaps a per-example tree descent (a ``while_loop``) and a
per-example backup (a ``while_loop`` that carries the whole tree) over the
batch.  Under ``vmap`` every backup step rewrites all ``[B, N, A]`` tree arrays
(scatters become selects over the full arrays), so on CPU the tree
bookkeeping costs far more than the network itself.

This module produces the same ``mctx.Tree``, actions and action weights as
mctx's policies for the same inputs and keys (bit-identical in our tests on
CPU), but runs every phase batch-first:

* descent: one ``while_loop`` over depth for the whole batch.  All examples
  start at the root together and go down one level per iteration, so the
  depth is shared; examples that stopped keep their node and action.  One
  iteration reads one contiguous node record per example (``O(B * A)``).
* expansion: one network call and ``O(B * A)`` scatters with explicit batch
  indices.
* backup: one ``while_loop`` over depth that walks the ``B`` paths up in
  lockstep, reading and writing ``O(B)`` elements per step (examples that
  already reached the root write out of bounds, which XLA drops).
* both loops continue on a compacted sub-batch once at most a quarter of the
  examples is still active (for ``B >= 64``);
* with a ``mesh``, the batch is split over devices and each device runs this
  search on its examples alone (``shard_map``, see ``search``).

Further choices made for speed on CPU, none of which changes a result bit:

* the tree is stored packed (see "Packed tree storage" below) and unpacked
  into a ``mctx.Tree`` once, at the end;
* for MuZero and Stochastic MuZero, the edge records hold the softmax of the
  prior logits, computed once per node when it is expanded, instead of at
  every visit of the node (the logits are kept apart, see ``_Store.logits``;
  on every platform);
* on CPU, the PUCT tie-breaking noise (``1e-7 * uniform``) of MuZero and of
  Stochastic MuZero's decision nodes is only drawn in the steps where it can
  change an argmax (see ``_batched_puct``, ``_batched_stochastic``);
* random bits come from an unrolled threefry in jnp, bit-identical to
  ``jax.random`` (whose CPU lowering is a rolled loop, see "Random keys");
* argmax over many actions uses two integer reductions (``_argmax``).

The CPU-only choices (flat gathers, compaction, lazy noise, integer argmax)
are made for the platform the program is lowered for: the search loop is
traced twice, for XLA:CPU and for any other platform, under
``jax.lax.platform_dependent`` (``_per_platform``), and JAX lowers only the
branch of the compiling platform.  A search placed on the CPU by any means
(``jax.jit(..., device=...)``, committed inputs, ``jax.default_device``) thus
gets the CPU layouts, also on a GPU host.  The second trace costs about
0.1 to 0.3 s of compile time; the compiled program is unchanged.  (Older
JAX, e.g. 0.4.30, lowers both branches, switched on a constant, and XLA's
compiler drops the other one: the same program, more compile work.)  The
``recurrent_fn`` and ``qtransform`` are traced twice too (Python side effects
in them run twice).  With a ``loop_fn`` other than ``jax.lax.fori_loop``
(e.g. Haiku's ``hk.fori_loop``, whose state handling must not sit inside a
raw ``lax.switch``) the search is traced once, with the layouts of the
platform JAX expects at trace time (``_platform``).

The user's ``qtransform`` (an mctx-style function of an *unbatched* tree and a
node index) is applied to a one-node view of the tree that holds only the
rows of the nodes being evaluated, vmapped over the batch (``O(B * A)``).  A
custom qtransform may therefore only read the row of ``node_index``, which is
true of all of mctx's qtransforms.  Search values are stored as float32; for
other dtypes the policies delegate to mctx.
"""

import contextlib
import functools
import inspect
import math
import os
import re
import threading
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import mctx
from mctx._src import base as _mctx_base

from mctx_planner import _dirichlet, _native
from mctx_planner._compat import key_impl_name

Tree = mctx.Tree

__all__ = [
    "search",
    "muzero_policy",
    "gumbel_muzero_policy",
    "stochastic_muzero_policy",
]

# A batched selection function:
#   (level keys [B], view, depth, active [B], probs) -> actions [B] int32
# The level keys are the per-example keys of the descent at this level; the
# selection keys that mctx hands its selection functions are
# `_selection_keys(level_keys)`.  A selection computes them only where it
# uses them (on CPU, MuZero draws its tie-breaking noise only when a near-tie
# needs it, see `_batched_puct`), so that unused keys cost no kernel.
# `view` is a `Tree` holding one node per example (leaves `[B, 1, ...]`, see
# `_node_view`).  `depth` is the Python int 0 at the root and a traced scalar
# (the depth of the node, in the tree's float dtype, as in mctx) below it.
# Actions of examples that are not `active` are discarded by the caller.
# `probs` ([B, A] float32) is the search's `prior_probs` of the nodes'
# prior logits where the store keeps them (MuZero's PUCT, Stochastic MuZero;
# see `_Store.logits`), else None.
BatchedSelectFn = Callable[[chex.PRNGKey, Tree, Any, chex.Array,
                            Optional[chex.Array]], chex.Array]


def _per_node(fn) -> BatchedSelectFn:
  """Lifts `fn(key, one_node_tree, depth)` (mctx style) to a batched one."""

  def batched(keys, view, depth, active, probs):
    del active, probs
    return jax.vmap(fn, in_axes=(0, 0, None))(_selection_keys(keys), view,
                                              depth)

  return batched


# --------------------------------------------------------------------------
# Packed tree storage.
#
# The descent reads, per example and step, everything mctx keeps about the
# edges of one node.  In `mctx.Tree` these are 6 separate `[B, N, A]` arrays,
# so one step costs 6 scattered row reads per example (cache misses dominate
# on CPU).  Here the per-edge fields are interleaved in one int32 array
# `edges[B, N, A, 6]` (floats are stored by bit pattern), so one node is one
# contiguous record.  Node fields are split by who writes them: `stats`
# (changed by the backup) and `links` (written once by the expansion), so
# that the backup reads each array it writes at a single place and XLA can
# update it in place.  `_to_tree` unpacks into a `mctx.Tree` at the end.
# --------------------------------------------------------------------------

# Node indices and actions are stored plus one, so that zero means "none"
# (`Tree.UNVISITED`, `Tree.NO_PARENT`) and all storage starts as zeros.

# edges[b, n, a, :]
_E_LOGIT, _E_VALUE, _E_VISITS, _E_REWARD, _E_DISCOUNT, _E_CHILD = range(6)
# stats[b, n, :]
_S_VISITS, _S_VALUE, _S_RAW = range(3)
# links[b, n, :] (reward and discount of the edge into the node)
_L_PARENT, _L_ACTION, _L_REWARD, _L_DISCOUNT = range(4)


class _Store(NamedTuple):
  edges: chex.Array  # int32 [B, N, A, 6]
  stats: chex.Array  # int32 [B, N, 3]
  links: chex.Array  # int32 [B, N, 4]
  embeddings: Any  # [B, N, ...]
  # None, or float32 [B, N, A]: the prior logits, while the edge records hold
  # their probabilities instead (`_E_LOGIT` then holds `prior_probs(logits)`,
  # see `search`).  The PUCT selections read the probabilities at every level
  # of every descent; this way they are computed once per node, at its
  # expansion, and the records keep their size (the logits are read only by
  # a qtransform that uses them and by `_to_tree`).  With 64 actions this
  # made muzero 1.12x-1.25x faster on CPU, with 9 actions 1.00x-1.09x (same
  # outputs).
  logits: Any = None
  # None, or float32 [B, N, A]: the native Gumbel descent's cache of the
  # nodes' prior probabilities (see `_native.gumbel_descend`).
  prior_cache: Any = None
  # None, or uint32 [B, N, W] (`_native.select_cache_shape`): the native
  # MuZero descent's cache of each node's visited children and best unvisited
  # ones (see `_native.muzero_descend`).
  select_cache: Any = None
  # None, or uint32 [B, N, 16] (`_native.gumbel_rows_shape`): the native
  # Gumbel descent's rows of narrow nodes (see `_native.gumbel_descend`).
  gumbel_rows: Any = None


def _bits(x):
  """float32 / int32 -> int32 bit pattern."""
  x = jnp.asarray(x)
  if x.dtype == jnp.int32:
    return x
  return jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)


def _f32(x):
  return jax.lax.bitcast_convert_type(x, jnp.float32)


# Whether the native `store_init` advises the kernel to back the store with
# transparent huge pages (`MCTX_PLANNER_HUGE_PAGES=0`: no; a switch for
# `benchmarks/native_ab.py --huge-pages`, read at trace time).
_HUGE_PAGES = os.environ.get("MCTX_PLANNER_HUGE_PAGES", "1") != "0"


def _whole_bytes(dtype) -> bool:
  """Whether elements of `dtype` take whole bytes (not int4's packed
  halves), as `_native.store_init` copies rows by bytes."""
  bits = getattr(jax.dtypes, "itemsize_bits", None)
  return (bits(dtype) if bits else 8 * jnp.dtype(dtype).itemsize) % 8 == 0


def _store_array(first: chex.Array, num_nodes: int, native: bool) -> chex.Array:
  """`[B, num_nodes, ...]`: node 0 is `first[B, ...]`, the others zeros.
  With `native` (the CPU kernels in use) and whole-byte elements, written by
  `_native.store_init`, in memory advised for huge pages unless
  `_HUGE_PAGES` is off; else by XLA."""
  if native and _whole_bytes(first.dtype):
    return _native.store_init(first, num_nodes, advise=_HUGE_PAGES)
  return jnp.zeros((first.shape[0], num_nodes) + first.shape[1:],
                   first.dtype).at[:, 0].set(first)


def _init_store(root: mctx.RootFnOutput, num_simulations: int,
                prior_probs: Optional[Callable] = None,
                native: bool = False) -> _Store:
  """Allocates storage for `S + 1` nodes and writes the root (node 0).

  With `prior_probs`, the edge records hold `prior_probs(logits)` and the
  logits go to `_Store.logits`.  `native`: as `_store_array`.
  """
  chex.assert_rank(root.prior_logits, 2)
  batch_size, num_actions = root.prior_logits.shape
  chex.assert_shape(root.value, [batch_size])
  n = num_simulations + 1

  first_node = lambda x: _store_array(x, n, native)

  edge0 = jnp.zeros([batch_size, num_actions, 6], jnp.int32)
  edge0 = edge0.at[..., _E_LOGIT].set(_bits(
      root.prior_logits if prior_probs is None
      else prior_probs(root.prior_logits)))
  edges = first_node(edge0)
  stat0 = jnp.stack([jnp.ones([batch_size], jnp.int32), _bits(root.value),
                     _bits(root.value)], axis=-1)
  stats = first_node(stat0)
  links = first_node(jnp.zeros([batch_size, 4], jnp.int32))

  return _Store(edges=edges, stats=stats, links=links,
                embeddings=jax.tree.map(first_node, root.embedding),
                logits=(None if prior_probs is None
                        else first_node(root.prior_logits)))


# Whether the returned tree comes from `_native.unpack_edges` where the
# kernels are in use (a switch for `benchmarks/native_ab.py --unpack`).
_NATIVE_UNPACK = True


def _to_tree(store: _Store, value_dtype, logits_dtype, invalid_actions,
             extra_data, native: bool = False,
             child_stats: bool = False, root_only: bool = False) -> Tree:
  """The store as mctx's `Tree`.  With `native` (XLA:CPU, kernels loaded)
  the `[B, N, A]` arrays come from one pass over the edge store
  (`_native.unpack_edges`) instead of one XLA pass per array.
  `child_stats`: the edges' visit counts and values may be stale (the native
  backup with MuZero's selection-cache rows leaves some: `LazyEdges` in
  tree_kernels.cc), so an expanded child's come from its statistics, as
  the native unpack always takes them.

  `root_only`: a one-node tree of the root (`[B, 1, ...]` arrays, the
  children's numbers from their statistics), sliced from the store by XLA.
  The policies compute their outputs from it, not from the whole tree, so
  that a caller who drops the whole tree (self-play keeps the action, the
  weights and the root value) lets XLA drop its unpack too: 438 MB of
  output at B = 1024, S = 256 with 64 actions (`_native.unpack_edges` is
  free of side effects)."""
  e, st, ln = store.edges, store.stats, store.links
  node_st, embeddings, logits = st, store.embeddings, store.logits
  if root_only:
    e, ln, node_st = e[:, :1], ln[:, :1], st[:, :1]
    embeddings = jax.tree.map(lambda x: x[:, :1], embeddings)
    logits = None if logits is None else logits[:, :1]
    native, child_stats = False, True
  if native:
    index, visits, rewards, discounts, values, edge_logits = (
        _native.unpack_edges(e, st, with_logits=logits is None))
  else:
    index, visits = e[..., _E_CHILD] - 1, e[..., _E_VISITS]
    values = e[..., _E_VALUE]
    if child_stats:
      child = jax.vmap(lambda s, c: s[c])(st, jnp.maximum(index, 0))
      visits = jnp.where(index >= 0, child[..., _S_VISITS], visits)
      values = jnp.where(index >= 0, child[..., _S_VALUE], values)
    rewards, discounts, values = (_f32(x) for x in (
        e[..., _E_REWARD], e[..., _E_DISCOUNT], values))
    edge_logits = _f32(e[..., _E_LOGIT]) if logits is None else None
  return Tree(
      node_visits=node_st[..., _S_VISITS],
      raw_values=_f32(node_st[..., _S_RAW]).astype(value_dtype),
      node_values=_f32(node_st[..., _S_VALUE]).astype(value_dtype),
      parents=ln[..., _L_PARENT] - 1,
      action_from_parent=ln[..., _L_ACTION] - 1,
      children_index=index,
      children_prior_logits=(
          edge_logits if logits is None else logits).astype(logits_dtype),
      children_visits=visits,
      children_rewards=rewards.astype(value_dtype),
      children_discounts=discounts.astype(value_dtype),
      children_values=values.astype(value_dtype),
      embeddings=embeddings,
      root_invalid_actions=invalid_actions,
      extra_data=extra_data)


# Measured on XLA:CPU (jax 0.10): gathering the edge records of the nodes as
# rows of the flattened `[B * N, A, 6]` store is 5-13% faster (whole search)
# than the two-index gather `edges[b, node]` with 9 actions, and 20% slower
# with 64 actions.  Other backends keep the two-index gathers (as measured on
# GPU).
_FLAT_RECORD_MAX_ACTIONS = 16


# The name `_platform()` gives while tracing the search for any platform but
# the CPU (`jax.lax.platform_dependent`'s default branch).
_ACCELERATOR = "accelerator"
_TRACING = threading.local()


@contextlib.contextmanager
def _tracing_for(platform: str):
  """Within: `_platform()` is `platform` (the branch being traced)."""
  saved = getattr(_TRACING, "platform", None)
  _TRACING.platform = platform
  try:
    yield
  finally:
    _TRACING.platform = saved


def _per_platform(fn):
  """`fn()` traced twice, for XLA:CPU and for any other platform, under
  `jax.lax.platform_dependent`: JAX lowers only the branch of the platform
  the program is compiled for, so the layout choices below follow the
  device a search finally runs on (`jax.jit(..., device=...)`, committed
  inputs, `jax.default_device`, AOT lowering), not a guess at trace time."""
  def branch(platform):
    def traced():
      with _tracing_for(platform):
        return fn()
    return traced
  return jax.lax.platform_dependent(cpu=branch("cpu"),
                                    default=branch(_ACCELERATOR))


def _platform() -> str:
  """The platform the search is being traced for: `"cpu"` or `_ACCELERATOR`
  inside `_per_platform`; elsewhere (a custom `loop_fn`) JAX's best guess:
  the `jax.default_device` in effect (a device or a platform name), else the
  default backend."""
  traced = getattr(_TRACING, "platform", None)
  if traced is not None:
    return traced
  return default_platform()


def default_platform() -> str:
  """The platform JAX places a computation on by default: that of the
  `jax.default_device` in effect (a device or a platform name), else the
  default backend (`"cpu"`, `"gpu"`, `"tpu"`, ...)."""
  device = jax.config.jax_default_device
  if device is None:
    return jax.default_backend()
  return device if isinstance(device, str) else device.platform


def _on_cpu() -> bool:
  """Whether the search is being traced for XLA:CPU (see `_platform`).

  Choices made on XLA:CPU only: flat row gathers and the integer-key argmax
  (measured to pay there only), and MuZero's lazily drawn tie-breaking
  noise (`_batched_puct`; loop compaction: `_COMPACT_BACKENDS`).
  """
  return _platform() == "cpu"


def _rows(x, ex, node):
  """`x[ex, node]` for `x` of shape `[B, N, ...]` (rows of examples' nodes).

  On CPU, written as a gather of rows of `x` viewed as `[B * N, ...]` (a
  free reshape), a simpler loop for XLA:CPU than a gather with two index
  dimensions for small rows.  Indices must be in bounds.
  """
  if not _on_cpu():
    return x[ex, node]
  batch_size, num_nodes = x.shape[:2]
  flat = x.reshape((batch_size * num_nodes,) + x.shape[2:])
  return flat.at[ex * num_nodes + node].get(mode="promise_in_bounds")


def _set_fields(x, row, fields: slice, value):
  """Sets `fields` of rows `row` of `x` viewed as `[rows, fields]`.

  `x` is `[B, N, F]` or `[B, N, A, F]` (flat rows `b * N + n` or
  `(b * N + n) * A + a`); rows out of bounds are dropped; `row` must hold no
  duplicates, out-of-bounds rows included (the scatter promises unique
  indices).
  """
  flat = x.reshape((-1, x.shape[-1]))
  flat = flat.at[row, fields].set(value, mode="drop", unique_indices=True)
  return flat.reshape(x.shape)


def _node_view(store: _Store, ex: chex.Array, node: chex.Array,
               invalid_actions,
               extra_data) -> Tuple[Optional[chex.Array], Tree]:
  """`(probs, view)`: a `Tree` of one node per example (node `node[i]` of
  example `ex[i]`), and its prior probabilities if the store keeps them
  (`[K, A]`, see `_Store.logits`; else None).

  Leaves are `[K, 1, ...]` (`root_invalid_actions` and `extra_data` are the
  rows of the examples), so mctx-style per-example functions can be vmapped
  over it with node index 0.  Unused fields are removed by XLA.
  """
  # One contiguous record per example: [K, 1, A, 6].
  if store.edges.shape[2] <= _FLAT_RECORD_MAX_ACTIONS:  # (flat on CPU only)
    rec = _rows(store.edges, ex, node)[:, None]
  else:
    rec = store.edges[ex, node][:, None]
  st = _rows(store.stats, ex, node)[:, None]
  ln = _rows(store.links, ex, node)[:, None]
  if store.logits is None:
    probs, logits = None, _f32(rec[..., _E_LOGIT])
  else:
    probs, logits = _f32(rec[:, 0, :, _E_LOGIT]), _rows(store.logits, ex,
                                                         node)[:, None]
  return probs, Tree(
      node_visits=st[..., _S_VISITS],
      raw_values=_f32(st[..., _S_RAW]),
      node_values=_f32(st[..., _S_VALUE]),
      parents=ln[..., _L_PARENT] - 1,
      action_from_parent=ln[..., _L_ACTION] - 1,
      children_index=rec[..., _E_CHILD] - 1,
      children_prior_logits=logits,
      children_visits=rec[..., _E_VISITS],
      children_rewards=_f32(rec[..., _E_REWARD]),
      children_discounts=_f32(rec[..., _E_DISCOUNT]),
      children_values=_f32(rec[..., _E_VALUE]),
      embeddings=jax.tree.map(lambda x: _rows(x, ex, node)[:, None],
                              store.embeddings),
      root_invalid_actions=invalid_actions,
      extra_data=extra_data)


# --------------------------------------------------------------------------
# Random keys.
#
# On CPU, JAX lowers the threefry hash to a rolled 5-step `while` loop, so
# every `split`/`uniform` inside the descent costs one extra XLA loop per
# depth step (~0.4 ms per step at B=1024).  When keys are threefry keys with
# JAX's default (partitionable) bit layout, we compute the very same bits
# with an unrolled threefry written in jnp, which XLA fuses into one kernel.
# Otherwise we fall back to `jax.random`.
# --------------------------------------------------------------------------

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k1, k2, x1, x2):
  """Threefry-2x32 block cipher (20 rounds), elementwise on uint32 arrays."""
  ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(0x1BD11BDA))
  x1 = x1 + ks[0]
  x2 = x2 + ks[1]
  for block in range(5):
    for r in _ROTATIONS[block % 2]:
      x1 = x1 + x2
      x2 = (x2 << jnp.uint32(r)) | (x2 >> jnp.uint32(32 - r))
      x2 = x1 ^ x2
    x1 = x1 + ks[(block + 1) % 3]
    x2 = x2 + ks[(block + 2) % 3] + jnp.uint32(block + 1)
  return x1, x2


def _own_threefry_ok() -> bool:
  return (str(jax.config.jax_default_prng_impl) == "threefry2x32" and
          bool(jax.config.jax_threefry_partitionable))


def _is_raw_key(key) -> bool:
  return key.dtype == jnp.uint32 and key.shape[-1:] == (2,)


def _as_raw_keys(keys):
  """Raw `uint32[..., 2]` threefry keys if our threefry applies, else None."""
  if not _own_threefry_ok():
    return None
  if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
    if key_impl_name(keys) != "threefry2x32":
      return None
    return jax.random.key_data(keys)
  return keys if _is_raw_key(keys) else None


def _split_raw(key, num: int, offset=0):
  """`jax.random.split(key, offset + num)[offset:]` for one raw threefry key
  `uint32[2]` (`offset` may be traced)."""
  counters = jnp.arange(num, dtype=jnp.uint32) + jnp.asarray(offset, jnp.uint32)
  bits1, bits2 = _threefry2x32(key[..., 0, None], key[..., 1, None],
                               jnp.zeros([num], jnp.uint32), counters)
  return jnp.stack([bits1, bits2], axis=-1)


def _split_key(key, num: int):
  """`jax.random.split(key, num)` for one key, typed or raw, with the same
  bits and key type; by our fused threefry where it applies.  JAX's is a
  rolled loop of small XLA kernels on CPU: in the simulation loop it took 7
  of the 34 kernels per simulation, and MuZero with 64 actions at B = 64,
  S = 64 was 1.05x faster without it (other cells 1.00x to 1.01x)."""
  raw = _as_raw_keys(key)
  if raw is None or raw.shape != (2,):
    return jax.random.split(key, num)
  keys = _split_raw(raw, num)
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(keys, impl=jax.random.key_impl(key))
  return keys


def _uniform01(key, shape):
  """`jax.random.uniform(key, shape)` (float32 in [0, 1))."""
  dtype = jnp.asarray(0.).dtype
  if not (_is_raw_key(key) and key.ndim == 1 and dtype == jnp.float32 and
          _own_threefry_ok()):
    return jax.random.uniform(key, shape)
  size = math.prod(shape)
  bits1, bits2 = _threefry2x32(key[0], key[1], jnp.zeros([size], jnp.uint32),
                               jnp.arange(size, dtype=jnp.uint32))
  mantissa = ((bits1 ^ bits2) >> jnp.uint32(9)) | jnp.uint32(0x3F800000)
  floats = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0
  return floats.reshape(shape)


def _split_batch(key, num: int, offset, count: int):
  """`jax.random.split(key, num)[offset:offset + count]`.  With our threefry
  only the slice's keys are computed; otherwise all `num` are split and
  sliced."""
  raw = _as_raw_keys(key)
  if raw is not None:
    return _split_raw(raw, count, offset)
  keys = jax.random.split(key, num)
  return keys if count == num else jax.lax.dynamic_slice_in_dim(keys, offset, count)


def _split_part(keys, part: int):
  """Per example: `split(key)[part]`.  mctx's simulate does
  `(key, selection_key) = split(key)` at every level; the two halves are
  computed apart, so that the selection keys cost nothing where a selection
  does not use them (see `BatchedSelectFn`)."""
  if _is_raw_key(keys) and keys.ndim == 2 and _own_threefry_ok():
    return jax.vmap(lambda k: _split_raw(k, 1, part)[0])(keys)
  return jax.vmap(lambda k: jax.random.split(k)[part])(keys)


def _next_keys(keys):
  """Per example: the key of the next level, `split(key)[0]`."""
  return _split_part(keys, 0)


def _selection_keys(keys):
  """Per example: the selection key of this level, `split(key)[1]`."""
  return _split_part(keys, 1)


# Lockstep loops waste work on examples whose path already ended.  Once at
# most 1/_COMPACT of the batch is still active, the loop continues on a
# compacted sub-batch of `B // _COMPACT` examples (for `B >= _COMPACT_MIN`).
# Measured (jax 0.10, 2-core CPU, same process): from B = 64 the compacted
# phase saves 2-14% (one device, and per device when the batch is split);
# below, it is within noise either way.  On a GPU (H200, jax 0.11.2) it cost
# 3-35% at every B from 64 to 1024 (idle lanes are free there; the extra
# nonzero, gathers and second loop are not), so it is used on CPU only
# (benchmarks/compaction_ab.py measures both).
_COMPACT = 4
_COMPACT_MIN = 64
_COMPACT_BACKENDS = ("cpu",)


def _compacted_loop(active_fn, body_fn, pad_fn, shared, rows,
                    batch_size: int):
  """`while any(active_fn(rows)): shared, rows = body_fn(ex, shared, rows)`.

  `rows` holds per-example arrays (leading axis: examples), `shared` anything
  else (e.g. the tree, indexed by example id).  `body_fn` gets the example
  ids `ex` of the rows (None: all, in order).  Once few examples are active,
  the remaining iterations run on a compacted `rows` of `B // _COMPACT`
  examples; its padding rows are made inactive by `pad_fn(rows, valid)`.
  """
  def loop(cond, ex, state):
    return jax.lax.while_loop(
        lambda st: cond(active_fn(st[1])),
        lambda st: body_fn(ex, *st), state)

  if batch_size < _COMPACT_MIN or _platform() not in _COMPACT_BACKENDS:
    return loop(jnp.any, None, (shared, rows))
  k = batch_size // _COMPACT
  shared, rows = loop(lambda a: jnp.sum(a) > k, None, (shared, rows))
  ids = jnp.nonzero(active_fn(rows), size=k, fill_value=batch_size)[0]
  sub_ex = jnp.minimum(ids, batch_size - 1)
  sub = pad_fn(jax.tree.map(lambda x: x[sub_ex], rows), ids < batch_size)
  shared, sub = loop(jnp.any, sub_ex, (shared, sub))
  rows = jax.tree.map(lambda x, y: x.at[ids].set(y, mode="drop"), rows, sub)
  return shared, rows


def _root_step(keys, store: _Store, invalid_actions, extra_data,
               root_select: BatchedSelectFn):
  """`(action, child)`, each `[B]`: `root_select`'s action at every root
  and the root's child by that action (`Tree.UNVISITED` if none)."""
  batch_size = store.edges.shape[0]
  probs, view = _node_view(store, jnp.arange(batch_size),
                           jnp.zeros([batch_size], jnp.int32),
                           invalid_actions, extra_data)
  action = root_select(keys, view, 0, jnp.ones([batch_size], bool), probs)
  child = jnp.take_along_axis(view.children_index[:, 0], action[:, None],
                              axis=-1)[:, 0]
  return action, child


def _descend(keys: chex.PRNGKey, store: _Store, invalid_actions, extra_data,
             root_select: BatchedSelectFn, interior_select: BatchedSelectFn,
             max_depth: int) -> Tuple[chex.Array, chex.Array, chex.Array]:
  """Batched equivalent of mctx's vmapped `simulate`.

  Returns `(node, action, child)`, each `[B]`: the node reached, the action
  to expand from it and `children_index[node, action]`.
  """
  batch_size = store.edges.shape[0]
  b = jnp.arange(batch_size)

  def step(ex, keys, node, depth, active, select):
    if ex is None:
      probs, view = _node_view(store, b, node, invalid_actions, extra_data)
    else:
      probs, view = _node_view(store, ex, node, invalid_actions[ex],
                               jax.tree.map(lambda x: x[ex], extra_data))
    action = select(keys, view, depth, active, probs)
    child = jnp.take_along_axis(view.children_index[:, 0], action[:, None],
                                axis=-1)[:, 0]
    return _next_keys(keys), action, child

  node = jnp.zeros([batch_size], jnp.int32)
  action, child = _root_step(keys, store, invalid_actions, extra_data,
                             root_select)
  keys = _next_keys(keys)
  depth = jnp.ones((), jnp.int32)
  active = (child != Tree.UNVISITED) & (depth < max_depth)

  def body(ex, depth, rows):
    keys, node, action, child, active = rows
    node = jnp.where(active, child, node)
    # mctx tracks the depth in the dtype of the prior logits (float32 here).
    keys, new_action, new_child = step(ex, keys, node,
                                       depth.astype(jnp.float32), active,
                                       interior_select)
    action = jnp.where(active, new_action, action)
    child = jnp.where(active, new_child, child)
    depth = depth + 1
    active = active & (child != Tree.UNVISITED) & (depth < max_depth)
    return depth, (keys, node, action, child, active)

  def pad(rows, valid):
    return rows[:-1] + (rows[-1] & valid,)

  _, (_, node, action, child, _) = _compacted_loop(
      lambda rows: rows[-1], body, pad, depth,
      (keys, node, action, child, active), batch_size)
  return node, action, child


def _after_read(new, old, holds):
  """`new`, made to depend on `old` for XLA: `where(holds, new, old)` per
  leaf, where `holds` ([B] bool) is always true but XLA cannot know it.

  The expansion writes each new embedding leaf into its `[B, N, ...]` store
  in place only if XLA can order that write after the read of the parent's
  row of the same store, i.e. if the new value depends on the row read.  A
  leaf computed from *other* leaves only breaks this (Stochastic MuZero: the
  next state comes from the afterstate, the afterstate from the state), and
  XLA then copies the whole store, twice, at every simulation (the planner on
  2048 with `stochastic_muzero` was 2.2x-6.3x slower).  An
  `optimization_barrier` does not order them for XLA:CPU's copy insertion;
  this select does, and changes no bit.  It cost 1.5-3.5% where it is not
  needed on a single-leaf latent (the benchmarks' MLP), so the expansion
  applies it to embeddings of several leaves only (there it cost nothing
  measurable: 0.995x-1.000x with the domain states of tic-tac-toe, Connect
  Four, the maze and the recommendation domain).
  """
  def leaf(n, o):
    keep = jnp.reshape(holds, (-1,) + (1,) * (n.ndim - 1))
    return jnp.where(keep, n, o.astype(n.dtype))
  return jax.tree.map(leaf, new, old)


def _expand(params, rng_key, store: _Store, recurrent_fn, parent: chex.Array,
            action: chex.Array, child: chex.Array, prior_probs=None,
            native_backup: bool = False, select_rows: bool = False,
            descend_next=None):
  """Evaluates `(parent, action)` and writes the result at node `child`
  (`prior_probs`: as `_init_store`), then backs it up.

  With `native_backup`, the writes to the packed records (stats, links,
  edges) and the backup are one native call (`_native.expand_backup`);
  XLA writes the embeddings and the logits.  Else `_backup` follows.  With
  `select_rows` too, that call also writes the rows of `store.select_cache`
  (unmasked, up to 64 actions) that the expansion changes.

  `descend_next`: None, or with `select_rows` the operands of the next
  simulation's MuZero descent `(invalid_actions, raw keys, scale,
  max_depth, whether to descend)`, run in the same native call
  (`_native.expand_descend`); then `(store, (parent, action, child))` is
  returned instead of the store."""
  batch_size, _, num_actions, _ = store.edges.shape
  b = jnp.arange(batch_size)
  parent_embedding = jax.tree.map(lambda x: _rows(x, b, parent),
                                  store.embeddings)
  step, embedding = recurrent_fn(params, rng_key, action, parent_embedding)
  if len(jax.tree.leaves(embedding)) > 1:
    embedding = _after_read(embedding, parent_embedding, parent >= 0)
  chex.assert_shape(step.prior_logits, [batch_size, num_actions])
  chex.assert_shape([step.reward, step.discount, step.value], (batch_size,))

  def put(x, v, *idx):
    return x.at[(b,) + idx].set(v, unique_indices=True)

  embeddings = jax.tree.map(lambda x, v: put(x, v, child), store.embeddings,
                            embedding)
  logits = (None if store.logits is None
            else put(store.logits, step.prior_logits, child))
  if native_backup:
    record = (step.prior_logits if store.logits is None
              else prior_probs(step.prior_logits))
    if descend_next is not None:
      *fields, parent, action, child = _native.expand_descend(
          store.stats, store.edges, store.links, parent, action, child,
          step.value, step.reward, step.discount, record,
          store.select_cache, *descend_next, lazy_edges=_LAZY_EDGES)
      stats, edges, links, rows = fields
      return store._replace(edges=edges, stats=stats, links=links,
                            embeddings=embeddings, logits=logits,
                            select_cache=rows), (parent, action, child)
    if store.gumbel_rows is not None:
      stats, edges, links, gumbel_rows = _native.expand_backup_gumbel(
          store.stats, store.edges, store.links, parent, action, child,
          step.value, step.reward, step.discount, record, store.gumbel_rows)
      return store._replace(edges=edges, stats=stats, links=links,
                            embeddings=embeddings, logits=logits,
                            gumbel_rows=gumbel_rows)
    stats, edges, links, rows = _native.expand_backup(
        store.stats, store.edges, store.links, parent, action, child,
        step.value, step.reward, step.discount, record,
        rows=store.select_cache if select_rows else None,
        lazy_edges=_LAZY_EDGES)
    return store._replace(
        edges=edges, stats=stats, links=links, embeddings=embeddings,
        logits=logits,
        select_cache=rows if select_rows else store.select_cache)

  # With `max_depth`, an existing node can be evaluated again: it is then
  # overwritten and its visit count incremented, as in mctx.
  visits = store.stats[b, child, _S_VISITS] + 1
  stats = put(store.stats, jnp.stack(
      [visits, _bits(step.value), _bits(step.value)], -1), child)
  links = put(store.links, jnp.stack(
      [parent + 1, action + 1, _bits(step.reward), _bits(step.discount)],
      -1), child)
  if store.logits is None:
    edges = put(store.edges, _bits(step.prior_logits), child, slice(None),
                _E_LOGIT)
  else:
    edges = put(store.edges, _bits(prior_probs(step.prior_logits)), child,
                slice(None), _E_LOGIT)
  edge = jnp.stack([_bits(step.reward), _bits(step.discount), child + 1], -1)
  edges = put(edges, edge, parent, action, slice(_E_REWARD, _E_CHILD + 1))
  return _backup(store._replace(edges=edges, stats=stats, links=links,
                                embeddings=embeddings, logits=logits), child)


def _backup(store: _Store, leaf: chex.Array) -> _Store:
  """Batched equivalent of mctx's vmapped `backward`.

  All paths go up one level per iteration; the loop runs until every example
  reached the root.  Examples already at the root write to the out-of-bounds
  node `N`, which the scatters drop.

  The edge `(parent, action)` into `node` always has
  `children_values == node_values[node]` and
  `children_visits == node_visits[node]` once a simulation is complete (both
  are set together, by the backup through that edge, after any change of the
  node), so the new edge statistics are the ones `node` has just received
  (from `expand` for the leaf, from the previous iteration otherwise).
  """
  batch_size, num_nodes = store.stats.shape[:2]
  num_actions = store.edges.shape[2]
  links = store.links
  leaf = jnp.asarray(leaf, jnp.int32)

  def body(ex, shared, rows):
    b = jnp.arange(batch_size) if ex is None else ex
    stats, edges = shared
    value, node_value, node_visit, node = rows
    active = node != Tree.ROOT_INDEX
    link = _rows(links, b, node)
    parent = jnp.where(active, link[:, _L_PARENT] - 1, Tree.ROOT_INDEX)
    action = link[:, _L_ACTION] - 1
    parent_stat = _rows(stats, b, parent)
    count = parent_stat[:, _S_VISITS]
    new_value = _f32(link[:, _L_REWARD]) + _f32(link[:, _L_DISCOUNT]) * value
    parent_value = (_f32(parent_stat[:, _S_VALUE]) * count + new_value) / (
        count + 1.0)

    # Rows of the flattened `[B * N, ...]` arrays; inactive examples write
    # out of bounds (to distinct rows, as the scatters promise unique
    # indices), which the scatters drop.
    row = b * num_nodes + parent
    out = batch_size * num_nodes + jnp.arange(b.shape[0])
    stats = _set_fields(stats, jnp.where(active, row, out),
                        slice(_S_VISITS, _S_VALUE + 1),
                        jnp.stack([count + 1, _bits(parent_value)], -1))
    edges = _set_fields(edges,
                        jnp.where(active, row * num_actions + action,
                                  out * num_actions),
                        slice(_E_VALUE, _E_VISITS + 1),
                        jnp.stack([_bits(node_value), node_visit], -1))
    value = jnp.where(active, new_value, value)
    node_value = jnp.where(active, parent_value, node_value)
    node_visit = jnp.where(active, count + 1, node_visit)
    return (stats, edges), (value, node_value, node_visit, parent)

  def pad(rows, valid):
    return rows[:-1] + (jnp.where(valid, rows[-1], Tree.ROOT_INDEX),)

  b = jnp.arange(batch_size)
  leaf_stat = _rows(store.stats, b, leaf)
  leaf_value = _f32(leaf_stat[:, _S_VALUE])
  (stats, edges), _ = _compacted_loop(
      lambda rows: rows[-1] != Tree.ROOT_INDEX, body, pad,
      (store.stats, store.edges),
      (leaf_value, leaf_value, leaf_stat[:, _S_VISITS], leaf), batch_size)
  return store._replace(stats=stats, edges=edges)


def _store_copies(hlo_text: str, batch: int,
                  num_nodes: int) -> List[Tuple[str, str]]:
  """`(instruction, shape)` of every `copy` of a `[batch, num_nodes, ...]`
  array of rank 3 or more (the tree stores) in a compiled program's HLO text
  (`compiled.as_text()`).

  A diagnostic for tests and `benchmarks/profile_search.py`: inside the
  simulation loop, each such copy is a pass over a whole tree store per
  simulation (or per level), the waste that cost stochastic_muzero up to
  3.4x before its embedding stores were updated in place (`_after_read`).
  """
  pattern = re.compile(rf"^\s*(?:ROOT )?%(\S+) = (\w+\[{batch},{num_nodes},"
                       rf"[^ ]*) copy\(")
  return [m.groups() for m in map(pattern.match, hlo_text.splitlines()) if m]


def _packable(root: mctx.RootFnOutput) -> bool:
  """Whether the fast search applies: float32 roots, and no x64 (with x64,
  JAX promotes parts of mctx's arithmetic, e.g. the Dirichlet noise, to
  float64, which the float32 store cannot hold; the policies then run mctx
  itself)."""
  return (root.prior_logits.dtype == jnp.float32 and
          root.value.dtype == jnp.float32 and
          not jax.config.jax_enable_x64)


def search(params: chex.ArrayTree,
           rng_key: chex.PRNGKey,
           *,
           root: mctx.RootFnOutput,
           recurrent_fn: mctx.RecurrentFn,
           root_select: BatchedSelectFn,
           interior_select: BatchedSelectFn,
           num_simulations: int,
           max_depth: Optional[int] = None,
           invalid_actions: Optional[chex.Array] = None,
           extra_data: Any = None,
           loop_fn: mctx.LoopFn = jax.lax.fori_loop,
           mesh: Optional[jax.sharding.Mesh] = None,
           batch_axis: str = "batch",
           prior_probs: Optional[Callable] = None,
           native_puct: Optional[Tuple[Any, Any, Optional[float]]] = None,
           gumbel_qtransform: Optional[Callable] = None,
           gumbel_table: Optional[chex.Array] = None) -> Tuple[Tree, Tree]:
  """Batch-first counterpart of `mctx.search` (same tree, same key usage).

  Returns the tree and its root alone (`[B, 1, ...]`, see `_to_tree`'s
  `root_only`), from which the policies compute their outputs.

  `root_select` / `interior_select` are batched selection functions (see
  `BatchedSelectFn`).  `prior_probs` (`[B, A]` logits -> `[B, A]`
  probabilities, row by row): if given, the selections get it of the nodes'
  prior logits, computed once per node (see `_Store.logits`).  Requires
  float32 `root.prior_logits` and `root.value` (the recurrent outputs are
  stored as float32 as well).

  With a `mesh`, the batch is split over its axis `batch_axis` and every
  device searches its examples on its own (`shard_map`: no communication
  inside the search).  Per-example keys are drawn for the whole batch as
  without a mesh, so each example gets the same search, up to float rounding
  (the network's matmuls may round the last bit differently on the smaller
  per-device batch, which can flip near-ties), as long as `recurrent_fn` uses
  its key the same way on any batch size (or not at all).

  On XLA:CPU the backup runs as one native kernel per simulation, and so
  does the descent where `native_puct` (`(pb_c_init, pb_c_base,
  masked_score)`, see `_native_puct`) says that both selections are
  MuZero's PUCT with mctx's default qtransform (with `masked_score` not None:
  illegal children, by the `legal_action_mask` of the embeddings, get that
  value, as the planner's `_legal_qtransform`) and `prior_probs` is given
  (see `_native`), when the kernels are available.  `gumbel_qtransform`:
  the qtransform of `interior_select` if that is Gumbel MuZero's interior
  selection (the store keeps prior logits).  Where the native Gumbel descent
  computes it (`_native_gumbel`) and rounds as XLA (`_native.gumbel_exact`),
  the kernel descends below the root.  With `gumbel_table` (Sequential
  Halving's considered visit counts, `_considered_visits_table`, which
  `root_select` uses with `extra_data.root_gumbel`) it picks the root's
  action too where that rounds as XLA, else XLA picks it.
  """
  if not _packable(root):
    raise ValueError(
        "the fast search stores float32 values only: root.prior_logits and "
        f"root.value must be float32, got {root.prior_logits.dtype} and "
        f"{root.value.dtype}, and x64 must be off (jax_enable_x64 is "
        f"{jax.config.jax_enable_x64}); the policy functions fall back to mctx "
        "for these")
  batch_size = root.value.shape[0]
  if max_depth is None:
    max_depth = num_simulations
  if invalid_actions is None:
    invalid_actions = jnp.zeros_like(root.prior_logits)
  run = functools.partial(
      _search_shard, recurrent_fn=recurrent_fn, root_select=root_select,
      interior_select=interior_select, num_simulations=num_simulations,
      max_depth=max_depth, loop_fn=loop_fn, full_batch=batch_size,
      prior_probs=prior_probs,
      native_puct=native_puct if prior_probs is not None else None,
      gumbel_qtransform=gumbel_qtransform if prior_probs is None else None,
      gumbel_table=gumbel_table)
  if mesh is None:
    return run(params, rng_key, root, invalid_actions, extra_data, offset=0)
  num_shards = mesh.shape[batch_axis]
  if batch_size % num_shards:
    raise ValueError(
        f"the batch ({batch_size}) must divide evenly over the {num_shards} "
        f"devices of mesh axis {batch_axis!r}")
  local_batch = batch_size // num_shards

  def shard(params, rng_key, root, invalid_actions, extra_data):
    offset = jax.lax.axis_index(batch_axis) * local_batch
    return run(params, rng_key, root, invalid_actions, extra_data,
               offset=offset)

  batched = jax.sharding.PartitionSpec(batch_axis)
  replicated = jax.sharding.PartitionSpec()
  return _shard_map(shard, mesh,
                    (replicated, replicated, batched, batched, batched),
                    batched)(params, rng_key, root, invalid_actions, extra_data)


def _shard_map(fn, mesh, in_specs, out_specs):
  """`jax.shard_map` without replication checks, on old and new JAX."""
  if hasattr(jax, "shard_map"):
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs,
                         out_specs=out_specs, check_vma=False)
  from jax.experimental.shard_map import shard_map  # pylint: disable=g-import-not-at-top
  return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                   check_rep=False)


# The native MuZero descent keeps a selection cache (`_native.muzero_descend`)
# from this many actions.  Measured on CPU (`benchmarks/native_ab.py
# --select-cache`, hidden-256 benchmark MLP, 2 cores, cache against none in
# one process): 0.92x-0.93x with 9, 12 and 16 actions (B = 256, S = 128;
# 16 at B = 64, S = 256: 0.96x), 1.07x-1.09x with 20, 1.11x and 0.97x with
# 24 (B = 64, S = 256; B = 1024, S = 64), 1.14x-1.16x with 32, 1.33x with
# 64 (B = 256, S = 128; a 64-action record is 24 cache lines).  With
# legal-move masks, through the planner (`--planner-cells`, recommendation):
# 1.02x-1.04x with 32 and 64 actions.
_SELECT_CACHE_MIN_ACTIONS = 20

# Whether MuZero's cached descent runs in the expansion's native call of
# the simulation before (`_native.expand_descend`), `$MCTX_PLANNER_FUSED_DESCENT`
# "0": no (for A/B benchmarks).
_FUSED_DESCENT = os.environ.get("MCTX_PLANNER_FUSED_DESCENT", "1") != "0"

# Whether the native backup with MuZero's selection-cache rows leaves the
# edges of nodes with at most two visited children (`LazyEdges` in
# tree_kernels.cc; the descent and the unpack read their children's
# statistics), `$MCTX_PLANNER_LAZY_EDGES` "0": no (for A/B benchmarks).
# Measured (`benchmarks/native_ab.py --lazy-edges`, 64 actions): 1.09x to
# 1.10x at hidden 256 and 1.23x at hidden 64 with B = 1024, S = 256; within
# noise (0.97x to 1.04x) at B <= 256.
_LAZY_EDGES = os.environ.get("MCTX_PLANNER_LAZY_EDGES", "1") != "0"

# Whether the native Gumbel descent keeps rows of its narrow nodes and
# decides most selections from them (`GumbelRow` in tree_kernels.cc; no
# legal-move masks, `_GUMBEL_ROWS_MIN_ACTIONS` to 254 actions),
# `$MCTX_PLANNER_GUMBEL_ROWS` "0": no (for A/B benchmarks).  Measured
# (`benchmarks/native_ab.py --gumbel-rows`, 2 cores, rows against the whole
# rows in one process): 64 actions 1.00x to 1.23x at hidden 256 (1.09x to
# 1.11x at B = 1024, S = 256 in reruns) and 1.03x to 1.37x at hidden 64;
# 48 actions 1.14x to 1.39x; 40 actions 0.99x to 1.01x, 32 0.97x to 1.01x,
# 20 1.04x, 16 0.94x (hidden 256): the kernel takes rows from 16 actions,
# the search from 48.
_GUMBEL_ROWS = os.environ.get("MCTX_PLANNER_GUMBEL_ROWS", "1") != "0"
_GUMBEL_ROWS_MIN_ACTIONS = 48


def _search_shard(params, rng_key, root, invalid_actions, extra_data, *,
                  recurrent_fn, root_select, interior_select, num_simulations,
                  max_depth, loop_fn, full_batch, offset,
                  prior_probs, native_puct, gumbel_qtransform,
                  gumbel_table) -> Tuple[Tree, Tree]:
  """The search of examples `offset ... offset + len(root.value)` of a batch
  of `full_batch` (all of it without a mesh): the tree and its root alone
  (`_to_tree`'s `root_only`)."""
  batch_size = root.value.shape[0]

  def run():
    native = _on_cpu() and _native.available()
    native_descent = (native and native_puct is not None and
                      _own_threefry_ok() and
                      _as_raw_keys(rng_key) is not None)
    # A masked native descent reads the states' legal-move masks, `[B, A]`.
    legal = getattr(root.embedding, "legal_action_mask", None)
    has_masks = getattr(legal, "shape", None) == root.prior_logits.shape
    masked = native_descent and native_puct[2] is not None
    native_descent = native_descent and (has_masks or not masked)
    mix = (_native_gumbel(gumbel_qtransform)
           if native and gumbel_qtransform is not None else None)
    gumbel_descent = (mix is not None and (has_masks or mix[2] is None) and
                      _native.gumbel_exact(root.prior_logits.shape[-1],
                                           gumbel_qtransform))
    gumbel_root = (gumbel_descent and gumbel_table is not None and
                   _native.gumbel_exact(root.prior_logits.shape[-1],
                                        gumbel_qtransform, root=True))
    if native_descent:
      # `_exploration_scale` of every visit count a node can have (0 ... S +
      # 1), which the kernel indexes.  The counts pass an optimization
      # barrier, so that XLA computes the table at run time with the `log`
      # of the search instead of folding it with another implementation.
      scale = _exploration_scale(
          jax.lax.optimization_barrier(
              jnp.arange(num_simulations + 2, dtype=jnp.int32)),
          *native_puct[:2])

    def example_keys(key):
      # This shard's examples' keys from a simulation's key.
      return _split_batch(key, full_batch, offset, batch_size)

    def muzero_descent(simulate_keys, store):
      # `(parent, action, child, store)`: the native MuZero descent, whose
      # selection cache (if any) the store then holds.
      parent, action, child, cache = _native.muzero_descend(
          store.edges, store.stats, invalid_actions,
          _as_raw_keys(simulate_keys), scale, max_depth,
          legal=store.embeddings.legal_action_mask if masked else None,
          masked_score=native_puct[2] if masked else 0.,
          cache=store.select_cache)
      return parent, action, child, store._replace(select_cache=cache)

    # Defined anew for each platform's trace: JAX caches the traces of loop
    # bodies by function, which would hand one platform's layouts to both.
    def one_simulation(sim, state):
      rng_key, store = state
      rng_key, simulate_key, expand_key = _split_key(rng_key, 3)
      simulate_keys = example_keys(simulate_key)
      if native_descent:
        parent, action, child, store = muzero_descent(simulate_keys, store)
      elif gumbel_descent:
        if gumbel_root:
          root_action, root_inputs = None, (extra_data.root_gumbel,
                                            invalid_actions, gumbel_table)
        else:
          root_action, _ = _root_step(simulate_keys, store, invalid_actions,
                                      extra_data, root_select)
          root_inputs = None
        parent, action, child, cache, rows = _native.gumbel_descend(
            store.edges, store.stats, max_depth, mix,
            root_action=root_action, root=root_inputs,
            legal=(store.embeddings.legal_action_mask if mix[2] is not None
                   else None), cache=store.prior_cache,
            rows=store.gumbel_rows)
        store = store._replace(prior_cache=cache, gumbel_rows=rows)
      else:
        parent, action, child = _descend(simulate_keys, store,
                                         invalid_actions, extra_data,
                                         root_select, interior_select,
                                         max_depth)
      # A node created by simulation `sim` gets index `sim + 1`.
      child = jnp.where(child == Tree.UNVISITED, sim + 1, child)
      store = _expand(params, expand_key, store, recurrent_fn, parent, action,
                      child, prior_probs, native_backup=native,
                      select_rows=select_rows)
      return rng_key, store

    def fused_simulation(sim, state):
      # Simulation `sim` from its descent's result on: the network, then
      # its expansion and backup fused with simulation `sim + 1`'s descent
      # (`_native.expand_descend`).  `keys` is this simulation's split of
      # its key, as `one_simulation` splits it, carried from the turn
      # before.
      keys, store, parent, action, child = state
      rng_key, _, expand_key = keys
      keys = _split_key(rng_key, 3)
      next_keys = _as_raw_keys(example_keys(keys[1]))
      child = jnp.where(child == Tree.UNVISITED, sim + 1, child)
      store, (parent, action, child) = _expand(
          params, expand_key, store, recurrent_fn, parent, action, child,
          prior_probs, native_backup=True, select_rows=True,
          descend_next=(invalid_actions, next_keys, scale, max_depth,
                        sim + 1 < num_simulations))
      return keys, store, parent, action, child

    store = _init_store(root, num_simulations, prior_probs, native=native)
    # The kernels' caches (native only), zeros, written as the store is.
    zeros = lambda shape, dtype: _store_array(
        jnp.zeros(shape[:1] + shape[2:], dtype), shape[1], native=True)
    if gumbel_descent:
      # With rows, the few nodes scored in full compute their prior
      # probabilities each time instead of keeping them.
      if (_GUMBEL_ROWS and mix[2] is None and
          _GUMBEL_ROWS_MIN_ACTIONS <= root.prior_logits.shape[-1] <=
          _native.GUMBEL_ROWS_MAX_ACTIONS):
        store = store._replace(gumbel_rows=zeros(
            _native.gumbel_rows_shape(store.edges.shape), jnp.uint32))
      else:
        store = store._replace(prior_cache=zeros(store.edges.shape[:3],
                                                 jnp.float32))
    if (native_descent and
        root.prior_logits.shape[-1] >= _SELECT_CACHE_MIN_ACTIONS):
      store = store._replace(select_cache=zeros(
          _native.select_cache_shape(store.edges.shape, masked=masked),
          jnp.uint32))
    # The expansion builds the new node's row and tells its parent's row the
    # new child (unmasked rows, up to 64 actions: `_native.expand_backup`).
    select_rows = (store.select_cache is not None and not masked and
                   root.prior_logits.shape[-1] <= 64)
    if select_rows and _FUSED_DESCENT:
      # The first descent alone, then one fused call per simulation.
      keys = _split_key(rng_key, 3)
      parent, action, child, store = muzero_descent(example_keys(keys[1]),
                                                    store)
      _, store, *_ = loop_fn(0, num_simulations, fused_simulation,
                             (keys, store, parent, action, child))
    else:
      _, store = loop_fn(0, num_simulations, one_simulation, (rng_key, store))
    # The caches are internal (and CPU-only: every platform's branch returns
    # the same structure, two `Tree`s).
    to_tree = functools.partial(
        _to_tree, store._replace(prior_cache=None, select_cache=None,
                                 gumbel_rows=None),
        root.value.dtype, root.prior_logits.dtype, invalid_actions,
        extra_data)
    return (to_tree(native=native and _NATIVE_UNPACK, child_stats=select_rows),
            to_tree(root_only=True))

  # A custom `loop_fn` (e.g. Haiku's `hk.fori_loop`, which manages module
  # state) is not wrapped in `platform_dependent`'s `lax.switch`: it gets the
  # layouts of `_platform()`'s guess at trace time instead.
  return _per_platform(run) if loop_fn is jax.lax.fori_loop else run()


# --------------------------------------------------------------------------
# Per-example action selection (vmapped over one-node views).
# --------------------------------------------------------------------------


# Above this many actions, `jnp.argmax` (a variadic value/index reduction) is
# several times slower on XLA:CPU than two plain integer reductions.
_SMALL_ARGMAX = 16


def _argmax(x):
  """`jnp.argmax(x, -1)` (first maximum; a NaN wins), as int32."""
  size = x.shape[-1]
  # Only on CPU: elsewhere the integer keys buy nothing, and XLA:GPU's own
  # argmax does not return the *first* NaN, which we must reproduce.
  if (size <= _SMALL_ARGMAX or x.dtype != jnp.float32 or
      not _on_cpu()):
    return jnp.argmax(x, axis=-1).astype(jnp.int32)
  # Map floats to int32 keys with the same order: -0.0 -> +0.0 (they tie),
  # negative floats get their magnitude bits flipped, NaN gets the top key.
  x = jnp.where(x == 0, jnp.zeros_like(x), x)
  bits = jax.lax.bitcast_convert_type(x, jnp.int32)
  key = jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)
  key = jnp.where(jnp.isnan(x), jnp.iinfo(jnp.int32).max, key)
  best = jnp.max(key, axis=-1, keepdims=True)
  index = jnp.arange(size, dtype=jnp.int32)
  return jnp.min(jnp.where(key == best, index, size), axis=-1)


# mctx adds `1e-7 * uniform[0, 1)` to the PUCT scores to break ties.
_TIE_BREAK = 1e-7


def _exploration_scale(node_visits, pb_c_init, pb_c_base):
  """`sqrt(n) * pb_c(n)` of mctx's PUCT (MuZero, Appendix B) for int32 visit
  counts `n`: the factor of a node's exploration scores.  The native descent
  reads it from a table computed with this same function (`_search_shard`),
  so that both round alike."""
  c = pb_c_init + jnp.log((node_visits + pb_c_base + 1.) / pb_c_base)
  return jnp.sqrt(node_visits) * c


def _puct_scores(view: Tree, depth, probs, *, pb_c_init, pb_c_base,
                 qtransform):
  """PUCT scores before the tie-breaking noise; invalid root actions -inf.

  `probs`: the softmax of the prior logits if known (else None: computed).

  `scores + noise` equals mctx's masked `value + policy + noise`, because
  mctx adds the noise last and `-inf + noise == -inf`.
  """
  visits = view.children_visits[0]
  if probs is None:
    probs = jax.nn.softmax(view.children_prior_logits[0])
  exploration = (_exploration_scale(view.node_visits[0], pb_c_init, pb_c_base)
                 * probs / (visits + 1))
  exploitation = qtransform(view, 0)
  scores = exploitation + exploration
  # Invalid actions are only masked at the root.
  invalid = view.root_invalid_actions * (depth == 0)
  return jnp.where(invalid, -jnp.inf, scores)


def _batched_puct(*, pb_c_init, pb_c_base, qtransform) -> BatchedSelectFn:
  """Batched MuZero selection that draws the tie-breaking noise lazily.

  The noise `n` is in `[0, 1e-7]`.  If the best score `s_j` (first maximum)
  exceeds `fl(s_i + 1e-7)` for every other action, then
  `fl(s_j + n_j) >= s_j > fl(s_i + 1e-7) >= fl(s_i + n_i)` (rounding is
  monotonic), so the noisy argmax is `j` whatever the noise.  Only when some
  active example fails this test (exact or near ties, NaN), the noise is
  drawn, for the whole batch, with the same keys as mctx.

  Only on CPU: off CPU the noise is always drawn, as mctx does.  There the
  draw is one fused kernel, and the `lax.cond` that skips it is not free:
  XLA:GPU reads a conditional's predicate back to the host, one more
  device-to-host synchronisation per descent level, the likely cause of
  muzero's 0.96x-0.99x against mctx at B = 64 on an H100. Without it those
  cells ran 1.18x-1.29x on an H200 (docs/benchmarks.md, "GPU, current
  code").
  """
  scores_fn = functools.partial(_puct_scores, pb_c_init=pb_c_init,
                                pb_c_base=pb_c_base, qtransform=qtransform)

  def select(keys, view, depth, active, probs):
    scores = jax.vmap(scores_fn, in_axes=(0, None, 0))(view, depth, probs)
    num_actions = scores.shape[-1]

    def noisy(_):
      noise = jax.vmap(lambda k: _uniform01(k, (num_actions,)))(
          _selection_keys(keys))
      return jax.vmap(_argmax)(scores + _TIE_BREAK * noise)

    if not _on_cpu():
      return noisy(None)
    greedy = _argmax(scores)
    others = jnp.where(
        jnp.arange(num_actions) == greedy[:, None], -jnp.inf, scores)
    runner_up = jnp.max(others, axis=-1)
    best = jnp.take_along_axis(scores, greedy[:, None], axis=-1)[:, 0]
    safe = best > runner_up + jnp.asarray(_TIE_BREAK, scores.dtype)
    needs_noise = jnp.any(active & ~safe)
    return jax.lax.cond(needs_noise, noisy, lambda _: greedy, None)

  return select


def _considered_visits_sequence(max_considered: int, num_simulations: int):
  """Visit count that Sequential Halving considers at each simulation."""
  if max_considered <= 1:
    return tuple(range(num_simulations))
  rounds = int(math.ceil(math.log2(max_considered)))
  out = []
  counts = [0] * max_considered
  k = max_considered
  while len(out) < num_simulations:
    per_phase = max(1, int(num_simulations / (rounds * k)))
    for _ in range(per_phase):
      out.extend(counts[:k])
      counts[:k] = [c + 1 for c in counts[:k]]
    k = max(2, k // 2)
  return tuple(out[:num_simulations])


def _considered_visits_table(max_considered: int, num_simulations: int):
  """Table `[max_considered + 1, num_simulations]` of considered visits."""
  return tuple(
      _considered_visits_sequence(m, num_simulations)
      for m in range(max_considered + 1))


def _gumbel_score(considered_visit, gumbel, logits, qvalues, visits):
  """Sequential-halving score: only actions at `considered_visit` compete."""
  logits = logits - jnp.max(logits, keepdims=True, axis=-1)
  penalty = jnp.where(visits == considered_visit, 0, -jnp.inf)
  return jnp.maximum(-1e9, gumbel + logits + qvalues) + penalty


def _gumbel_root_scores(view: Tree, qtransform, considered_visit):
  """The scores whose argmax is Gumbel MuZero's root action, as mctx
  (Sequential Halving's, invalid actions at -inf)."""
  scores = _gumbel_score(considered_visit, view.extra_data.root_gumbel,
                         view.children_prior_logits[0], qtransform(view, 0),
                         view.children_visits[0])
  return jnp.where(view.root_invalid_actions, -jnp.inf, scores)


def _gumbel_root_action(key, view: Tree, depth, *, table, max_considered,
                        qtransform):
  """Gumbel MuZero root selection (Sequential Halving), as mctx."""
  del key, depth
  num_valid = jnp.sum(1 - view.root_invalid_actions, axis=-1).astype(jnp.int32)
  considered = jnp.minimum(max_considered, num_valid)
  # At the root, the sum of the visit counts is the simulation index.
  considered_visit = table[considered, jnp.sum(view.children_visits[0], -1)]
  return _argmax(_gumbel_root_scores(view, qtransform, considered_visit))


def _gumbel_interior_scores(view: Tree, qtransform):
  """The scores whose argmax is Gumbel MuZero's interior action, as mctx."""
  visits = view.children_visits[0]
  logits = view.children_prior_logits[0]
  qvalues = qtransform(view, 0)
  probs = jax.nn.softmax(logits + qvalues)
  return probs - visits / (1 + jnp.sum(visits, keepdims=True, axis=-1))


def _gumbel_interior_action(key, view: Tree, depth, *, qtransform):
  """Gumbel MuZero deterministic interior selection, as mctx."""
  del key, depth
  return _argmax(_gumbel_interior_scores(view, qtransform))


class _ProbeState(NamedTuple):
  """The embedding of `gumbel_reference_scores`' nodes: their legal moves."""
  legal_action_mask: chex.Array


def gumbel_reference_scores(logits, qvalues, visits, raw_value, legal,
                            gumbel, invalid, considered, *, qtransform,
                            root: bool):
  """Gumbel MuZero's selection scores under `qtransform` for independent
  nodes, as the XLA search computes them: `_gumbel_interior_scores`, or with
  `root` `_gumbel_root_scores` (`[R, A]` each; `raw_value` and the
  considered visit counts `considered` `[R]`; q-values as given; `legal`:
  the nodes' legal-move masks, the states' `legal_action_mask`; `gumbel` /
  `invalid`: the root's noise and invalid actions).  The native kernel must
  reproduce them bit for bit (`_native.gumbel_exact`)."""
  rows, num_actions = logits.shape
  one = lambda x: x[:, None]
  view = Tree(
      node_visits=jnp.sum(visits, -1)[:, None] + 1,
      raw_values=one(raw_value), node_values=one(raw_value),
      parents=jnp.full([rows, 1], Tree.NO_PARENT, jnp.int32),
      action_from_parent=jnp.full([rows, 1], Tree.NO_PARENT, jnp.int32),
      children_index=jnp.full([rows, 1, num_actions], Tree.UNVISITED,
                              jnp.int32),
      children_prior_logits=one(logits), children_visits=one(visits),
      children_rewards=one(qvalues),
      children_discounts=jnp.zeros([rows, 1, num_actions], jnp.float32),
      children_values=jnp.zeros([rows, 1, num_actions], jnp.float32),
      embeddings=_ProbeState(one(legal)),
      root_invalid_actions=invalid.astype(jnp.float32),
      extra_data=mctx.GumbelMuZeroExtraData(root_gumbel=gumbel))
  if root:
    return jax.vmap(lambda v, c: _gumbel_root_scores(v, qtransform, c))(
        view, considered)
  return jax.vmap(functools.partial(_gumbel_interior_scores,
                                    qtransform=qtransform))(view)


# --------------------------------------------------------------------------
# Policies.
# --------------------------------------------------------------------------


def _mask_invalid_actions(logits, invalid_actions):
  """Gives (finite) minimal logits to invalid actions, as mctx."""
  if invalid_actions is None:
    return logits
  chex.assert_equal_shape([logits, invalid_actions])
  logits = logits - jnp.max(logits, axis=-1, keepdims=True)
  return jnp.where(invalid_actions, jnp.finfo(logits.dtype).min, logits)


def _log_probs(probs):
  return jnp.log(jnp.maximum(probs, jnp.finfo(probs.dtype).tiny))


# `MCTX_PLANNER_FAST_DIRICHLET=0`: the root noise by `jax.random.dirichlet`
# everywhere (read at trace time; `benchmarks/native_ab.py --fast-dirichlet`).
_FAST_DIRICHLET = os.environ.get("MCTX_PLANNER_FAST_DIRICHLET", "1") != "0"


def _dirichlet_mix(key, probs, *, dirichlet_alpha, dirichlet_fraction):
  chex.assert_rank(probs, 2)
  chex.assert_type([dirichlet_alpha, dirichlet_fraction], float)
  batch_size, num_actions = probs.shape
  alpha = jnp.full([num_actions], fill_value=dirichlet_alpha)
  jax_noise = lambda k: jax.random.dirichlet(k, alpha, shape=(batch_size,))
  if not _FAST_DIRICHLET or batch_size * num_actions < _dirichlet.MIN_ELEMENTS:
    noise = jax_noise(key)
  else:
    # On XLA:CPU the same bits sooner (`_dirichlet`; tested against JAX's
    # on CPU only).
    noise = jax.lax.platform_dependent(
        key, cpu=lambda k: _dirichlet.dirichlet(k, alpha, batch_size),
        default=jax_noise)
  return (1 - dirichlet_fraction) * probs + dirichlet_fraction * noise


def _with_temperature(logits, temperature):
  logits = logits - jnp.max(logits, keepdims=True, axis=-1)
  return logits / jnp.maximum(jnp.finfo(logits.dtype).tiny, temperature)


def _noisy_root(root, key, invalid_actions, dirichlet_alpha,
                dirichlet_fraction):
  probs = _dirichlet_mix(
      key, jax.nn.softmax(root.prior_logits),
      dirichlet_alpha=dirichlet_alpha, dirichlet_fraction=dirichlet_fraction)
  return root.replace(
      prior_logits=_mask_invalid_actions(_log_probs(probs), invalid_actions))


def _act_by_visits(rng_key, tree, temperature):
  weights = tree.summary().visit_probs
  logits = _with_temperature(_log_probs(weights), temperature)
  return jax.random.categorical(rng_key, logits), weights


def _native_puct(qtransform, pb_c_init, pb_c_base):
  """`search`'s `native_puct` for MuZero's PUCT with `qtransform`: the
  native descent handles mctx's default qtransform, and the planner's
  legal-move masking of it (a qtransform that carries
  `native_masked_score`, see `search._qtransform`)."""
  if qtransform is mctx.qtransform_by_parent_and_siblings:
    return pb_c_init, pb_c_base, None
  masked_score = getattr(qtransform, "native_masked_score", None)
  if (masked_score is not None and getattr(qtransform, "native_base", None)
      is mctx.qtransform_by_parent_and_siblings):
    return pb_c_init, pb_c_base, masked_score
  return None


def _mix_value_constants(qtransform) -> Optional[Tuple[float, float]]:
  """`(value_scale, maxvisit_init)` if `qtransform` is
  `mctx.qtransform_completed_by_mix_value` with at most those two arguments
  set (to Python numbers), else None."""
  fn, kwargs = qtransform, {}
  if isinstance(qtransform, functools.partial):
    if qtransform.args:
      return None
    fn, kwargs = qtransform.func, qtransform.keywords
  if (fn is not mctx.qtransform_completed_by_mix_value or
      not set(kwargs) <= {"value_scale", "maxvisit_init"} or
      not all(isinstance(v, (int, float)) for v in kwargs.values())):
    return None
  defaults = inspect.signature(fn).parameters
  return tuple(float(kwargs.get(k, defaults[k].default))
               for k in ("value_scale", "maxvisit_init"))


def _native_gumbel(qtransform) -> Optional[Tuple[float, float,
                                                  Optional[float]]]:
  """`(value_scale, maxvisit_init, masked_score)` for the native Gumbel
  descent if it computes Gumbel's interior selection under `qtransform`:
  mctx's `qtransform_completed_by_mix_value` (constants as given, other
  arguments at their defaults), or the planner's legal-move masking of it
  (`masked_score` not None, see `search._qtransform`); else None."""
  masked_score = getattr(qtransform, "native_masked_score", None)
  base = (getattr(qtransform, "native_base", None) if masked_score is not None
          else qtransform)
  constants = _mix_value_constants(base)
  return None if constants is None else (*constants, masked_score)


def _policy_only(with_root: Callable, name: str) -> Callable:
  """`with_root`'s policy output alone: the drop-in replacement for `name`
  (mctx's policy of the same name, same signature, same outputs)."""
  @functools.wraps(with_root)
  def policy(*args, **kwargs) -> mctx.PolicyOutput:
    return with_root(*args, **kwargs)[0]
  policy.__name__ = policy.__qualname__ = name
  policy.__signature__ = inspect.signature(with_root).replace(
      return_annotation=mctx.PolicyOutput)
  policy.__doc__ = (
      f"Drop-in replacement for `mctx.{name}` (same outputs).\n\n"
      f"`mesh` / `batch_axis`: split the tree search over devices (see "
      f"`search`).  `{with_root.__name__}` returns the root alone as well.")
  return policy


def muzero_policy_with_root(
    params: chex.ArrayTree,
    rng_key: chex.PRNGKey,
    root: mctx.RootFnOutput,
    recurrent_fn: mctx.RecurrentFn,
    num_simulations: int,
    invalid_actions: Optional[chex.Array] = None,
    max_depth: Optional[int] = None,
    loop_fn: mctx.LoopFn = jax.lax.fori_loop,
    *,
    qtransform=mctx.qtransform_by_parent_and_siblings,
    dirichlet_fraction: chex.Numeric = 0.25,
    dirichlet_alpha: chex.Numeric = 0.3,
    pb_c_init: chex.Numeric = 1.25,
    pb_c_base: chex.Numeric = 19652,
    temperature: chex.Numeric = 1.0,
    mesh: Optional[jax.sharding.Mesh] = None,
    batch_axis: str = "batch") -> Tuple[mctx.PolicyOutput[None], Tree]:
  """`mctx.muzero_policy`'s outputs, and the root of the tree alone (a
  one-node `Tree`, `[B, 1, ...]`; the whole tree where this falls back to
  mctx).  The outputs are computed from the root alone, so that a caller
  who drops the whole tree lets XLA drop its unpack (`_to_tree`).

  `mesh` / `batch_axis`: split the tree search over devices (see `search`).
  """
  if not _packable(root):
    return _with_whole_tree(mctx.muzero_policy(
        params, rng_key, root, recurrent_fn, num_simulations, invalid_actions,
        max_depth, loop_fn, qtransform=qtransform,
        dirichlet_fraction=dirichlet_fraction, dirichlet_alpha=dirichlet_alpha,
        pb_c_init=pb_c_init, pb_c_base=pb_c_base, temperature=temperature))
  rng_key, dirichlet_key, search_key = jax.random.split(rng_key, 3)
  root = _noisy_root(root, dirichlet_key, invalid_actions, dirichlet_alpha,
                     dirichlet_fraction)
  select = _batched_puct(pb_c_init=pb_c_init, pb_c_base=pb_c_base,
                         qtransform=qtransform)
  tree, root_tree = search(
      params, search_key, root=root, recurrent_fn=recurrent_fn,
      root_select=select, interior_select=select,
      num_simulations=num_simulations, max_depth=max_depth,
      invalid_actions=invalid_actions, loop_fn=loop_fn, mesh=mesh,
      batch_axis=batch_axis, prior_probs=jax.nn.softmax,
      native_puct=_native_puct(qtransform, pb_c_init, pb_c_base))
  action, weights = _act_by_visits(rng_key, root_tree, temperature)
  return mctx.PolicyOutput(action=action, action_weights=weights,
                           search_tree=tree), root_tree


muzero_policy = _policy_only(muzero_policy_with_root, "muzero_policy")


def _with_whole_tree(out: mctx.PolicyOutput) -> Tuple[mctx.PolicyOutput, Tree]:
  """mctx's output, and its whole tree in place of the root alone."""
  return out, out.search_tree


def gumbel_muzero_policy_with_root(
    params: chex.ArrayTree,
    rng_key: chex.PRNGKey,
    root: mctx.RootFnOutput,
    recurrent_fn: mctx.RecurrentFn,
    num_simulations: int,
    invalid_actions: Optional[chex.Array] = None,
    max_depth: Optional[int] = None,
    loop_fn: mctx.LoopFn = jax.lax.fori_loop,
    *,
    qtransform=mctx.qtransform_completed_by_mix_value,
    max_num_considered_actions: int = 16,
    gumbel_scale: chex.Numeric = 1.,
    mesh: Optional[jax.sharding.Mesh] = None,
    batch_axis: str = "batch",
) -> Tuple[mctx.PolicyOutput[mctx.GumbelMuZeroExtraData], Tree]:
  """`mctx.gumbel_muzero_policy`'s outputs, and the root alone (as
  `muzero_policy_with_root`).

  `mesh` / `batch_axis`: split the tree search over devices (see `search`).
  """
  if not _packable(root):
    return _with_whole_tree(mctx.gumbel_muzero_policy(
        params, rng_key, root, recurrent_fn, num_simulations, invalid_actions,
        max_depth, loop_fn, qtransform=qtransform,
        max_num_considered_actions=max_num_considered_actions,
        gumbel_scale=gumbel_scale))
  root = root.replace(
      prior_logits=_mask_invalid_actions(root.prior_logits, invalid_actions))
  rng_key, gumbel_key = jax.random.split(rng_key)
  gumbel = gumbel_scale * jax.random.gumbel(
      gumbel_key, shape=root.prior_logits.shape, dtype=root.prior_logits.dtype)

  table = jnp.array(_considered_visits_table(max_num_considered_actions,
                                             num_simulations))
  root_select = _per_node(functools.partial(
      _gumbel_root_action, table=table,
      max_considered=max_num_considered_actions, qtransform=qtransform))
  interior_select = _per_node(functools.partial(
      _gumbel_interior_action, qtransform=qtransform))
  tree, root_tree = search(
      params, rng_key, root=root, recurrent_fn=recurrent_fn,
      root_select=root_select, interior_select=interior_select,
      num_simulations=num_simulations, max_depth=max_depth,
      invalid_actions=invalid_actions,
      extra_data=mctx.GumbelMuZeroExtraData(root_gumbel=gumbel),
      loop_fn=loop_fn, mesh=mesh, batch_axis=batch_axis,
      gumbel_qtransform=qtransform, gumbel_table=table)

  # Act with the best of the most visited actions (by gumbel + logits + q).
  visit_counts = root_tree.summary().visit_counts
  considered_visit = jnp.max(visit_counts, axis=-1, keepdims=True)
  qvalues = jax.vmap(qtransform, in_axes=[0, None])(root_tree, Tree.ROOT_INDEX)
  scores = _gumbel_score(considered_visit, gumbel, root.prior_logits, qvalues,
                         visit_counts)
  # One argmax per search, outside `_per_platform`: XLA's, as mctx's.
  if invalid_actions is not None:
    scores = jnp.where(invalid_actions, -jnp.inf, scores)
  action = jnp.argmax(scores, axis=-1).astype(jnp.int32)
  weights = jax.nn.softmax(
      _mask_invalid_actions(root.prior_logits + qvalues, invalid_actions))
  return mctx.PolicyOutput(action=action, action_weights=weights,
                           search_tree=tree), root_tree


gumbel_muzero_policy = _policy_only(gumbel_muzero_policy_with_root,
                                    "gumbel_muzero_policy")


# --------------------------------------------------------------------------
# Stochastic MuZero.
# --------------------------------------------------------------------------


def _split_actions(tree: Tree, num_actions: int, part: str) -> Tree:
  """Keeps the decision (`[:A]`) or chance (`[A:]`) columns of the tree."""
  cut = (lambda x: x[..., :num_actions]) if part == "decision" else (
      lambda x: x[..., num_actions:])
  return tree.replace(
      children_index=cut(tree.children_index),
      children_prior_logits=cut(tree.children_prior_logits),
      children_visits=cut(tree.children_visits),
      children_rewards=cut(tree.children_rewards),
      children_discounts=cut(tree.children_discounts),
      children_values=cut(tree.children_values),
      root_invalid_actions=cut(tree.root_invalid_actions))


def _batched_stochastic(num_actions: int, *, pb_c_init, pb_c_base,
                        qtransform) -> BatchedSelectFn:
  """Batched selection of mctx's stochastic search: decision nodes by
  MuZero's PUCT as `_batched_puct` (on CPU the tie-breaking noise is drawn
  only when an active decision node may need it), chance nodes by
  prior-matching (`argmax(prior / (visits + 1))`), as mctx's
  `stochastic_muzero_policy`.  Measured against mctx's per-node form
  (vmapped, noise always drawn): the same outputs, 1.05x to 1.13x faster on
  the 2-core CPU (docs/benchmarks.md)."""
  puct = _batched_puct(pb_c_init=pb_c_init, pb_c_base=pb_c_base,
                       qtransform=qtransform)

  def chance_action(view, probs):
    chance = _split_actions(view, num_actions, "chance")
    return _argmax(probs / (chance.children_visits[0] + 1)) + num_actions

  def select(keys, view, depth, active, probs):
    # `probs`: per part (`_softmax_per_part`), as mctx's selections compute
    # them from the decision or chance columns.
    is_decision = view.embeddings.is_decision_node[:, 0]
    decision = puct(keys, _split_actions(view, num_actions, "decision"), depth,
                    active & is_decision, probs[:, :num_actions])
    chance = jax.vmap(chance_action)(view, probs[:, num_actions:])
    return jnp.where(is_decision, decision, chance)

  return select


def _softmax_per_part(logits, *, num_actions: int):
  """`[B, A + C]` joint logits -> the softmax of the decision columns
  (`[:A]`) beside the softmax of the chance columns (`[A:]`)."""
  return jnp.concatenate([jax.nn.softmax(logits[:, :num_actions]),
                          jax.nn.softmax(logits[:, num_actions:])], axis=-1)


def _stochastic_recurrent_fn(decision_fn, chance_fn, num_actions,
                             num_chance_outcomes):
  """One recurrent fn over `A + C` joint actions (decision or chance)."""

  def recurrent_fn(params, rng, joint_action, state):
    batch_size = jax.tree_util.tree_leaves(state.state_embedding)[0].shape[0]
    decision_out, afterstate = decision_fn(params, rng, joint_action,
                                           state.state_embedding)
    as_decision = mctx.RecurrentFnOutput(
        prior_logits=jnp.concatenate([
            jnp.full([batch_size, num_actions], -jnp.inf),
            decision_out.chance_logits], axis=-1),
        value=decision_out.afterstate_value,
        reward=jnp.zeros_like(decision_out.afterstate_value),
        discount=jnp.ones_like(decision_out.afterstate_value))
    chance_out, next_state = chance_fn(params, rng, joint_action - num_actions,
                                       state.afterstate_embedding)
    as_chance = mctx.RecurrentFnOutput(
        prior_logits=jnp.concatenate([
            chance_out.action_logits,
            jnp.full([batch_size, num_chance_outcomes], -jnp.inf)], axis=-1),
        value=chance_out.value,
        reward=chance_out.reward,
        discount=chance_out.discount)

    def pick(d, c):
      is_decision = jnp.reshape(state.is_decision_node,
                                [-1] + [1] * (d.ndim - 1))
      return jnp.where(is_decision, d, c)

    out = jax.tree.map(pick, as_decision, as_chance)
    return out, _mctx_base.StochasticRecurrentState(
        state_embedding=next_state,
        afterstate_embedding=afterstate,
        is_decision_node=jnp.logical_not(state.is_decision_node))

  return recurrent_fn


def stochastic_muzero_policy_with_root(
    params: chex.ArrayTree,
    rng_key: chex.PRNGKey,
    root: mctx.RootFnOutput,
    decision_recurrent_fn,
    chance_recurrent_fn,
    num_simulations: int,
    invalid_actions: Optional[chex.Array] = None,
    max_depth: Optional[int] = None,
    loop_fn: mctx.LoopFn = jax.lax.fori_loop,
    *,
    qtransform=mctx.qtransform_by_parent_and_siblings,
    dirichlet_fraction: chex.Numeric = 0.25,
    dirichlet_alpha: chex.Numeric = 0.3,
    pb_c_init: chex.Numeric = 1.25,
    pb_c_base: chex.Numeric = 19652,
    temperature: chex.Numeric = 1.0,
    mesh: Optional[jax.sharding.Mesh] = None,
    batch_axis: str = "batch") -> Tuple[mctx.PolicyOutput[None], Tree]:
  """`mctx.stochastic_muzero_policy`'s outputs, and the root alone (as
  `muzero_policy_with_root`).

  `mesh` / `batch_axis`: split the tree search over devices (see `search`).
  """
  if not _packable(root):
    return _with_whole_tree(mctx.stochastic_muzero_policy(
        params, rng_key, root, decision_recurrent_fn, chance_recurrent_fn,
        num_simulations, invalid_actions, max_depth, loop_fn,
        qtransform=qtransform, dirichlet_fraction=dirichlet_fraction,
        dirichlet_alpha=dirichlet_alpha, pb_c_init=pb_c_init,
        pb_c_base=pb_c_base, temperature=temperature))
  num_actions = root.prior_logits.shape[-1]
  rng_key, dirichlet_key, search_key = jax.random.split(rng_key, 3)
  root = _noisy_root(root, dirichlet_key, invalid_actions, dirichlet_alpha,
                     dirichlet_fraction)

  # A dummy afterstate (same call and key as mctx) gives the afterstate
  # embedding structure and the number of chance outcomes.
  batch_size = jax.tree_util.tree_leaves(root.embedding)[0].shape[0]
  dummy_out, dummy_afterstate = decision_recurrent_fn(
      params, rng_key, jnp.zeros([batch_size], jnp.int32), root.embedding)
  num_chance = dummy_out.chance_logits.shape[-1]
  root = root.replace(
      prior_logits=jnp.concatenate(
          [root.prior_logits,
           jnp.full([batch_size, num_chance], fill_value=-jnp.inf)], axis=-1),
      embedding=_mctx_base.StochasticRecurrentState(
          state_embedding=root.embedding,
          afterstate_embedding=dummy_afterstate,
          is_decision_node=jnp.ones([batch_size], dtype=bool)))
  recurrent_fn = _stochastic_recurrent_fn(
      decision_recurrent_fn, chance_recurrent_fn, num_actions, num_chance)

  select = _batched_stochastic(num_actions, pb_c_init=pb_c_init,
                               pb_c_base=pb_c_base, qtransform=qtransform)
  tree, root_tree = search(
      params, search_key, root=root, recurrent_fn=recurrent_fn,
      root_select=select, interior_select=select,
      num_simulations=num_simulations, max_depth=max_depth,
      invalid_actions=invalid_actions, loop_fn=loop_fn, mesh=mesh,
      batch_axis=batch_axis,
      prior_probs=functools.partial(_softmax_per_part,
                                    num_actions=num_actions))

  tree = _split_actions(tree, num_actions, "decision")
  root_tree = _split_actions(root_tree, num_actions, "decision")
  action, weights = _act_by_visits(rng_key, root_tree, temperature)
  return mctx.PolicyOutput(action=action, action_weights=weights,
                           search_tree=tree), root_tree


stochastic_muzero_policy = _policy_only(stochastic_muzero_policy_with_root,
                                        "stochastic_muzero_policy")
