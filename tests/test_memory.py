"""`retain_freed_memory`: freed blocks are reused without page faults.

Each case runs in a subprocess: the settings are the process's own.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from mctx_planner import _memory

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or _memory._glibc() is None,
    reason="glibc's malloc only (elsewhere retain_freed_memory does nothing)")

# Allocates 64 MB, writes it, frees it, then does the same again and prints
# the minor page faults of the second round (what a second search pays).
_SCRIPT = textwrap.dedent("""
    import ctypes, resource, sys
    import mctx_planner
    from mctx_planner import _memory
    if sys.argv[1] == "jax-first":
        import jax
        jax.devices()
    print(mctx_planner.retain_freed_memory())
    libc = _memory._glibc()
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 << 20
    def round_trip():
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)
        libc.free(p)
    round_trip()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    round_trip()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _run(mode, **env):
  out = subprocess.run([sys.executable, "-c", _SCRIPT, mode],
                       env={**os.environ, "GLIBC_TUNABLES": "", **env},
                       capture_output=True, text=True, timeout=120, check=True)
  status, faults = out.stdout.strip().splitlines()[-2:]
  return status, int(faults)


def test_freed_memory_is_reused_without_faults():
  status, faults = _run("plain")
  assert status == "applied"
  assert faults < 256  # 64 MB is 16384 pages of 4 KB


def test_opt_out_leaves_malloc_alone():
  status, faults = _run("plain", MCTX_PLANNER_RETAIN_MEMORY="0")
  assert status == "not applied: $MCTX_PLANNER_RETAIN_MEMORY=0"
  # glibc maps a block this big afresh each time: every page faults again
  # (2 MB pages where transparent huge pages are always on).
  assert faults >= 32


def test_says_when_jax_had_started():
  status, _ = _run("jax-first")
  assert status.startswith("applied, but JAX had started")
