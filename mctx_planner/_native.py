"""Native XLA:CPU kernels of the fast search (``_csrc/tree_kernels.cc``).

On XLA:CPU a tree level of the fast search is about 20 small XLA kernels of
about a microsecond each, whatever their arithmetic (docs/benchmarks.md,
"Profile of one search").  XLA FFI custom calls replace the two loops over
tree levels with one kernel each per simulation:

* ``muzero_descend``: MuZero's descent (PUCT with mctx's default
  ``qtransform_by_parent_and_siblings``, optionally with the planner's
  legal-move masking), every example from the root to its leaf, the batch
  split over XLA's intra-op threads from B = 128 (below that, once a call
  proves long); from 20 actions it keeps a per-node selection cache
  (visited children, the two best unvisited ones, of each kind with masks:
  legal and illegal) so that a node visited again is scored from those
  instead of all its children; without masks, up to 64 actions, from B = 16,
  and where the CPU has AVX-512, the descent runs 16 examples at a time in
  vector lanes, a row per node holding its first two visited children's
  fixed fields (``MCTX_PLANNER_NATIVE_LANES=0`` keeps the scalar descent;
  docs/benchmarks.md, "MuZero's descent in vector lanes");
* ``gumbel_descend``: Gumbel MuZero's descent, the root's Sequential
  Halving selection included, with ``qtransform_completed_by_mix_value``
  (optionally masked), threaded alike, where ``gumbel_exact`` finds that it
  rounds as XLA (for the root and the interior separately); without masks,
  16 to 64 actions, from B = 16 and with AVX-512, the interior selections
  of 16 examples run side by side in vector lanes (the same switch); with
  a row per node (no masks, from 48 actions in the search), most
  selections, the root's included, are decided from the node's visited
  children and best unvisited one (``MCTX_PLANNER_GUMBEL_ROWS=0`` scores
  every node's whole row; docs/benchmarks.md, "Gumbel's narrow nodes
  decided from their rows");
* ``expand_backup``: the expansion's writes to the tree store (the new
  node's statistics, link and priors, its parent's edge) and the backward
  pass, of every policy, in place; with MuZero's unmasked selection cache,
  also the new node's cache row and its parent's slots
  (``expand_backup_gumbel``: with Gumbel's rows, the new node's row);
* ``expand_descend``: that expansion and backup with MuZero's unmasked
  selection cache, then the next simulation's descent, in one call that
  backs up each block of examples just before descending them again
  (``MCTX_PLANNER_FUSED_DESCENT=0`` keeps the two calls; docs/design.md);
  with those rows the backup leaves the edges of nodes with at most two
  visited children, whose visit counts and values their children's
  statistics hold (``MCTX_PLANNER_LAZY_EDGES=0`` writes every edge).

Two more run once per call: ``unpack_edges`` turns the packed edge store into
mctx's ``[B, N, A]`` tree arrays in one threaded pass (XLA made one pass per
array; an expanded child's visit count and value come from its statistics),
and ``top_k_rows`` is ``jax.lax.top_k`` by a radix select
(``mctx_planner.top_k``, for domains that retrieve candidates in their step).

They round every float operation as XLA rounds mctx's formulas (its fused
multiply-adds, its reciprocal for some divisions, its ``exp``; see the C++
file and docs/design.md), so the search stays bit-identical to mctx; the
golden tests check it.

The C++ source is compiled once per machine, on first use, with the system's
C++ compiler (``$CXX``, else ``c++``/``g++``/``clang++``) against the XLA FFI
headers that jaxlib ships, into ``$MCTX_PLANNER_CACHE_DIR`` (default
``~/.cache/mctx_planner``; the temp directory if that is not writable).  The
file name carries a hash of the source, the flags, the jaxlib version and the
CPU's flags, so an upgrade rebuilds it.  Where there is no compiler, no
``jax.ffi.ffi_call`` (older JAX, e.g. 0.4.30) or the build fails, searches
keep their pure-XLA loops, with the same results (one log line says why).
``MCTX_PLANNER_NATIVE=0`` turns the kernels off; ``mp.native_cpu_kernels()``
says whether they are in use.  ``MCTX_PLANNER_NATIVE_FLAGS`` adds compiler
flags (and is part of the file name's hash): ``-mno-avx2`` builds the
portable code paths, which a test compares with mctx.
``MCTX_PLANNER_NATIVE_SPLIT_NS`` (default 60000) is how long, estimated, the
rest of a call on a small batch must take before it is split over XLA's
threads (a test sets 0 to cover the split code).

The search's store (its `[B, N, ...]` arrays and the kernels' caches) is
written first by ``store_init``, which on Linux asks for transparent huge
pages over it (``madvise(MADV_HUGEPAGE)``, before any page is touched): with
64 actions, 7 to 9% faster searches at B = 256 on the 2-core benchmark
machine (fewer page faults and TLB misses; docs/benchmarks.md, "Huge pages
for the store").  ``MCTX_PLANNER_HUGE_PAGES=0`` turns the advice off (read
when ``mctx_planner`` is imported, into ``_fast_search._HUGE_PAGES``); where
the system's THP setting is ``never`` it has no effect.  On a virtual
machine that reports freed memory to its host (virtio-balloon free page
reporting), huge pages faulted in from memory that was freed a few seconds
earlier (a search after a pause) can cost more than 4 KB pages
(docs/benchmarks.md, "Huge pages after a pause");
``retain_freed_memory()`` keeps freed memory in the process.
"""

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["available", "status", "disabled", "why_not_here",
           "muzero_descend", "select_cache_shape", "gumbel_descend",
           "gumbel_rows_shape", "GUMBEL_ROWS_MAX_ACTIONS",
           "GUMBEL_ROWS_MIN_ACTIONS", "gumbel_exact", "expand_backup",
           "expand_backup_gumbel", "top_k_rows", "unpack_edges"]

