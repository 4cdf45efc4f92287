"""Merges every ``suite_*.json`` of a directory into one markdown file and plots.

``suite.md`` holds one section per device file (device, CPU, versions, date,
command, load) and two tables with one row per record: search (every
backend, skipped cells included) and training presets. The plots (matplotlib,
Agg backend, imported only here and only when plots are asked for) go to
``plots/``:

* ``search_sims_per_s_<platform>_<device>.png``: sims/s vs S, one line per
  (backend, B), one panel per (policy, A, H);
* ``search_ratio_<platform>_<device>.png``: search time / network-only time,
  same layout;
* ``train_steps_per_s.png``: self-play steps/s and updates/s per preset, one
  bar per device.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from suite import common

SEARCH_COLUMNS = ("platform", "device", "policy", "backend", "H", "A", "B", "S",
                  "sims/s", "search ms", "net-only ms", "search/net",
                  "compile s", "XLA mem MB", "device peak MB", "same as mctx",
                  "status")
_BACKEND_ORDER = {"mctx": 0, "fast": 1}
TRAIN_COLUMNS = ("platform", "device", "preset", "B x T", "S", "U x batch",
                 "self-play steps/s", "updates/s", "update share", "iteration s",
                 "self-play s", "env steps/s (iteration)",
                 "compile s (iteration, x more updates, self-play)",
                 "first iteration s", "XLA mem MB", "XLA peak MB", "status")


def load(out_dir: str) -> List[Tuple[str, Dict[str, Any]]]:
    """``[(path, file contents)]`` of every readable suite file in ``out_dir``."""
    files = []
    for path in common.result_files(out_dir):
        try:
            files.append((path, common.read_file(path)))
        except (OSError, ValueError) as e:
            print("skipping %s: %s" % (path, e), flush=True)
    return files


def _rate(x: Optional[float]) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return "%.3g M" % (x / 1e6)
    if x >= 1e3:
        return "%.3g k" % (x / 1e3)
    return "%.3g" % x


def _ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return "%.3f" % ms if ms < 1 else "%.2f" % ms if ms < 100 else "%.0f" % ms


def _num(x: Optional[float], fmt: str = "%.2f") -> str:
    return "-" if x is None else fmt % x


def _mb(x: Optional[int]) -> str:
    if x is None:
        return "-"
    mb = x / 2**20
    return "%.3f" % mb if mb < 1 else "%.1f" % mb


def _device_label(rec: Dict[str, Any]) -> str:
    if rec["platform"] == "cpu":
        return "%s (%d cores)" % (rec.get("cpu_model") or "cpu", rec.get("cpu_count", 0))
    return rec["device"]


def search_row(rec: Dict[str, Any]) -> List[str]:
    status = rec.get("status", "?")
    if status != "ok":
        status = "%s: %s" % (status, rec.get("reason", ""))
    return [rec["platform"], _device_label(rec), rec["policy"], rec["backend"],
            str(rec["hidden"]), str(rec["actions"]), str(rec["batch"]),
            str(rec["sims"]), _rate(rec.get("sims_per_s")), _ms(rec.get("search_s")),
            _ms(rec.get("net_s")), _num(rec.get("ratio_vs_net")),
            _num(rec.get("compile_s"), "%.1f"), _mb(rec.get("mem_bytes")),
            _mb(rec.get("device_peak_bytes")), rec.get("identical_to_mctx", "-"),
            status.replace("|", "/")]


def train_row(rec: Dict[str, Any]) -> List[str]:
    status = rec.get("status", "?")
    if status != "ok":
        return [rec["platform"], _device_label(rec), rec["preset"]] + [
            "-"] * (len(TRAIN_COLUMNS) - 4) + [
            ("%s: %s" % (status, rec.get("reason", ""))).replace("|", "/")]
    compile_s = "%.1f, %.1f, %.1f" % (rec["iteration_compile_s"],
                                      rec["iteration_more_compile_s"],
                                      rec["selfplay_compile_s"])
    share = rec.get("learn_share")
    return [rec["platform"], _device_label(rec), rec["preset"],
            "%d x %d" % (rec["num_envs"], rec["unroll_length"]),
            str(rec["num_simulations"]),
            "%d x %d" % (rec["updates_per_iteration"], rec["batch_size"]),
            _rate(rec["selfplay_steps_per_s"]), _rate(rec.get("updates_per_s")),
            "-" if share is None else "%.0f %%" % (100 * share),
            _num(rec["iteration_s"], "%.3f"), _num(rec["selfplay_s"], "%.3f"),
            _rate(rec["iteration_env_steps_per_s"]), compile_s,
            _num(rec["first_iteration_s"], "%.2f"), _mb(rec.get("mem_bytes")),
            _mb(rec.get("peak_bytes")), "ok (%d timed)" % rec["iterations_timed"]]


def _table(columns, rows) -> List[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _search_sort_key(rec):
    return (rec["platform"], rec.get("device_slug", ""), rec["policy"], rec["hidden"],
            rec["actions"], rec["batch"], rec["sims"], _BACKEND_ORDER.get(rec["backend"], 9))


def markdown(files: List[Tuple[str, Dict[str, Any]]]) -> str:
    """The merged report (see the module docstring)."""
    lines = ["# Benchmark suite results", "",
             "Merged from %d file(s) by `python benchmarks/run_suite.py "
             "--markdown-only`. Search: raw mctx (`mctx`) and the batch-first "
             "`fast` backend on search_overhead.py's plain-jnp MLP; sims/s = "
             "B*S / median search time; search/net = search time / time of S "
             "network calls alone; XLA mem = temp + output bytes of the "
             "compiled search; device peak = the runtime's process high-water "
             "mark (GPU/TPU only). Training: self-play steps/s from the "
             "agent's own rollout jitted alone; updates/s from the time "
             "difference between the preset's iteration and one with 4x its "
             "updates (median of paired rounds); update share = the updates' "
             "share of the preset's iteration; XLA peak = arguments + temp + "
             "output - donated bytes of the compiled iteration (what is live "
             "during one, the input state included)." % len(files), ""]
    records = []
    for path, data in files:
        meta = data.get("meta", {})
        recs = data["records"]
        records += recs
        versions = meta.get("versions", {})
        lines += ["## %s" % os.path.basename(path), "",
                  "* device: %s, platform %s; CPU: %s, %s cores; host %s" % (
                      meta.get("device", "?"), meta.get("platform", "?"),
                      meta.get("cpu_model", "?"), meta.get("cpu_count", "?"),
                      meta.get("host", "?")),
                  "* versions: %s" % ", ".join("%s %s" % kv for kv in versions.items()),
                  "* last run: `%s`, %s to %s, %s s, load %s -> %s%s" % (
                      meta.get("command", "?"), meta.get("date_start", "?"),
                      meta.get("date_end", "?"), meta.get("elapsed_s", "?"),
                      meta.get("load_start", "?"), meta.get("load_end", "?"),
                      ", stopped early (%s not run)" % meta.get("not_run")
                      if meta.get("stopped_early") else ""),
                  "* records: %d search, %d training" % (
                      sum(r.get("kind") == "search" for r in recs),
                      sum(r.get("kind") == "train" for r in recs)), ""]
    search = sorted((r for r in records if r.get("kind") == "search"),
                    key=_search_sort_key)
    train = sorted((r for r in records if r.get("kind") == "train"),
                   key=lambda r: (r["platform"], r.get("device_slug", ""), r["preset"]))
    if search:
        lines += ["## Search", ""] + _table(SEARCH_COLUMNS, map(search_row, search)) + [""]
    if train:
        lines += ["## Training presets", ""] + _table(TRAIN_COLUMNS,
                                                      map(train_row, train)) + [""]
    if not records:
        lines += ["(no records)", ""]
    return "\n".join(lines)


def write_markdown(out_dir: str, files=None) -> str:
    """Writes ``<out_dir>/suite.md``; returns its path."""
    files = load(out_dir) if files is None else files
    path = os.path.join(out_dir, "suite.md")
    os.makedirs(out_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(markdown(files))
    return path


# --------------------------------------------------------------------------
# Plots.
# --------------------------------------------------------------------------


def _pyplot():
    """matplotlib.pyplot on the Agg backend, or None when not installed."""
    try:
        import matplotlib  # pylint: disable=g-import-not-at-top
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    except ImportError:
        return None
    return plt


def _search_panels(records) -> Dict[tuple, List[Dict[str, Any]]]:
    panels: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in records:
        panels.setdefault((r["policy"], r["actions"], r["hidden"]), []).append(r)
    return dict(sorted(panels.items()))


def _plot_search(plt, records, value: str, ylabel: str, title: str, path: str,
                 log: bool = True) -> None:
    panels = _search_panels(records)
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.2 * cols, 7.0), 3.4 * rows + 0.6),
                             squeeze=False)
    batches = sorted({r["batch"] for r in records})
    colors = {b: plt.cm.viridis(i / max(len(batches) - 1, 1))
              for i, b in enumerate(batches)}
    styles = {"mctx": ("--", "s"), "fast": ("-", "o")}
    for ax, ((policy, actions, hidden), recs) in zip(axes.flat, panels.items()):
        for backend in sorted({r["backend"] for r in recs}):
            for b in batches:
                pts = sorted((r["sims"], r[value]) for r in recs
                             if r["backend"] == backend and r["batch"] == b)
                if pts:
                    line, marker = styles.get(backend, (":", "^"))
                    ax.plot(*zip(*pts), line, marker=marker, color=colors[b],
                            label="%s B=%d" % (backend, b),
                            fillstyle="full" if backend == "fast" else "none")
        ax.set_title("%s A=%d H=%d" % (policy, actions, hidden), fontsize=9)
        ax.set_xscale("log", base=2)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("simulations S")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_train(plt, records, path: str) -> None:
    presets = sorted({r["preset"] for r in records})
    devices = sorted({(r["platform"], r.get("device_slug", r["device"])) for r in records})
    fig, axes = plt.subplots(1, 2, figsize=(2 * (2.0 + 1.2 * len(presets)), 4.5))
    width = 0.8 / len(devices)
    for (ax, value, label) in ((axes[0], "selfplay_steps_per_s", "self-play steps/s"),
                               (axes[1], "updates_per_s", "updates/s")):
        for i, dev in enumerate(devices):
            heights = []
            for p in presets:
                vals = [r.get(value) for r in records
                        if r["preset"] == p and (r["platform"], r.get(
                            "device_slug", r["device"])) == dev]
                heights.append(vals[0] if vals and vals[0] else 0.0)
            ax.bar([j + i * width for j in range(len(presets))], heights, width,
                   label="%s %s" % dev)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(presets))])
        ax.set_xticklabels(presets, rotation=30, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Training presets: self-play and updates per second", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(out_dir: str, files=None) -> Optional[List[str]]:
    """Writes the PNGs under ``<out_dir>/plots``; None if matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        print("matplotlib is not installed: no plots (pip install matplotlib, "
              "or the package's [plot] extra)", flush=True)
        return None
    files = load(out_dir) if files is None else files
    plot_dir = os.path.join(out_dir, "plots")
    os.makedirs(plot_dir, exist_ok=True)
    written = []
    records = [r for _, data in files for r in data["records"]]
    by_device: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "search" and r.get("status") == "ok":
            by_device.setdefault((r["platform"], r.get("device_slug", "")), []).append(r)
    for (plat, dev), recs in sorted(by_device.items()):
        name = "%s_%s" % (plat, dev)
        label = _device_label(recs[0])
        path = os.path.join(plot_dir, "search_sims_per_s_%s.png" % name)
        _plot_search(plt, recs, "sims_per_s", "simulations / s",
                     "Search throughput on %s (%s)\nsolid/filled: fast, "
                     "dashed/open: raw mctx" % (label, plat), path)
        written.append(path)
        path = os.path.join(plot_dir, "search_ratio_%s.png" % name)
        _plot_search(plt, recs, "ratio_vs_net", "search / network-only time",
                     "Search time / network-only time on %s (%s)\nsolid/filled: "
                     "fast, dashed/open: raw mctx" % (label, plat), path)
        written.append(path)
    train = [r for r in records if r.get("kind") == "train" and r.get("status") == "ok"]
    if train:
        path = os.path.join(plot_dir, "train_steps_per_s.png")
        _plot_train(plt, train, path)
        written.append(path)
    return written
