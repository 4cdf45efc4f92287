"""Peers benchmark driver: the same MCTS work on four implementations.

Peers (one process each, started with their own interpreter):

  fast       mctx_planner._fast_search.{muzero,gumbel_muzero}_policy, jitted
  mctx       raw mctx.{muzero,gumbel_muzero}_policy, jitted
  numpy      a batched NumPy MuZero MCTS (peer_numpy.py), muzero only
  lightzero  LightZero 0.2.0's C++ ctree (muzero: ctree_muzero, gumbel:
             ctree_gumbel_muzero), network in numpy between traverse and
             backpropagate; runs in the LightZero venv
  lightzero_torch  (optional) the same with the network in torch, 1 thread

The work is the MLP of benchmarks/search_overhead.py (EMBED 32, hidden H,
A actions, weights `make_params(H, A, seed=0)`, roots `make_root(params, B,
seed=1)`).  This driver exports those weights and roots from JAX to .npz
files first; the numpy and LightZero peers rebuild the same network in
float32 numpy from them.  Every peer times, per configuration, the search
(median of interleaved repeats after a warm-up; JAX compile time excluded and
reported apart) and a network-only baseline (S chained calls of the network
on the batch, in the peer's own framework), and writes one JSON row per
configuration.  The driver then merges the rows, adds the speedup of `fast`
over each peer (peer time / fast time on the same config), runs the sanity
checks, and writes JSON + markdown.  It exits with status 1 when a peer
process failed or was killed by ``--peer-timeout`` (a peer whose interpreter
is missing is skipped, with a message).

  python benchmarks/peers/run_peers.py --quick          # ~2-4 min on 2 cores
  python benchmarks/peers/run_peers.py                  # full grid (long)
  python benchmarks/peers/run_peers.py --peers fast lightzero --batch 256 \\
      --sims 128 --actions 64 --policies muzero         # one config

Run it with the library's venv (it needs jax to export the weights).  The
LightZero peer needs its own venv (setup_lightzero_venv.sh); point to it
with --lz-python or $LIGHTZERO_PYTHON (default:
benchmarks/peers/.venv-peers/bin/python).  Rows are appended to per-peer
.jsonl files in --work-dir as they finish, so a stopped run keeps them.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import common  # pylint: disable=g-import-not-at-top

ALL_PEERS = ["fast", "mctx", "numpy", "lightzero", "lightzero_torch"]
DEFAULT_PEERS = ["fast", "mctx", "numpy", "lightzero"]
PEER_SCRIPTS = dict(fast="peer_fast.py", mctx="peer_mctx.py",
                    numpy="peer_numpy.py", lightzero="peer_lightzero.py",
                    lightzero_torch="peer_lightzero.py")
PEER_POLICIES = dict(fast=["muzero", "gumbel"], mctx=["muzero", "gumbel"],
                     numpy=["muzero"], lightzero=["muzero", "gumbel"],
                     lightzero_torch=["muzero", "gumbel"])


def export_work(work_dir: str, hiddens: List[int], actions: List[int],
                batches: List[int]) -> None:
  """Writes net_H<h>_A<a>.npz: JAX weights and root outputs per batch."""
  sys.path.insert(0, os.path.dirname(HERE))  # benchmarks/
  import search_overhead as so  # pylint: disable=g-import-not-at-top
  os.makedirs(work_dir, exist_ok=True)
  for h in hiddens:
    for a in actions:
      params = so.make_params(h, a, seed=0)
      arrays = {k: np.asarray(v, np.float32) for k, v in params.items()}
      for b in batches:
        root = so.make_root(params, b, seed=1)
        arrays["emb_%d" % b] = np.asarray(root.embedding, np.float32)
        arrays["logits_%d" % b] = np.asarray(root.prior_logits, np.float32)
        arrays["value_%d" % b] = np.asarray(root.value, np.float32)
      np.savez(common.weights_path(work_dir, h, a), **arrays)
  print("exported weights and roots to %s" % work_dir, flush=True)


def default_lz_python() -> str:
  return os.environ.get("LIGHTZERO_PYTHON") or os.path.join(
      HERE, ".venv-peers", "bin", "python")


def peer_command(peer: str, args, jsonl: str, check_dir: str) -> List[str]:
  python = args.lz_python if peer.startswith("lightzero") else args.lib_python
  policies = [p for p in args.policies if p in PEER_POLICIES[peer]]
  cmd = [python, os.path.join(HERE, PEER_SCRIPTS[peer]), "--json", jsonl,
         "--work-dir", args.work_dir, "--policies", *policies,
         "--hidden", *map(str, args.hidden),
         "--actions", *map(str, args.actions),
         "--batch", *map(str, args.batch), "--sims", *map(str, args.sims),
         "--budget", str(args.budget), "--min-reps", str(args.min_reps),
         "--max-reps", str(args.max_reps), "--slow-s", str(args.slow_s)]
  if args.check:
    cmd += ["--check", *args.check, "--check-dir", check_dir]
  if args.check_only:
    cmd += ["--check-only"]
  if peer == "mctx":
    cmd += ["--max-work", str(args.max_work)]
  if peer == "lightzero":
    cmd += ["--net", "numpy", "--gather", args.lz_gather]
  if peer == "lightzero_torch":
    cmd += ["--net", "torch", "--gather", args.lz_gather]
  return cmd


def peer_thread_env(peer: str, args) -> Dict[str, str]:
  """Thread settings of a peer process (recorded in its rows)."""
  if peer in ("fast", "mctx"):
    if args.jax_single_thread:  # (and pinned: `_pinned_to_one_cpu`)
      return dict(XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                             " --xla_cpu_multi_thread_eigen=false").strip())
    return {}
  if args.numpy_threads <= 0:
    return {}
  n = str(args.numpy_threads)
  return dict(OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)


def _pinned_to_one_cpu(cmd: List[str]) -> List[str]:
  """`cmd` run on one CPU: its interpreter pins itself to the first CPU this
  process may use, then execs `cmd` (the affinity survives the exec)."""
  cpu = min(os.sched_getaffinity(0))
  return [cmd[0], "-c",
          "import os, sys; os.sched_setaffinity(0, {%d}); "
          "os.execv(sys.argv[1], sys.argv[1:])" % cpu, *cmd]


def run_peer(peer: str, args, jsonl: str, check_dir: str) -> Tuple[int, float]:
  """Runs one peer process, relaying its output; (return code, seconds)."""
  cmd = peer_command(peer, args, jsonl, check_dir)
  if not os.path.exists(cmd[0]):
    print("!! %s: interpreter %s not found, peer skipped (see README.md)" %
          (peer, cmd[0]), flush=True)
    return -1, 0.0
  policies = [p for p in args.policies if p in PEER_POLICIES[peer]]
  if not policies:
    print("-- %s: none of the policies %s, skipped" % (peer, args.policies))
    return 0, 0.0
  print("== %s: %s" % (peer, " ".join(shlex.quote(c) for c in cmd)),
        flush=True)
  env = dict(os.environ, PYTHONUNBUFFERED="1",
             TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
  env.update(peer_thread_env(peer, args))
  t0 = time.perf_counter()
  if (args.jax_single_thread and peer in ("fast", "mctx") and
      hasattr(os, "sched_setaffinity")):
    cmd = _pinned_to_one_cpu(cmd)
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1)
  noisy = ("Warning", "warn(", "register_for_torch", "Gym has been",
           "Please upgrade", "Users of this version", "See the migration",
           "pyecharts", "numba", "If you want to use")
  # The relay below blocks until the peer closes its output, so the time
  # limit is a timer that kills the peer (a hung peer would hang the driver).
  timed_out = threading.Event()

  def kill():
    timed_out.set()
    proc.kill()

  timer = (threading.Timer(args.peer_timeout, kill)
           if args.peer_timeout is not None else None)
  if timer:
    timer.start()
  try:
    for line in proc.stdout:
      if args.verbose or not any(s in line for s in noisy):
        print("   " + line.rstrip(), flush=True)
    rc = proc.wait()
  finally:
    if timer:
      timer.cancel()
  if timed_out.is_set():
    print("!! %s: killed after --peer-timeout %g s" % (peer, args.peer_timeout),
          flush=True)
  seconds = time.perf_counter() - t0
  print("== %s done: rc=%d in %.0f s" % (peer, rc, seconds), flush=True)
  return rc, seconds


def read_rows(path: str) -> List[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def add_speedups(rows: List[dict]) -> None:
  """speedup_fast = this peer's time / fast's time on the same config."""
  key = lambda r: (r["policy"], r["hidden"], r["actions"], r["batch"],
                   r["sims"])
  fast = {key(r): r for r in rows if r["peer"] == "fast" and "search_s" in r}
  for r in rows:
    f = fast.get(key(r))
    if f is not None and "search_s" in r:
      r["speedup_fast"] = r["search_s"] / f["search_s"]


def _load_check(check_dir, peer, policy, h, a, b, s) -> Optional[dict]:
  path = common.check_path(check_dir, peer, policy, h, a, b, s)
  if not os.path.exists(path):
    return None
  with np.load(path) as z:
    return {k: z[k] for k in z.files}


def run_checks(args, check_dir: str, peers: List[str]) -> List[dict]:
  """Compares root visit counts between peers on the check configs."""
  out = []
  for policy, h, a, b, s in common.iter_checks(args):
    ref = _load_check(check_dir, "mctx", policy, h, a, b, s)
    for peer in peers:
      if peer == "mctx" or policy not in PEER_POLICIES[peer]:
        continue
      got = _load_check(check_dir, peer, policy, h, a, b, s)
      if got is None:
        continue
      c = dict(peer=peer, policy=policy, hidden=h, actions=a, batch=b,
               sims=s, vs="mctx")
      visits = got["visit_counts"]
      c["visit_sums_eq_S_pct"] = 100.0 * float((visits.sum(-1) == s).mean())
      if ref is not None:
        rv = ref["visit_counts"]
        c["visits_equal_pct"] = 100.0 * float(
            (visits == rv).all(-1).mean())
        c["argmax_visits_agree_pct"] = 100.0 * float(
            (visits.argmax(-1) == rv.argmax(-1)).mean())
        c["mean_abs_visit_diff"] = float(np.abs(visits - rv).mean())
        if "action" in got:
          c["action_agree_pct"] = 100.0 * float(
              (got["action"] == ref["action"]).mean())
      out.append(c)
      print("check %-15s %-6s A=%-3d B=%d S=%d: %s" % (
          peer, policy, a, b, s, ", ".join(
              "%s %.1f" % (k, v) for k, v in c.items()
              if k.endswith("_pct") or k == "mean_abs_visit_diff")),
            flush=True)
  return out


def markdown(meta: dict, rows: List[dict], checks: List[dict]) -> str:
  lines = [
      "# MCTS search peers on CPU", "",
      "Command: `%s`  " % meta["command"],
      "Date: %s  " % meta["date"],
      "CPU: %s (%s logical cores); load average at start %s, at end %s  " % (
          meta["cpu_model"], meta["cpu_count"], meta["loadavg_start"],
          meta["loadavg_end"]),
      "Versions: %s  " % "; ".join(
          "%s: %s" % (peer, ", ".join("%s %s" % kv for kv in vers.items()
                                       if kv[1]))
          for peer, vers in meta["versions"].items()),
      "Threads: torch 1; numpy/LightZero BLAS %s; XLA %s.  " % (
          meta["numpy_threads"] or "default",
          "1" if meta["jax_single_thread"] else "default (all cores)"),
      "Total time of the run: %.0f s" % meta["total_s"], "",
      "ms/search: median wall time of one batched search (JAX: jitted, "
      "compile excluded). search/net: search time / time of S chained "
      "network calls on the batch in the same framework. fast speedup: "
      "this row's time / the `fast` row's time on the same configuration.",
      "",
      "| peer | policy | H | A | B | S | ms/search | sims/s | net-only ms |"
      " search/net | fast speedup | depth mean/max | compile s | reps |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  if not rows:
    lines = lines[:-2] + ["(no timed rows)"]
  order = {p: i for i, p in enumerate(ALL_PEERS)}
  rows = sorted(rows, key=lambda r: (r["policy"], r["hidden"], r["actions"],
                                     r["batch"], r["sims"],
                                     order.get(r["peer"], 99)))
  for r in rows:
    head = "| %s | %s | %d | %d | %d | %d |" % (
        r["peer"], r["policy"], r["hidden"], r["actions"], r["batch"],
        r["sims"])
    if r.get("skipped"):
      lines.append(head + " skipped | | | | | | | |")
      continue
    lines.append(head + " %.1f | %.0f | %.1f | %.2f | %s | %s | %s | %d |" % (
        r["search_s"] * 1e3, r["sims_per_s"], r["net_s"] * 1e3, r["ratio"],
        "%.2fx" % r["speedup_fast"] if "speedup_fast" in r else "-",
        "%.1f/%d" % (r["mean_depth"], r["max_depth"])
        if "mean_depth" in r else "-",
        "%.1f" % r["compile_s"] if "compile_s" in r else "-", r["reps"]))
  if checks:
    lines += [
        "", "## Sanity checks (root visit counts vs raw mctx, no root noise)",
        "",
        "| peer | policy | H | A | B | S | visits sum to S % | visits equal %"
        " | argmax agree % | mean abs visit diff |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
      g = lambda k: "%.1f" % c[k] if k in c else "-"
      lines.append("| %s | %s | %d | %d | %d | %d | %s | %s | %s | %s |" % (
          c["peer"], c["policy"], c["hidden"], c["actions"], c["batch"],
          c["sims"], g("visit_sums_eq_S_pct"), g("visits_equal_pct"),
          g("argmax_visits_agree_pct"), g("mean_abs_visit_diff")))
    lines += [
        "", "fast and numpy should match raw mctx on (nearly) all roots (numpy "
        "has no random tie-break and its own float rounding in the network). "
        "LightZero's muzero normalises Q with tree-wide min-max statistics "
        "(delta 0.01) and does not count the root's network value as a "
        "visit, so it explores more broadly than mctx and its counts are not "
        "expected to equal mctx's; its gumbel ctree draws its own Gumbel "
        "noise (scale 10, own RNG), so argmax agreement there is "
        "meaningless. For LightZero the check is that visits sum to S."]
  if meta.get("peer_status"):
    bad = {p: s for p, s in meta["peer_status"].items() if s["rc"] != 0}
    if bad:
      lines += ["", "Peers that failed or were skipped: %s" % json.dumps(bad)]
  return "\n".join(lines) + "\n"


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true",
                 help="tiny grid: H 256, A 9, B 64 256, S 64, check 64x32, "
                 "budget 1 s (a few minutes on 2 cores)")
  p.add_argument("--peers", nargs="+", default=DEFAULT_PEERS,
                 choices=ALL_PEERS)
  p.add_argument("--policies", nargs="+", default=["muzero", "gumbel"],
                 choices=["muzero", "gumbel"])
  p.add_argument("--hidden", nargs="+", type=int, default=[256],
                 help="MLP hidden sizes (64 is an optional extra)")
  p.add_argument("--actions", nargs="+", type=int, default=[9, 64])
  p.add_argument("--batch", nargs="+", type=int, default=[64, 256, 1024])
  p.add_argument("--sims", nargs="+", type=int, default=[64, 128, 256])
  p.add_argument("--check", nargs="*", default=None, metavar="BxS",
                 help="sanity-check configs, run untimed for each policy and "
                 "A at the first H (default 128x64; --quick: 64x32; give no "
                 "value to skip)")
  p.add_argument("--budget", type=float, default=None,
                 help="seconds of timed rounds per configuration and peer "
                 "(default 3; --quick: 1)")
  p.add_argument("--min-reps", type=int, default=3)
  p.add_argument("--max-reps", type=int, default=10)
  p.add_argument("--slow-s", type=float, default=20.0,
                 help="time a search once only if its warm-up took longer")
  p.add_argument("--max-work", type=float, default=7e8,
                 help="raw mctx skips configs with B*S*S*A above this "
                 "(minutes per call on CPU); 0 or less: no limit")
  p.add_argument("--lib-python", default=sys.executable,
                 help="interpreter of the library venv (fast, mctx, numpy)")
  p.add_argument("--lz-python", default=default_lz_python(),
                 help="interpreter of the LightZero venv")
  p.add_argument("--numpy-threads", type=int, default=1,
                 help="BLAS threads (OMP/OPENBLAS/MKL_NUM_THREADS) of the "
                 "numpy and LightZero peers; 0: library default. 1 by "
                 "default: multi-threaded OpenBLAS on a loaded CPU makes "
                 "small matmuls 10-100x slower and very noisy")
  p.add_argument("--jax-single-thread", action="store_true",
                 help="run the JAX peers on one CPU, as the others: the "
                 "process pinned to one CPU (sched_setaffinity) and XLA_FLAGS "
                 "--xla_cpu_multi_thread_eigen=false; default: XLA's threads "
                 "on every CPU")
  p.add_argument("--lz-gather", choices=["vectorized", "lightzero"],
                 default="vectorized",
                 help="LightZero peer: gather leaf latents with one fancy "
                 "index (default) or LightZero's own Python loop")
  p.add_argument("--work-dir", default=None,
                 help="folder for exported weights, per-peer jsonl and check "
                 "files (default: a new temporary folder)")
  p.add_argument("--check-only", action="store_true",
                 help="run only the sanity checks (no timing)")
  p.add_argument("--export-only", action="store_true",
                 help="only export the weights to --work-dir")
  p.add_argument("--peer-timeout", type=float, default=None,
                 help="seconds after which a peer process is killed")
  p.add_argument("--out", default=None,
                 help="JSON output (default benchmarks/results/peers_cpu.json, "
                 "--quick: peers_cpu_quick.json); markdown next to it")
  p.add_argument("--verbose", action="store_true",
                 help="relay the peers' warnings too")
  args = p.parse_args()
  if args.max_work <= 0:
    args.max_work = float("inf")
  if args.quick:
    args.hidden, args.actions, args.batch, args.sims = [256], [9], [64, 256], [
        64]
  if args.budget is None:
    args.budget = 1.0 if args.quick else 3.0
  if args.check is None:
    args.check = ["64x32"] if args.quick else ["128x64"]
  out = args.out or os.path.join(
      os.path.dirname(HERE), "results",
      "peers_cpu_quick.json" if args.quick else "peers_cpu.json")
  md_path = os.path.splitext(out)[0] + ".md"
  args.work_dir = os.path.abspath(
      args.work_dir or tempfile.mkdtemp(prefix="mcts_peers_"))
  args.lz_python = os.path.abspath(args.lz_python)
  args.lib_python = os.path.abspath(args.lib_python)
  command = " ".join(shlex.quote(a) for a in ["python"] + sys.argv)
  loadavg_start = common.loadavg()
  print("work dir %s; load average %s" % (args.work_dir, loadavg_start),
        flush=True)

  check_batches = [int(c.lower().split("x")[0]) for c in args.check]
  export_work(args.work_dir, args.hidden, args.actions,
              sorted(set(args.batch) | set(check_batches)))
  if args.export_only:
    return
  check_dir = os.path.join(args.work_dir, "checks")
  status: Dict[str, dict] = {}
  rows: List[dict] = []
  t_start = time.perf_counter()
  for peer in args.peers:
    jsonl = os.path.join(args.work_dir, "rows_%s.jsonl" % peer)
    if os.path.exists(jsonl):
      os.remove(jsonl)
    rc, seconds = run_peer(peer, args, jsonl, check_dir)
    peer_rows = read_rows(jsonl)
    status[peer] = dict(rc=rc, seconds=round(seconds, 1), rows=len(peer_rows))
    rows += peer_rows
  add_speedups(rows)
  checks = run_checks(args, check_dir, args.peers) if args.check else []

  versions: Dict[str, dict] = {}   # peer -> versions of its interpreter
  for r in rows:
    versions.setdefault(r["peer"], r.get("versions", {}))
  meta = dict(
      command=command, date=datetime.datetime.now().isoformat(timespec="seconds"),
      cpu_model=common.cpu_model(), cpu_count=os.cpu_count(),
      hostname=platform.node(), loadavg_start=loadavg_start,
      loadavg_end=common.loadavg(),
      total_s=round(time.perf_counter() - t_start, 1), peer_status=status,
      versions=versions, torch_threads=1, numpy_threads=args.numpy_threads,
      jax_single_thread=args.jax_single_thread, work_dir=args.work_dir,
      grid=dict(policies=args.policies, hidden=args.hidden,
                actions=args.actions, batch=args.batch, sims=args.sims,
                check=args.check, max_work=args.max_work,
                lz_gather=args.lz_gather))
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(dict(meta, results=rows, checks=checks), f, indent=1)
  md = markdown(meta, rows, checks)
  with open(md_path, "w") as f:
    f.write(md)
  print()
  print(md)
  print("written to %s and %s" % (out, md_path))
  # A peer whose interpreter is missing was skipped (rc -1, said above); one
  # that crashed or timed out fails the command, after its results are saved.
  failed = {p: s["rc"] for p, s in status.items() if s["rc"] not in (0, -1)}
  if failed:
    print("peers that failed (return codes): %s" % failed, file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main()