_SOURCE = Path(__file__).parent / "_csrc" / "tree_kernels.cc"
_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC",
          # No implicit FMA contraction and no fast-math: the float
          # operations must round as XLA's do (bit-identity with mctx).
          "-ffp-contract=off", "-fno-fast-math",
          # The host's instructions, as XLA:CPU compiles for them (FMA above
          # all, see `MulAdd` in the C++ file).
          "-march=native")
_TARGETS = {"mctx_planner_muzero_descend": "MctxPlannerMuzeroDescend",
            "mctx_planner_muzero_descend_cached":
                "MctxPlannerMuzeroDescendCached",
            "mctx_planner_gumbel_descend": "MctxPlannerGumbelDescend",
            "mctx_planner_gumbel_scores": "MctxPlannerGumbelScores",
            "mctx_planner_expand_backup": "MctxPlannerExpandBackup",
            "mctx_planner_expand_descend": "MctxPlannerExpandDescend",
            "mctx_planner_top_k": "MctxPlannerTopK",
            "mctx_planner_unpack_edges": "MctxPlannerUnpackEdges",
            "mctx_planner_store_init": "MctxPlannerStoreInit"}

_log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_STATE = {"loaded": None, "reason": "not tried yet"}
_GUMBEL_EXACT = {}  # (root?, actions, *constants) -> bool (`gumbel_exact`)
_OFF = threading.local()


def _compiler() -> Optional[str]:
  for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
    path = shutil.which(name) if name else None
    if path:
      return path
  return None


def why_not_here() -> Optional[str]:
  """Why this environment cannot have the kernels (turned off, no
  `jax.ffi.ffi_call`, no C++ compiler), or None: then they must build and
  load, and a failure is a failure (tests rely on this)."""
  if os.environ.get("MCTX_PLANNER_NATIVE", "1").strip().lower() in (
      "0", "false", "no", "off"):
    return "turned off by MCTX_PLANNER_NATIVE"
  if not hasattr(getattr(jax, "ffi", None), "ffi_call"):
    return f"jax {jax.__version__} has no jax.ffi.ffi_call"
  if _compiler() is None:
    return "no C++ compiler found (set $CXX)"
  return None


