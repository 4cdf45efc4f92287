"""The benchmark suite in one command: search and training throughput on every
JAX backend present, one JSON per device, a merged markdown table and plots.

  python benchmarks/run_suite.py                 # full grid, every device
  python benchmarks/run_suite.py --quick         # tiny grid (~2 min on 2 cores)
  python benchmarks/run_suite.py --max-minutes 60 --only search
  python benchmarks/run_suite.py --markdown-only # re-merge suite_*.json

Measured on each device (cpu always; gpu / tpu when it is JAX's default
backend; ``--platforms`` to choose), inputs placed there with
``jax.device_put`` and jitted there:

1. search (``suite/search_bench.py``): for policies muzero / gumbel, MLP
   hidden H, actions A, batch B, simulations S: raw ``mctx`` and the ``fast``
   backend (``mctx_planner._fast_search``) on ``search_overhead.py``'s
   plain-jnp MLP, and the network alone (S chained calls, no tree): sims/s,
   search / network-only time, compile time, XLA's memory estimate (temp +
   output bytes) and, on GPU/TPU, the runtime's peak bytes in use. Raw mctx is
   skipped (recorded as ``skipped``) where ``B*S*S*A > --raw-max-work`` on
   CPU, where it takes minutes per call.
2. training (``suite/train_bench.py``): for each preset, self-play steps/s
   (the agent's own rollout, jitted alone), updates/s (from the time
   difference between the preset's iteration and one with 4x its updates)
   and the end-to-end iteration time, after one warm-up iteration.

A configuration that fails is recorded with ``status="error"`` and its
reason, and the run goes on; at the end the failures are listed and the exit
status is 1.

Output (``--out-dir``, default ``benchmarks/results``; ``--quick`` defaults to
``benchmarks/results/quick`` so that it never overwrites a full run):
``suite_<platform>_<device>.json`` per device, rewritten after every
configuration (a stopped run keeps its results; records of configurations
this run does not repeat are kept, ``--fresh`` drops them), then ``suite.md``
merged from every ``suite_*.json`` in the directory (copy in the files of
other machines and run ``--markdown-only``) and PNG plots in ``plots/``
(skipped with a message when matplotlib is not installed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

_BENCH = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_BENCH)
for _path in (_REPO, _BENCH):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from suite import common, report, search_bench, train_bench  # pylint: disable=g-import-not-at-top,wrong-import-position

FULL = dict(policies=["muzero", "gumbel"], hidden=[64, 256], actions=[9, 64],
            batch=[64, 256, 1024], sims=[64, 128, 256], backends=["mctx", "fast"],
            presets=["default"], train_iterations=3, budget=3.0)
QUICK = dict(FULL, hidden=[64], actions=[9], batch=[64], sims=[16, 32],
             presets=["tictactoe/gumbel_alphazero"], train_iterations=3, budget=1.0)
DEFAULT_OUT = os.path.join(_BENCH, "results")

# ETA: prior seconds per unit of work until a kind of task has been timed.
# A search cell weighs 1 + B*S/16384; a training preset 1.
_PRIOR_S = dict(search=20.0, train=120.0)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny grid: B 64, S 16/32, A 9, H 64, both policies and "
                   "backends; preset tictactoe/gumbel_alphazero, 3 timed rounds")
    p.add_argument("--platforms", nargs="+", default=None,
                   help="JAX platforms (default: JAX's default backend and cpu)")
    p.add_argument("--retain-memory", action="store_true",
                   help="first keep freed memory mapped "
                   "(mctx_planner.retain_freed_memory): big searches skip page "
                   "faults, small programs and compiling run slower")
    p.add_argument("--only", choices=("search", "train"), default=None,
                   help="run one part only (default both)")
    p.add_argument("--out-dir", default=None,
                   help="results directory (default benchmarks/results, "
                   "benchmarks/results/quick with --quick)")
    p.add_argument("--markdown-only", action="store_true",
                   help="measure nothing: merge the suite_*.json of --out-dir "
                   "into suite.md and plots")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="start no new configuration after this many minutes")
    p.add_argument("--fresh", action="store_true",
                   help="drop the records already in the device files")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    g = p.add_argument_group("search grid (default: the full grid, see --quick)")
    g.add_argument("--policies", nargs="+", choices=search_bench.POLICIES)
    g.add_argument("--backends", nargs="+", choices=search_bench.BACKENDS)
    g.add_argument("--hidden", nargs="+", type=int, help="MLP widths H")
    g.add_argument("--actions", nargs="+", type=int, help="action counts A")
    g.add_argument("--batch", nargs="+", type=int, help="batch sizes B")
    g.add_argument("--sims", nargs="+", type=int, help="simulations S")
    g.add_argument("--budget", type=float,
                   help="seconds of timed rounds per search cell (>= 3 rounds; "
                   "full 3, quick 1)")
    g.add_argument("--raw-max-work", type=float, default=7e8,
                   help="on CPU, skip raw mctx where B*S*S*A exceeds this "
                   "(default 7e8, as search_overhead.py)")
    g.add_argument("--raw-max-work-accelerator", type=float, default=None,
                   help="the same guard on GPU/TPU (default: none)")
    t = p.add_argument_group("training")
    t.add_argument("--presets", nargs="+",
                   help="domain or domain/algorithm, 'default' (the five "
                   "presets of the suite) or 'all' (every tuned preset)")
    t.add_argument("--train-iterations", type=int,
                   help="timed rounds per preset (default 3)")
    t.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="FIELD=VALUE", help="override every preset's config")
    args = p.parse_args(argv)
    base = QUICK if args.quick else FULL
    custom = False
    for name, value in base.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
        else:
            custom = True
    args.grid = "custom" if custom or args.overrides else (
        "quick" if args.quick else "full")
    if args.out_dir is None:
        args.out_dir = os.path.join(DEFAULT_OUT, "quick") if args.quick else DEFAULT_OUT
    args.command = "python benchmarks/run_suite.py " + " ".join(
        sys.argv[1:] if argv is None else list(argv))
    return args


class Progress:
    """Counts finished tasks and estimates the time left from their weights."""

    def __init__(self, tasks: List[Dict[str, Any]]):
        self.total = len(tasks)
        self.left = {kind: sum(t["weight"] for t in tasks if t["kind"] == kind)
                     for kind in _PRIOR_S}
        self.done_weight = dict.fromkeys(_PRIOR_S, 0.0)
        self.spent = dict.fromkeys(_PRIOR_S, 0.0)
        self.done = 0
        self.start = time.perf_counter()

    def finish(self, task: Dict[str, Any], seconds: float) -> None:
        kind = task["kind"]
        self.done += 1
        self.left[kind] -= task["weight"]
        self.done_weight[kind] += task["weight"]
        self.spent[kind] += seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def eta(self) -> float:
        eta = 0.0
        for kind, left in self.left.items():
            rate = (self.spent[kind] / self.done_weight[kind]
                    if self.done_weight[kind] else _PRIOR_S[kind])
            eta += max(left, 0.0) * rate
        return eta

    def line(self, text: str) -> str:
        return "[%*d/%d] %s | %s elapsed, ETA %s" % (
            len(str(self.total)), self.done, self.total, text,
            _clock(self.elapsed()), _clock(self.eta()))


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def plan(args, devices) -> List[Dict[str, Any]]:
    """The tasks of the run, device by device: search cells, then presets."""
    cases = search_bench.grid(args.policies, args.hidden, args.actions, args.batch,
                              args.sims)
    presets = train_bench.parse_presets(args.presets)
    tasks = []
    for device in devices.values():
        if args.only in (None, "search"):
            tasks += [dict(kind="search", device=device, case=c,
                           weight=1.0 + c.batch * c.sims / 16384) for c in cases]
        if args.only in (None, "train"):
            tasks += [dict(kind="train", device=device, preset=pr, weight=1.0)
                      for pr in presets]
    return tasks


def _short_error(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return "%s: %s" % (type(e).__name__, text[0][:300] if text else "")


def run_search_task(task, args, base: Dict[str, Any]) -> List[Dict[str, Any]]:
    device, case = task["device"], task["case"]
    guard = (args.raw_max_work if device.platform == "cpu"
             else args.raw_max_work_accelerator)
    try:
        recs = search_bench.run_case(case, device, args.backends, args.budget, guard)
    except Exception as e:  # pylint: disable=broad-except
        recs = [dict(case.fields(), backend=b, status="error", reason=_short_error(e))
                for b in args.backends]
    peak = common.device_peak_bytes(device)
    return [dict(base, kind="search", device_peak_bytes=peak, **r) for r in recs]


def run_train_task(task, args, base: Dict[str, Any]) -> List[Dict[str, Any]]:
    preset = task["preset"]
    try:
        rec = train_bench.run_preset(preset, task["device"], args.train_iterations,
                                     args.overrides)
    except Exception as e:  # pylint: disable=broad-except
        rec = dict(preset=train_bench.preset_name(preset), domain=preset[0],
                   algorithm=preset[1], status="error", reason=_short_error(e))
    peak = common.device_peak_bytes(task["device"])
    return [dict(base, kind="train", device_peak_bytes=peak, **rec)]


def describe(task, recs) -> str:
    """One progress line's text for a finished task."""
    dev = task["device"].platform
    if task["kind"] == "train":
        r = recs[0]
        if r["status"] != "ok":
            return "%s train %s: %s" % (dev, r["preset"], r.get("reason"))
        return ("%s train %s: self-play %s steps/s, %s updates/s (iteration "
                "%.3f s, %dx updates %.3f s, self-play %.3f s; compile %.1f, "
                "%.1f, %.1f s)" % (
                    dev, r["preset"], report._rate(r["selfplay_steps_per_s"]),  # pylint: disable=protected-access
                    report._rate(r["updates_per_s"]), r["iteration_s"],  # pylint: disable=protected-access
                    r["updates_more"] // r["updates_per_iteration"],
                    r["iteration_more_s"], r["selfplay_s"], r["iteration_compile_s"],
                    r["iteration_more_compile_s"], r["selfplay_compile_s"]))
    parts = []
    for r in recs:
        if r["status"] == "ok":
            parts.append("%s %s sims/s (x%.2f net, compile %.1f s)" % (
                r["backend"], report._rate(r["sims_per_s"]), r["ratio_vs_net"],  # pylint: disable=protected-access
                r["compile_s"]))
        elif r["status"] == "error":
            parts.append("%s error (%s)" % (r["backend"], r.get("reason")))
        else:
            parts.append("%s %s" % (r["backend"], r["status"]))
    return "%s %s: %s" % (dev, task["case"].label(), "; ".join(parts))


