"""Keeping freed memory in the process, so that big buffers skip page faults.

Every run of a compiled XLA:CPU program allocates its outputs and temporaries
afresh: for a fast search with 64 actions, B = 256 and S = 256, about 100 MB
of tree store and 100 MB of returned tree. glibc's malloc serves blocks that
large with ``mmap`` and returns them with ``munmap`` (blocks over 32 MB
always; smaller ones from per-thread arenas that it trims back), so each run
faults every page in again, 4 KB at a time, and the kernel zeroes each page.
On the 2-core virtual machines of docs/benchmarks.md a fault costs about a
microsecond; a search at B = 256, S = 256 took 15,000 of them.

:func:`retain_freed_memory` tells glibc to keep what is freed for the next
allocation; its docstring gives the settings, the measured gain and what it
costs (docs/benchmarks.md, "Freed memory kept", has the numbers in full).
"""

import ctypes
import ctypes.util
import os
from typing import Optional

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_TRIM_MAX = 2**31 - 1

_ENV = "MCTX_PLANNER_RETAIN_MEMORY"


def _glibc() -> Optional[ctypes.CDLL]:
  """The C library if it is glibc (has `mallopt` and `gnu_get_libc_version`)."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.gnu_get_libc_version  # pylint: disable=pointless-statement
    libc.mallopt  # pylint: disable=pointless-statement
  except (OSError, AttributeError):
    return None
  return libc


def _jax_backends_started() -> bool:
  """Whether JAX has created a backend (and with it XLA's thread pool)."""
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  started = getattr(xla_bridge, "backends_are_initialized", None)
  return bool(started()) if callable(started) else False


def retain_freed_memory() -> str:
  """Keeps memory freed by this process mapped for its next allocations.

  Call it first thing in a program that runs big searches on CPU (Linux,
  glibc), before JAX runs anything: XLA:CPU's per-run buffers (the tree
  store, the returned tree) then reuse pages already faulted in instead of
  mapping fresh ones. Measured on a 2-core AMD EPYC: 64-action searches
  with a hidden-256 MLP 1.04x to 1.21x faster (MuZero) and 0.98x to 1.17x
  (Gumbel MuZero); but small programs 4% to 7% slower and
  ``mctx-planner train``, which compiles a lot, 1.2x slower, since all
  threads then share one malloc arena; and the process keeps its peak heap.
  So the library never calls it for you. Settings: one arena
  (``M_ARENA_MAX`` = 1), no ``mmap`` (``M_MMAP_MAX`` = 0), no trimming
  (``M_TRIM_THRESHOLD`` at its maximum); the arena setting binds only
  threads created afterwards. ``MCTX_PLANNER_RETAIN_MEMORY=0`` makes it a
  no-op.

  The returned status is one of: ``"applied"``; ``"applied, but JAX had
  started: threads that exist keep their own malloc arenas"`` (the gain is
  partial: call it earlier); ``"not applied: $MCTX_PLANNER_RETAIN_MEMORY=0"``;
  ``"not applied: not glibc"`` (macOS, musl, Windows: nothing to do);
  ``"not applied: mallopt refused"``.

  Returns:
    What happened, as a status string (above).
  """
  if os.environ.get(_ENV, "1") == "0":
    return f"not applied: ${_ENV}=0"
  libc = _glibc()
  if libc is None:
    return "not applied: not glibc"
  ok = (libc.mallopt(_M_ARENA_MAX, 1) == 1) & (libc.mallopt(_M_MMAP_MAX, 0) == 1)
  ok &= libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_MAX) == 1
  if not ok:
    return "not applied: mallopt refused"
  if _jax_backends_started():
    return ("applied, but JAX had started: threads that exist keep their own "
            "malloc arenas")
  return "applied"
