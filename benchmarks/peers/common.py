"""Shared helpers of the peers benchmark (no JAX import: also used by the
LightZero venv, which has numpy<2, torch and no JAX).

* `NumpyNet`: the MLP of `benchmarks/search_overhead.py` in float32 numpy,
  with the weights the driver exported from the JAX parameters.
* `load_work`: reads the exported weights and root inputs of one (H, A).
* `time_interleaved`: median wall times of several callables, measured in
  rounds so that load changes hit all of them alike.
* `env_info` / `versions`: the machine and package facts stored in every row.
* `add_grid_args` / `iter_configs`: the command line every peer shares.
"""

import argparse
import functools
import json
import os
import platform
import socket
import statistics
import sys
import time
from importlib import metadata
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

EMBED = 32
DISCOUNT = 0.997
PB_C_INIT = 1.25
PB_C_BASE = 19652.0


def weights_path(work_dir: str, hidden: int, num_actions: int) -> str:
  """Path of the exported network of one (hidden, actions) pair."""
  return os.path.join(work_dir, "net_H%d_A%d.npz" % (hidden, num_actions))


class Work(NamedTuple):
  """The weights and the root inputs of one (hidden, actions) pair."""
  params: Dict[str, np.ndarray]     # w1, action_embed, w2, w_out (float32)
  roots: Dict[int, Tuple[np.ndarray, np.ndarray, np.ndarray]]
  # batch -> (root prior logits [B, A], root value [B], embedding [B, EMBED])


def load_work(work_dir: str, hidden: int, num_actions: int) -> Work:
  """Loads what `run_peers.py` exported for one (hidden, actions) pair."""
  path = weights_path(work_dir, hidden, num_actions)
  if not os.path.exists(path):
    raise FileNotFoundError(
        "%s is missing: run benchmarks/peers/run_peers.py (it exports the "
        "JAX weights first), or `run_peers.py --export-only --work-dir %s`"
        % (path, work_dir))
  with np.load(path) as z:
    params = {k: np.ascontiguousarray(z[k], np.float32)
              for k in ("w1", "action_embed", "w2", "w_out")}
    roots = {}
    for key in z.files:
      if key.startswith("emb_"):
        b = int(key[4:])
        roots[b] = (np.ascontiguousarray(z["logits_%d" % b], np.float32),
                    np.ascontiguousarray(z["value_%d" % b], np.float32),
                    np.ascontiguousarray(z["emb_%d" % b], np.float32))
  return Work(params, roots)


class NetOut(NamedTuple):
  """One recurrent step: as `mctx.RecurrentFnOutput` plus the embedding."""
  logits: np.ndarray       # [B, A]
  value: np.ndarray        # [B]
  reward: np.ndarray       # [B]
  discount: np.ndarray     # [B]
  embedding: np.ndarray    # [B, EMBED]


class NumpyNet:
  """`search_overhead.recurrent_fn` in float32 numpy.

  relu(emb @ w1 + action_embed[a]) -> relu(. @ w2) -> . @ w_out, split into
  logits, tanh value, tanh reward and tanh next embedding; discount 0.997.
  """

  def __init__(self, params: Dict[str, np.ndarray]):
    self.w1 = params["w1"]
    self.action_embed = params["action_embed"]
    self.w2 = params["w2"]
    self.w_out = params["w_out"]
    self.num_actions = self.action_embed.shape[0]

  def __call__(self, embedding: np.ndarray, action: np.ndarray) -> NetOut:
    a = self.num_actions
    h = embedding @ self.w1
    h += self.action_embed[action]
    np.maximum(h, 0, out=h)
    h = h @ self.w2
    np.maximum(h, 0, out=h)
    out = h @ self.w_out
    value = np.tanh(out[:, a])
    return NetOut(
        logits=out[:, :a],
        value=value,
        reward=np.tanh(out[:, a + 1]),
        discount=np.full_like(value, DISCOUNT),
        embedding=np.tanh(out[:, a + 2:]))


def work_loader(work_dir: str) -> Callable[[int, int], Work]:
  """``(hidden, num_actions) -> Work``, each file loaded once per process."""
  return functools.lru_cache(maxsize=None)(
      lambda hidden, num_actions: load_work(work_dir, hidden, num_actions))


def network_only(net: Callable[[np.ndarray, np.ndarray], NetOut],
                 embedding: np.ndarray, num_actions: int,
                 num_simulations: int) -> np.ndarray:
  """S calls of `net` on the batch, chained through the embedding.

  The same work as `search_overhead.network_only` (action `(b + i) % A`).
  """
  batch = embedding.shape[0]
  arange = np.arange(batch)
  emb = embedding
  for i in range(num_simulations):
    emb = net(emb, (arange + i) % num_actions).embedding
  return emb


def time_interleaved(fns: Sequence[Callable[[], object]], budget_s: float,
                     min_reps: int = 3, max_reps: int = 10,
                     slow_s: float = 20.0) -> List[List[float]]:
  """Wall times of each callable, measured in rounds after one warm-up call.

  Every round calls each function once, so that load changes on a shared
  machine hit all of them alike.  Rounds stop after `budget_s` seconds once
  `min_reps` rounds are done, or after `max_reps`.  A function whose
  warm-up took more than `slow_s` seconds is timed once only.
  """
  warm = []
  for fn in fns:
    t0 = time.perf_counter()
    fn()
    warm.append(time.perf_counter() - t0)
  times: List[List[float]] = [[] for _ in fns]
  start = time.perf_counter()
  for rep in range(max_reps):
    for i, fn in enumerate(fns):
      if times[i] and warm[i] > slow_s:
        continue
      t0 = time.perf_counter()
      fn()
      times[i].append(time.perf_counter() - t0)
    if rep + 1 >= min_reps and time.perf_counter() - start > budget_s:
      break
  return times