class DeviceFile:
    """The JSON file of one device: existing records, replaced as measured."""

    def __init__(self, path: str, meta: Dict[str, Any], fresh: bool):
        self.path = path
        self.meta = meta
        self.records: Dict[tuple, Dict[str, Any]] = {}
        if not fresh and os.path.exists(path):
            try:
                for r in common.read_file(path)["records"]:
                    self.records[common.record_key(r)] = r
            except (OSError, ValueError, KeyError) as e:
                print("ignoring unreadable %s: %s" % (path, e), flush=True)

    def add(self, records: List[Dict[str, Any]]) -> None:
        for r in records:
            self.records[common.record_key(r)] = r

    def write(self) -> None:
        self.meta.update(date_end=common.now(), load_end=common.load_average())
        common.write_file(self.path, self.meta, list(self.records.values()))


def measure(args, devices) -> List[str]:
    """Runs every task (one that fails is recorded with ``status="error"``
    and the run goes on); returns one line per failed task."""
    tasks = plan(args, devices)
    progress = Progress(tasks)
    files = {}
    for plat, device in devices.items():
        meta = dict(common.machine_fields(device), command=args.command,
                    grid=args.grid, date_start=common.now(),
                    load_start=common.load_average(), device_count=len(
                        jax.devices(plat)),
                    settings=dict(budget_s=args.budget,
                                  raw_max_work=args.raw_max_work,
                                  raw_max_work_accelerator=args.raw_max_work_accelerator,
                                  train_iterations=args.train_iterations,
                                  overrides=args.overrides))
        files[plat] = DeviceFile(common.device_file(args.out_dir, device), meta,
                                 args.fresh)
    print("%d configurations on %s; results in %s" % (
        len(tasks), ", ".join("%s (%s)" % (p, common.device_slug(d))
                              for p, d in devices.items()), args.out_dir), flush=True)
    not_run = 0
    failed: List[str] = []
    try:
        for i, task in enumerate(tasks):
            if (args.max_minutes is not None
                    and progress.elapsed() > 60 * args.max_minutes):
                not_run = len(tasks) - i
                print("--max-minutes %g reached: %d configurations not run"
                      % (args.max_minutes, not_run), flush=True)
                break
            device = task["device"]
            base = dict(common.machine_fields(device), date=common.now(),
                        grid=args.grid, load_before=common.load_average())
            t0 = time.perf_counter()
            runner = run_search_task if task["kind"] == "search" else run_train_task
            recs = runner(task, args, base)
            progress.finish(task, time.perf_counter() - t0)
            line = describe(task, recs)
            print(progress.line(line), flush=True)
            if any(r["status"] == "error" for r in recs):
                failed.append(line)
            files[device.platform].add(recs)
            files[device.platform].write()
    except KeyboardInterrupt:
        not_run = progress.total - progress.done
        print("interrupted: %d configurations not run" % not_run, flush=True)
    for f in files.values():
        f.meta.update(elapsed_s=round(progress.elapsed(), 1),
                      stopped_early=bool(not_run), not_run=not_run)
        f.write()
        print("wrote %s (%d records)" % (f.path, len(f.records)), flush=True)
    return failed


def merge(args) -> None:
    """suite.md and plots from every suite_*.json in --out-dir."""
    files = report.load(args.out_dir)
    path = report.write_markdown(args.out_dir, files)
    print("merged %d file(s) into %s" % (len(files), path), flush=True)
    if args.no_plots:
        return
    written = report.write_plots(args.out_dir, files)
    if written is not None:
        print("plots: %s" % (", ".join(os.path.relpath(p, args.out_dir)
                                       for p in written) or "none (no records)"),
              flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.retain_memory:
        from mctx_planner import retain_freed_memory  # pylint: disable=g-import-not-at-top
        print("retain_freed_memory:", retain_freed_memory(), flush=True)
    if not args.markdown_only:
        devices = common.find_devices(args.platforms)
        if not devices:
            print("none of the platforms %s is available" % args.platforms,
                  file=sys.stderr)
            return 2
        failed = measure(args, devices)
    else:
        failed = []
    merge(args)
    if failed:
        # The other configurations' results are written; the exit status
        # still tells a script (CI, a GPU check) that something broke.
        print("%d configuration(s) failed:" % len(failed), file=sys.stderr)
        for line in failed:
            print("  " + line, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