def _cache_dir() -> Path:
  root = os.environ.get("MCTX_PLANNER_CACHE_DIR")
  if root:
    return Path(root)
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base) / "mctx_planner"


def _library_name(compiler: str) -> str:
  import jaxlib  # pylint: disable=g-import-not-at-top
  digest = hashlib.sha256()
  digest.update(_SOURCE.read_bytes())
  digest.update(" ".join(_flags() + (compiler, jaxlib.__version__)).encode())
  # Built for the host's instruction set: a cache shared by machines of
  # different CPUs keeps one library per instruction set.
  digest.update(_cpu_flags().encode())
  return f"tree_kernels-{digest.hexdigest()[:16]}.so"


def _flags() -> tuple:
  """The compiler flags: `_FLAGS`, then `$MCTX_PLANNER_NATIVE_FLAGS` (split
  as a shell would), e.g. `-mno-avx2` for the kernels' portable code
  paths (the tests use it to cover them)."""
  return _FLAGS + tuple(shlex.split(
      os.environ.get("MCTX_PLANNER_NATIVE_FLAGS", "")))


def _cpu_flags() -> str:
  """The host CPU's feature flags (Linux), else its machine name."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith(("flags", "Features")):
          return line
  except OSError:
    pass
  return platform.machine() + platform.processor()


def _build(compiler: str, target: Path) -> None:
  """Compiles the kernels to `target` (atomically: a temporary file renamed,
  so that concurrent processes never load a half-written library)."""
  target.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
  os.close(fd)
  try:
    done = subprocess.run([compiler, *_flags(), "-I", jax.ffi.include_dir(),
                           str(_SOURCE), "-o", tmp],
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
      # The errors, not only the tail (warnings from the FFI headers can
      # fill it).
      errors = [line for line in done.stderr.splitlines() if "error" in line]
      raise RuntimeError(f"building {_SOURCE.name} with {compiler} failed: "
                         + "\n".join(errors[:20]) + "\n...\n"
                         + done.stderr[-1000:])
    os.replace(tmp, target)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _load() -> str:
  """Builds (if needed), loads and registers the kernels; their path."""
  reason = why_not_here()
  if reason is not None:
    raise RuntimeError(reason)
  ffi, compiler = jax.ffi, _compiler()
  name = _library_name(compiler)
  path = _cache_dir() / name
  if not path.exists():
    try:
      _build(compiler, path)
    except OSError:  # e.g. a read-only home: build in the temp directory
      user = getattr(os, "getuid", lambda: "user")()
      path = Path(tempfile.gettempdir()) / f"mctx_planner-{user}" / name
      if not path.exists():
        _build(compiler, path)
  library = ctypes.CDLL(str(path))
  for target, symbol in _TARGETS.items():
    ffi.register_ffi_target(target, ffi.pycapsule(getattr(library, symbol)),
                            platform="cpu")
  return str(path)


def available() -> bool:
  """Whether the native kernels are built and registered (builds them on the
  first call; thread-safe; never raises).  False inside `disabled()`."""
  if getattr(_OFF, "depth", 0):
    return False
  with _LOCK:
    if _STATE["loaded"] is None:
      try:
        _STATE.update(loaded=True, reason=f"in use ({_load()})")
      except (RuntimeError, OSError, AttributeError) as e:
        _STATE.update(loaded=False, reason=f"not in use: {e}")
        _log.info("mctx_planner: native CPU search kernels %s",
                  _STATE["reason"])
    return _STATE["loaded"]


def status() -> str:
  """Whether the native CPU search kernels are in use, and why not if not:
  `"in use (<library path>)"` or `"not in use: <reason>"`.  Builds them on
  the first call (see the module docstring)."""
  if getattr(_OFF, "depth", 0):
    return "not in use: disabled() in this thread"
  available()
  return _STATE["reason"]


@contextlib.contextmanager
def disabled():
  """Within (this thread): searches traced now use the pure-XLA tree loops
  (for tests and A/B benchmarks; JAX caches traces per function, so use
  functions traced inside)."""
  _OFF.depth = getattr(_OFF, "depth", 0) + 1
  try:
    yield
  finally:
    _OFF.depth -= 1


def select_cache_shape(edges_shape, masked: bool = False) -> tuple:
  """The shape of `muzero_descend`'s selection cache for a store of
  `edges_shape` `[B, N, A, 6]`: `[B, N, W]`, `W` = 16 without legal-move
  masks up to 64 actions (a cache line, with the vector descent's slots),
  else `5 + ceil(A / 32)`, or with masks (`masked`) `9 + 2 * ceil(A / 32)`,
  rounded up to a multiple of 4 (`SelectCacheWords` in tree_kernels.cc)."""
  batch, num_nodes, num_actions = edges_shape[:3]
  if not masked and num_actions <= 64:
    return (batch, num_nodes, 16)
  bit_words = -(-num_actions // 32)
  words = 9 + 2 * bit_words if masked else 5 + bit_words
  return (batch, num_nodes, -(-words // 4) * 4)


# The most actions `gumbel_descend`'s rows take (an action plus one is a
# byte; `GumbelRow::kMaxActions`), and the least (`kShortRow`).
GUMBEL_ROWS_MAX_ACTIONS = 254
GUMBEL_ROWS_MIN_ACTIONS = 16


def gumbel_rows_shape(edges_shape) -> tuple:
  """The shape of `gumbel_descend`'s rows for a store of `edges_shape`
  (`[B, N, A, 6]`): `[B, N, 16]`, one cache line per node."""
  return tuple(edges_shape[:2]) + (16,)


def muzero_descend(edges, stats, invalid_actions, keys, scale,
                   max_depth: int, legal=None, masked_score: float = 0.,
                   cache=None):
  """`(node, action, child, cache)`, the first three int32 `[B]`: as
  `_fast_search._descend` with MuZero's PUCT selection and mctx's default
  qtransform.

  `edges` int32 `[B, N, A, 6]`, `stats` int32 `[B, N, 3]` (the packed store),
  `invalid_actions` `[B, A]` (nonzero: invalid at the root), `keys` raw
  threefry keys uint32 `[B, 2]`, `scale` float32 `[S + 2]`: `sqrt(n) *
  pb_c(n)` for every visit count `n` (`_fast_search._exploration_scale`).  `legal`: None,
  or the nodes' legal-move masks `[B, N, A]`, with which the qtransform's
  value of an illegal child is `masked_score` (the planner's
  `search._legal_qtransform` over mctx's default).  `cache`: None, or uint32
  zeros of `select_cache_shape(edges.shape, masked=legal is not None)` at
  the search's start, then what this returned (updated in place): each
  node's visited children and its two unvisited children of highest prior
  (with `legal`: two legal and two illegal ones, and the node's mask), with
  which a node visited again is scored from those instead of all `A`
  children (same actions).  Without it the returned cache is None."""
  batch = edges.shape[0]
  out = jax.ShapeDtypeStruct((batch,), jnp.int32)
  legal = (jnp.zeros([0], bool) if legal is None
           else jnp.asarray(legal).astype(bool))
  attrs = dict(max_depth=np.int32(max_depth),
               masked_score=np.float32(masked_score))
  if cache is None:
    return tuple(jax.ffi.ffi_call("mctx_planner_muzero_descend",
                                  (out, out, out), vmap_method="sequential")(
        edges, stats, invalid_actions != 0, legal, keys, scale,
        **attrs)) + (None,)
  return jax.ffi.ffi_call(
      "mctx_planner_muzero_descend_cached",
      (out, out, out, jax.ShapeDtypeStruct(cache.shape, jnp.uint32)),
      input_output_aliases={6: 3}, vmap_method="sequential")(
          edges, stats, invalid_actions != 0, legal, keys, scale, cache,
          **attrs)


def gumbel_descend(edges, stats, max_depth: int, mix, *, root_action=None,
                   root=None, legal=None, cache=None, rows=None):
  """`(node, action, child, cache, rows)`, the first three int32 `[B]`: as
  `_fast_search._descend` with Gumbel MuZero's selections (`cache` and
  `rows` None where they were not given).

  `edges` int32 `[B, N, A, 6]`, `stats` int32 `[B, N, 3]` (the packed store,
  prior logits in the edges).  The root's action: `root_action` int32 `[B]`
  (chosen by XLA), or Sequential Halving's from `root = (gumbel, invalid,
  table)`: the root's Gumbel noise `[B, A]`, its invalid actions `[B, A]`
  and the table of considered visit counts `[max_considered + 1, S]`
  (`_fast_search._considered_visits_table`; use only where
  `gumbel_exact(..., root=True)`).  `mix`: `(value_scale, maxvisit_init,
  masked_score)` of `_fast_search._native_gumbel`; with `masked_score` not
  None, `legal` holds the nodes' legal-move masks `[B, N, A]`.  `cache`:
  float32 `[B, N, A]` zeros at the search's start, then what this returned:
  the nodes' prior probabilities, computed once per node (updated in
  place), or None.  `rows`: uint32 `gumbel_rows_shape(edges.shape)` zeros
  at the search's start, then what this returned (updated in place), or
  None: the rows that let the kernel decide most selections from a node's
  visited children and best unvisited one (`GumbelRow` in tree_kernels.cc;
  without `legal`, from 16 to 254 actions; `cache` is then of little use:
  the nodes scored in full compute their probabilities without it).  Use
  it only where `gumbel_exact`."""
  batch = edges.shape[0]
  out = jax.ShapeDtypeStruct((batch,), jnp.int32)
  given = (cache is not None, rows is not None)
  value_scale, maxvisit_init, masked_score = mix
  legal = (jnp.zeros([0], bool) if masked_score is None
           else jnp.asarray(legal).astype(bool))
  cache = jnp.zeros([0], jnp.float32) if cache is None else cache
  rows = jnp.zeros([0], jnp.uint32) if rows is None else rows
  if root_action is not None:
    root_action = jnp.asarray(root_action, jnp.int32)
    gumbel, invalid, table = (jnp.zeros([0], jnp.float32),
                              jnp.zeros([0], bool), jnp.zeros([1, 0], jnp.int32))
  else:
    root_action = jnp.zeros([0], jnp.int32)
    gumbel, invalid, table = root
    gumbel = jnp.asarray(gumbel, jnp.float32)
    invalid = jnp.asarray(invalid) != 0
    table = jnp.asarray(table, jnp.int32)
  node, action, child, cache, rows = jax.ffi.ffi_call(
      "mctx_planner_gumbel_descend",
      (out, out, out, jax.ShapeDtypeStruct(cache.shape, jnp.float32),
       jax.ShapeDtypeStruct(rows.shape, jnp.uint32)),
      input_output_aliases={7: 3, 8: 4}, vmap_method="sequential")(
          edges, stats, root_action, gumbel, invalid, table, legal, cache,
          rows,
          max_depth=np.int32(max_depth), value_scale=np.float32(value_scale),
          maxvisit_init=np.float32(maxvisit_init),
          masked_score=np.float32(0. if masked_score is None
                                  else masked_score))
  return (node, action, child, cache if given[0] else None,
          rows if given[1] else None)


def _gumbel_scores(logits, qvalues, visits, raw_value, legal, gumbel,
                   invalid, considered, *, mix, root: bool):
  """The kernel's Gumbel scores of independent rows (`[R, A]` each,
  `raw_value` and `considered` `[R]`, `legal` used only where `mix` masks):
  the interior's, or with `root` the root's, from the Gumbel noise, the
  invalid actions and the considered visit counts.  What `gumbel_exact`
  compares with XLA's."""
  value_scale, maxvisit_init, masked_score = mix
  if masked_score is None:
    legal = jnp.zeros([0], bool)
  if not root:
    gumbel, invalid, considered = (jnp.zeros([0], jnp.float32),
                                   jnp.zeros([0], bool),
                                   jnp.zeros([0], jnp.int32))
  return jax.ffi.ffi_call(
      "mctx_planner_gumbel_scores",
      jax.ShapeDtypeStruct(logits.shape, jnp.float32))(
          logits, qvalues, visits, raw_value, legal, gumbel, invalid,
          considered, value_scale=np.float32(value_scale),
          maxvisit_init=np.float32(maxvisit_init),
          masked_score=np.float32(0. if masked_score is None else
                                  masked_score))


def _probe_rows(num_actions: int, seed: int = 0):
  """Random nodes for `gumbel_exact`: logits, q-values, visit counts (half
  of them zero, some rows unvisited), raw values and legal-move masks, at
  most 2048 numbers per array: XLA:CPU hands larger element-wise fusions
  outside loops to YNNPACK, whose rounding is not the one of the search's
  loops (small gathered rows, which XLA emits itself)."""
  rows = max(16, 2048 // num_actions)
  rng = np.random.default_rng(seed)
  shape = (rows, num_actions)
  logits = (rng.normal(size=shape) * rng.choice([0.1, 1., 5.], (rows, 1)))
  visits = rng.integers(0, 6, shape) * (rng.random(shape) < 0.5)
  visits[: rows // 8] = 0
  legal = rng.random(shape) < 0.7
  legal[:, 0] = True
  invalid = rng.random(shape) < 0.2
  invalid[:, 0] = False
  # Half the rows consider the most visited count, half a random one.
  considered = np.where(rng.random(rows) < 0.5, visits.max(-1),
                        rng.integers(0, 6, rows))
  return (logits.astype(np.float32),
          rng.uniform(-1, 1, shape).astype(np.float32),
          visits.astype(np.int32),
          rng.uniform(-1, 1, rows).astype(np.float32), legal,
          rng.gumbel(size=shape).astype(np.float32), invalid,
          considered.astype(np.int32))


def gumbel_exact(num_actions: int, qtransform, root: bool = False) -> bool:
  """Whether the native Gumbel descent rounds as XLA does for nodes of
  `num_actions` children under `qtransform` (a qtransform that
  `_fast_search._native_gumbel` accepts) on this machine: its interior
  selection, or with `root` its root selection; cached per kind, number of
  actions and constants.

  The kernel mirrors XLA's `exp` and sums a row as XLA:CPU (jaxlib 0.10)
  does: from 0 in order up to 32 elements, in padded windows of 32 beyond
  (its tree-reduction pass); but XLA vectorizes some rows of 23 to 32
  elements, and another jaxlib may change any of it.  So before the first
  use, the kernel's scores of random nodes are compared bit for bit with
  Gumbel's scores under `qtransform` compiled by XLA
  (`_fast_search.gumbel_reference_scores`); where they differ the search
  keeps XLA's selection there (one log line).  Needs `available()`."""
  from mctx_planner import _fast_search  # pylint: disable=g-import-not-at-top
  mix = _fast_search._native_gumbel(qtransform)  # pylint: disable=protected-access
  if mix is None:
    return False
  cache_key = (root, num_actions, *mix)
  if cache_key not in _GUMBEL_EXACT:
    rows = _probe_rows(num_actions)
    reference = functools.partial(_fast_search.gumbel_reference_scores,
                                  qtransform=qtransform, root=root)
    ours = functools.partial(_gumbel_scores, mix=mix, root=root)
    # Run now (also while a search is being traced), on the CPU.
    with jax.ensure_compile_time_eval(), jax.default_device(
        jax.devices("cpu")[0]):
      ours = np.asarray(jax.jit(ours)(*rows))
      xla = np.asarray(jax.jit(reference)(*rows))
    exact = bool(np.array_equal(ours.view(np.uint32), xla.view(np.uint32)))
    if not exact:
      _log.info("mctx_planner: the native Gumbel %s selection does not round "
                "as XLA for %d actions here; XLA's is used",
                "root" if root else "interior", num_actions)
    _GUMBEL_EXACT[cache_key] = exact
  return _GUMBEL_EXACT[cache_key]


def expand_backup(stats, edges, links, parent, action, child, value, reward,
                  discount, record, rows=None, lazy_edges: bool = True):
  """`(stats, edges, links, rows)` after a simulation's expansion and backup,
  in place: the writes of `_fast_search._expand` to the packed store (node
  `child` gets its visit, `value`, its link to `(parent, action)` with
  `reward` and `discount`, and its children's priors `record`; that edge
  gets the reward, the discount and the child), then mctx's backward pass
  from `child` (as `_fast_search._backup`).  Indices int32 `[B]`, `value`,
  `reward`, `discount` `[B]` and `record` `[B, A]`, as float32.

  `rows`: None (returned as None), or `muzero_descend`'s unmasked selection
  cache (uint32 `select_cache_shape(edges.shape)`, `[B, N, 16]`, up to 64
  actions), in which node `child`'s row is built from its priors and the
  parent's row is told the edge's child, so that descents read rows more
  often than records (same actions).  With `rows` and `lazy_edges`, the
  backup leaves the edges of nodes whose rows name at most two visited
  children: their visit counts and values are their children's statistics,
  which is where the descent and `unpack_edges` read them (`LazyEdges` in
  tree_kernels.cc)."""
  if rows is not None:  # the fused target without its descent
    return expand_descend(
        stats, edges, links, parent, action, child, value, reward, discount,
        record, rows, jnp.zeros([0], bool), jnp.zeros([0], jnp.uint32),
        jnp.zeros([0], jnp.float32), 0, False, lazy_edges=lazy_edges)[:4]
  return expand_backup_gumbel(stats, edges, links, parent, action, child,
                              value, reward, discount, record,
                              jnp.zeros([0], jnp.uint32))[:3] + (None,)


def expand_backup_gumbel(stats, edges, links, parent, action, child, value,
                         reward, discount, record, rows):
  """`expand_backup` that also builds node `child`'s row in `gumbel_descend`'s
  `rows` (uint32 `gumbel_rows_shape(edges.shape)`, 16 to 254 actions) from
  its logits `record`, so that the descent decides the node's first
  selection from its row too: `(stats, edges, links, rows)`, in place
  (`rows` empty: `expand_backup`)."""
  args, shapes = _expansion_operands(stats, edges, links, parent, action,
                                     child, value, reward, discount, record)
  return tuple(jax.ffi.ffi_call(
      "mctx_planner_expand_backup",
      shapes + (jax.ShapeDtypeStruct(rows.shape, jnp.uint32),),
      input_output_aliases={0: 0, 1: 1, 2: 2, 10: 3},
      vmap_method="sequential")(*args, rows))


def _expansion_operands(stats, edges, links, parent, action, child, value,
                        reward, discount, record):
  """The expansion's operands as the kernels take them (indices int32, the
  rest float32), and the result shapes of the store's three arrays."""
  f32 = lambda x: jnp.asarray(x).astype(jnp.float32)
  i32 = lambda x: jnp.asarray(x, jnp.int32)
  args = (stats, edges, links, i32(parent), i32(action), i32(child),
          f32(value), f32(reward), f32(discount), f32(record))
  shapes = tuple(jax.ShapeDtypeStruct(x.shape, jnp.int32)
                 for x in (stats, edges, links))
  return args, shapes


def expand_descend(stats, edges, links, parent, action, child, value, reward,
                   discount, record, rows, invalid_actions, keys, scale,
                   max_depth: int, descend, lazy_edges: bool = True):
  """`expand_backup(..., rows=rows)` then, if the scalar `descend`, the next
  simulation's `muzero_descend(edges, stats, invalid_actions, keys, scale,
  max_depth, cache=rows)` (unmasked), in one call: `(stats, edges, links,
  rows, node, action, child)`, the same values as those two calls (node,
  action and child zeros where `descend` is false).  Each example's tree is
  backed up right before its next descent, which then finds its path in
  cache (MuZero's paths are ~90 levels deep with 64 actions).  `lazy_edges`:
  as `expand_backup`'s."""
  args, shapes = _expansion_operands(stats, edges, links, parent, action,
                                     child, value, reward, discount, record)
  out = jax.ShapeDtypeStruct((edges.shape[0],), jnp.int32)
  return tuple(jax.ffi.ffi_call(
      "mctx_planner_expand_descend",
      shapes + (jax.ShapeDtypeStruct(rows.shape, jnp.uint32), out, out, out),
      input_output_aliases={0: 0, 1: 1, 2: 2, 10: 3},
      vmap_method="sequential")(
          *args, rows, invalid_actions != 0, keys, scale,
          jnp.asarray(descend, bool), max_depth=np.int32(max_depth),
          lazy_edges=bool(lazy_edges)))


def top_k_rows(x, k: int):
  """`jax.lax.top_k(x, k)` of float32 `x` `[..., n]` (`1 <= k <= n`) by the
  native kernel: the same values and int32 indices (descending by the
  float bits' total order, equal values by lower index)."""
  shape = x.shape[:-1] + (k,)
  return tuple(jax.ffi.ffi_call(
      "mctx_planner_top_k",
      (jax.ShapeDtypeStruct(shape, jnp.float32),
       jax.ShapeDtypeStruct(shape, jnp.int32)),
      vmap_method="broadcast_all")(x))


def store_init(first, num_nodes: int, advise: bool = True):
  """A store `[B, num_nodes, ...]` of `first`'s dtype whose node 0 is
  `first[B, ...]` and every other node zeros, written in one pass; with
  `advise`, into memory advised for transparent huge pages first (Linux)."""
  first = jnp.asarray(first)
  return jax.ffi.ffi_call(
      "mctx_planner_store_init",
      jax.ShapeDtypeStruct((first.shape[0], num_nodes) + first.shape[1:],
                           first.dtype),
      vmap_method="sequential")(first, advise=bool(advise))


def unpack_edges(edges, stats, with_logits: bool):
  """The packed edge store `[B, N, A, 6]` int32 as mctx's tree arrays, in
  one pass: `(children_index, children_visits)` int32 and
  `(children_rewards, children_discounts, children_values,
  children_prior_logits)` float32, each `[B, N, A]` (the last None unless
  `with_logits`: the store's first field then holds the logits).  An
  expanded child's visit count and value come from its statistics, `stats`
  `[B, N, 3]` int32 (the edges of MuZero's narrow nodes may be stale: see
  `LazyEdges` in tree_kernels.cc)."""
  shape = edges.shape[:-1]
  i32 = jax.ShapeDtypeStruct(shape, jnp.int32)
  f32 = jax.ShapeDtypeStruct(shape, jnp.float32)
  out = jax.ffi.ffi_call(
      "mctx_planner_unpack_edges",
      (i32, i32, f32, f32, f32,
       f32 if with_logits else jax.ShapeDtypeStruct((0,), jnp.float32)),
      vmap_method="sequential")(edges, stats)
  return tuple(out[:5]) + ((out[5] if with_logits else None),)
