"""Compiling XLA:CPU programs whose kernels each run as one task.

XLA:CPU gives a kernel several tasks on its thread pool when its cost model
thinks the kernel is big. That model charges a fused gather or scatter with
the whole array it reads or writes, so every kernel of a search that touches
the tree store (over 512 KB on two CPUs) is split in two, although it moves a
few kilobytes. Handing half of such a kernel to another thread costs 1 to
3 us, more than the work (docs/benchmarks.md, "Why two threads slow small
searches down").

The split is decided at compile time from the CPUs the compiling process may
use (``NumSchedulableCPUs``, read by the thread that runs XLA's passes); no
XLA or JAX option sets it per program. :func:`single_task_compile` therefore
restricts every thread of the process to one CPU while a program compiles,
and gives each thread back its own CPU set afterwards. The program then
runs on all CPUs as before, but each of its element-wise, gather and scatter
kernels runs as one task; matrix products keep their own threading, which
the split does not govern.

Measured on 2 CPUs (fast backend, hidden-256 MLP): 1.06x to 1.53x faster in
21 of 24 cells at B = 64 and 256 (0.97x to 1.01x in 3), 0.78x to 0.98x at
B = 1024, where the kernels carry enough data for two threads to pay.
:func:`prefers_single_task` encodes that rule.
"""

import contextlib
import os
import threading
from typing import Dict, Iterator, Set

# Largest batch (per device) at which a search compiled with one task per
# kernel was measured faster on CPU: B = 64 and 256 gained up to 1.53x
# (0.97x to 1.01x in 3 of 24 cells), B = 512 did not (0.92x to 1.01x) and
# B = 1024 lost (0.78x to 0.98x); docs/benchmarks.md, "One task per kernel".
SINGLE_TASK_MAX_BATCH = 256

# Fewest tree entries (batch x nodes x actions) at which XLA splits the
# search's kernels: its per-edge records take about 24 bytes an entry, and a
# kernel is split from 512 KB. Below it nothing is split and compiling
# differently gains nothing (B = 1 to 32 with S = 16 to 64 measured 0.91x to
# 0.98x, the cost of telling input shapes apart on every call).
SINGLE_TASK_MIN_ENTRIES = 16384

_lock = threading.Lock()


def _thread_ids() -> Set[int]:
  try:
    return {int(t) for t in os.listdir("/proc/self/task")}
  except OSError:
    return set()


def _cpu_time(tid: int) -> int:
  """Clock ticks the thread has run (user + system), 0 if unknown."""
  try:
    with open(f"/proc/self/task/{tid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
  except (OSError, IndexError, ValueError):
    return 0


def can_take_effect() -> bool:
  """Whether :func:`single_task_compile` can change anything here: threads'
  CPU sets can be read and set (Linux), and the calling thread may use two
  CPUs or more (with one, XLA splits nothing anyway)."""
  return (hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")
          and len(os.sched_getaffinity(0)) >= 2)


@contextlib.contextmanager
def single_task_compile() -> Iterator[bool]:
  """While active, XLA:CPU compiles each kernel to run as one task.

  Every thread of the process is restricted to one CPU (spread over the
  calling thread's CPUs), and given its own CPU set back on exit (threads
  started meanwhile get the calling thread's). Compile, do not run, inside
  it: a program run inside it runs with one CPU per thread. Programs for
  other platforms (GPU, TPU) are unaffected.

  A no-op (yields ``False``) where threads' CPU sets cannot be read or set
  (not Linux, a sandbox that forbids it), when the process may use one CPU
  only, when nested, or while another thread is inside it. Yields ``True``
  when it took effect.

  Example::

      lowered = jax.jit(search).lower(params, key, root)
      with mp.single_task_compile():
          compiled = lowered.compile()
      out = compiled(params, key, root)   # runs on all CPUs
  """
  if not can_take_effect() or not _lock.acquire(blocking=False):
    yield False
    return
  saved: Dict[int, Set[int]] = {}
  tids = []
  try:
    mine = os.sched_getaffinity(0)
    cpus = sorted(mine)
    # One CPU per thread, spread round-robin, busiest threads first: the
    # thread that runs XLA's passes sees one CPU, while the compiler's
    # worker threads (the busiest after any earlier compile) keep separate
    # CPUs, so compiling takes no longer.
    tids = sorted(_thread_ids(), key=_cpu_time, reverse=True)
    try:
      for i, tid in enumerate(tids):
        try:
          own = os.sched_getaffinity(tid)
          os.sched_setaffinity(tid, {cpus[i % len(cpus)]})
          saved[tid] = own
        except ProcessLookupError:
          continue  # the thread ended meanwhile
    except OSError:
      _restore(saved, set(tids), mine)  # not allowed: leave all as it was
      saved = {}
      yield False
      return
    yield True
  finally:
    if saved:
      _restore(saved, set(tids), mine)
    _lock.release()


def _restore(saved: Dict[int, Set[int]], known: Set[int],
             default: Set[int]) -> None:
  """Gives each thread of ``saved`` its CPU set back, and threads started
  since (not in ``known``) the CPU set ``default``."""
  for tid in _thread_ids():
    cpus = saved.get(tid, None if tid in known else default)
    if cpus is None:
      continue
    try:
      os.sched_setaffinity(tid, cpus)
    except OSError:
      pass  # the thread ended meanwhile


def prefers_single_task(platform: str, batch_per_device: int,
                        num_simulations: int, num_actions: int) -> bool:
  """Whether a fast search was measured faster compiled with
  :func:`single_task_compile`: on CPU, with at most
  :data:`SINGLE_TASK_MAX_BATCH` examples per device and a tree of at least
  :data:`SINGLE_TASK_MIN_ENTRIES` entries (``batch x (num_simulations + 1) x
  num_actions``), large enough for XLA to split its kernels."""
  entries = batch_per_device * (num_simulations + 1) * num_actions
  return (platform == "cpu" and batch_per_device <= SINGLE_TASK_MAX_BATCH
          and entries >= SINGLE_TASK_MIN_ENTRIES)