def median(xs: Sequence[float]) -> float:
  return float(statistics.median(xs))


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (or `platform.processor()`)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def versions(*packages: str) -> Dict[str, Optional[str]]:
  """python and numpy versions plus those of `packages` (None if absent)."""
  out: Dict[str, Optional[str]] = dict(python=platform.python_version(),
                                       numpy=np.__version__)
  for name in packages:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = None
  return out


def env_info(device: str, **extra) -> Dict[str, object]:
  """Machine facts stored in every row (threads: the relevant env vars)."""
  info = dict(
      device=device, cpu_model=cpu_model(), cpu_count=os.cpu_count(),
      hostname=socket.gethostname(), platform=platform.platform(),
      executable=sys.executable,
      thread_env={k: os.environ[k] for k in (
          "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
          "XLA_FLAGS") if k in os.environ})
  info.update(extra)
  return info


def loadavg() -> List[float]:
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return []


def add_grid_args(p: argparse.ArgumentParser, policies: Sequence[str]) -> None:
  """The command line shared by all peers (the driver passes all of it)."""
  p.add_argument("--json", required=True, metavar="OUT.jsonl",
                 help="append one JSON record per configuration to this file")
  p.add_argument("--work-dir", required=True,
                 help="folder with net_H<h>_A<a>.npz exported by run_peers.py")
  p.add_argument("--policies", nargs="+", default=list(policies),
                 choices=list(policies))
  p.add_argument("--hidden", nargs="+", type=int, default=[256])
  p.add_argument("--actions", nargs="+", type=int, default=[9, 64])
  p.add_argument("--batch", nargs="+", type=int, default=[64, 256, 1024])
  p.add_argument("--sims", nargs="+", type=int, default=[64, 128, 256])
  p.add_argument("--budget", type=float, default=3.0,
                 help="seconds of timed rounds per configuration (after "
                 "--min-reps rounds, no new round starts past this)")
  p.add_argument("--min-reps", type=int, default=3)
  p.add_argument("--max-reps", type=int, default=10)
  p.add_argument("--slow-s", type=float, default=20.0,
                 help="time a search only once if its warm-up took longer")
  p.add_argument("--check", nargs="*", default=[], metavar="BxS",
                 help="sanity-check configurations (e.g. 64x32): run once per "
                 "policy and A at the first --hidden, untimed, root visit "
                 "counts written to --check-dir")
  p.add_argument("--check-dir", default=None,
                 help="folder for the check outputs (check_<peer>_*.npz)")
  p.add_argument("--check-only", action="store_true",
                 help="run the --check configurations only, no timing")


def iter_configs(args) -> Iterator[Tuple[str, int, int, int, int]]:
  """(policy, hidden, actions, batch, sims) in the order peers run them."""
  if args.check_only:
    return
  for policy in args.policies:
    for hidden in args.hidden:
      for num_actions in args.actions:
        for batch in args.batch:
          for sims in args.sims:
            yield policy, hidden, num_actions, batch, sims


def iter_checks(args) -> Iterator[Tuple[str, int, int, int, int]]:
  for policy in args.policies:
    for num_actions in args.actions:
      for spec in args.check:
        batch, sims = (int(x) for x in spec.lower().split("x"))
        yield policy, args.hidden[0], num_actions, batch, sims


def check_path(check_dir: str, peer: str, policy: str, hidden: int,
               num_actions: int, batch: int, sims: int) -> str:
  return os.path.join(check_dir, "check_%s_%s_H%d_A%d_B%d_S%d.npz" % (
      peer, policy, hidden, num_actions, batch, sims))


def write_row(path: str, row: Dict[str, object]) -> None:
  """Appends one JSON line (flushed, so that a crash keeps earlier rows)."""
  with open(path, "a") as f:
    f.write(json.dumps(row) + "\n")


def progress(peer: str, row: Dict[str, object], index: int = 0,
             total: int = 0) -> None:
  """One line per configuration on stdout (the driver relays it)."""
  if row.get("skipped"):
    msg = "skipped (%s)" % row["skipped"]
  else:
    msg = "search %.1f ms  net-only %.1f ms  ratio %.2f  %.0f sims/s" % (
        row["search_s"] * 1e3, row["net_s"] * 1e3, row["ratio"],
        row["sims_per_s"])
    if "compile_s" in row:
      msg += "  compile %.1f s" % row["compile_s"]
  print("[%s]%s %s H=%d A=%d B=%d S=%d: %s  (load %s)" % (
      peer, " %d/%d" % (index, total) if total else "", row["policy"], row["hidden"], row["actions"], row["batch"],
      row["sims"], msg, row.get("loadavg_after")), flush=True)


def finish_row(row: Dict[str, object], search_times: List[float],
               net_times: List[float]) -> Dict[str, object]:
  """Adds medians, sims/s and the search/network-only ratio."""
  row["search_s"] = median(search_times)
  row["net_s"] = median(net_times)
  row["search_times_s"] = [round(t, 6) for t in search_times]
  row["net_times_s"] = [round(t, 6) for t in net_times]
  row["reps"] = len(search_times)
  row["ratio"] = row["search_s"] / row["net_s"]
  row["sims_per_s"] = row["batch"] * row["sims"] / row["search_s"]
  return row


def tree_depths(parents: np.ndarray) -> Tuple[float, int]:
  """(mean, max) depth of the non-root nodes, from a [B, N] parents array."""
  parents = np.asarray(parents)
  depth = np.zeros(parents.shape, np.int64)
  rows = np.arange(parents.shape[0])
  for i in range(1, parents.shape[1]):
    depth[:, i] = depth[rows, np.maximum(parents[:, i], 0)] + 1
  return float(depth[:, 1:].mean()), int(depth.max())
