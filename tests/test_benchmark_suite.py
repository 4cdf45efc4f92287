"""Smoke test of the one-command benchmark suite (``benchmarks/run_suite.py``).

Runs the suite's ``main`` in-process on the tiniest search configuration
(cpu, B=4, S=4, A=9, H=16, gumbel, both backends, no training) into a
temporary directory, then ``--markdown-only`` after copying in a second
device's file (as a GPU machine's results would be), and checks the JSON
records, the merged markdown table and the plots; then the suite's training
part on one shrunken preset, and the other benchmark scripts (peers driver,
search_throughput, search_devices, profile_search, ...) each in a tiny
configuration, so that none of them breaks unnoticed.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import pathlib

import jax
import pytest

from mctx_planner import _cpu_tasks

from test_native import _require_kernels

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_run_suite():
    spec = importlib.util.spec_from_file_location(
        "run_suite", ROOT / "benchmarks" / "run_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table_rows(markdown: str, header_start: str) -> list:
    """Data rows of the table whose header line starts with ``header_start``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_suite_tiny_search_and_merge(tmp_path):
    run_suite = _load_run_suite()
    out = tmp_path / "results"
    rc = run_suite.main(["--platforms", "cpu", "--only", "search", "--batch", "4",
                         "--sims", "4", "--actions", "9", "--hidden", "16",
                         "--policies", "gumbel", "--budget", "0.05",
                         "--out-dir", str(out)])
    assert rc == 0
    files = sorted(out.glob("suite_cpu_*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    records = data["records"]
    assert {r["backend"] for r in records} == {"mctx", "fast"}
    for r in records:
        assert r["kind"] == "search" and r["status"] == "ok"
        for field in ("platform", "device", "device_name", "cpu_model", "cpu_count",
                      "host", "versions", "date"):
            assert field in r, field
        assert r["platform"] == "cpu"
        for name in ("python", "jax", "jaxlib", "mctx", "flax", "mctx_planner"):
            assert r["versions"].get(name), name
        assert (r["policy"], r["hidden"], r["actions"], r["batch"], r["sims"]) == (
            "gumbel", 16, 9, 4, 4)
        assert r["sims_per_s"] > 0 and r["net_s"] > 0 and r["compile_s"] > 0
        assert r["ratio_vs_net"] > 0 and r["mem_bytes"] > 0
    fast = next(r for r in records if r["backend"] == "fast")
    assert fast["identical_to_mctx"] in ("exact", "allclose")

    # A second device's results, copied in: --markdown-only merges both.
    other = copy.deepcopy(data)
    for r in [other["meta"]] + other["records"]:
        r.update(platform="gpu", device="NVIDIA H200", device_slug="nvidia-h200")
    (out / "suite_gpu_nvidia-h200.json").write_text(json.dumps(other))
    assert run_suite.main(["--markdown-only", "--out-dir", str(out)]) == 0
    markdown = (out / "suite.md").read_text()
    rows = _table_rows(markdown, "| platform | device | policy |")
    assert len(rows) == 2 * len(records)
    assert sum("| gpu | NVIDIA H200 |" in row for row in rows) == len(records)

    pytest.importorskip("matplotlib")
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert "search_sims_per_s_gpu_nvidia-h200.png" in plots
    assert any(p.startswith("search_ratio_cpu_") for p in plots)


def test_suite_tiny_train(tmp_path):
    # The training part calls the compiled (donating) iteration directly, so
    # it must unshare the state's buffers itself; this once failed with
    # "Attempt to donate the same buffer twice" and no test noticed.
    run_suite = _load_run_suite()
    out = tmp_path / "results"
    tiny = ["num_envs=2", "unroll_length=2", "num_simulations=2", "eval_simulations=2",
            "batch_size=4", "updates_per_iteration=1", "replay_capacity=16",
            "network.hidden_size=8"]
    argv = ["--platforms", "cpu", "--only", "train", "--presets",
            "tictactoe/gumbel_alphazero", "--train-iterations", "1",
            "--out-dir", str(out), "--no-plots"]
    for field in tiny:
        argv += ["--set", field]
    assert run_suite.main(argv) == 0
    (path,) = out.glob("suite_cpu_*.json")
    (record,) = json.loads(path.read_text())["records"]
    assert record["kind"] == "train" and record["status"] == "ok", record.get("status")
    assert (record["num_envs"], record["unroll_length"], record["updates_more"]) == (2, 2, 4)
    assert record["selfplay_steps_per_s"] > 0 and record["iteration_s"] > 0
    assert len(record["iteration_times_s"]) == 1
    assert "| cpu |" in "\n".join(
        _table_rows((out / "suite.md").read_text(), "| platform | device | preset |"))


def test_suite_failed_configuration_exits_nonzero(tmp_path, capsys):
    # A configuration that fails is recorded with its reason, the run goes
    # on, and the exit status says so (the bug above gave exit status 0).
    run_suite = _load_run_suite()
    out = tmp_path / "results"
    rc = run_suite.main(["--platforms", "cpu", "--only", "train", "--presets",
                         "tictactoe/gumbel_alphazero", "--set", "num_envs=0",
                         "--out-dir", str(out), "--no-plots"])
    assert rc == 1
    (path,) = out.glob("suite_cpu_*.json")
    (record,) = json.loads(path.read_text())["records"]
    assert record["status"] == "error" and "num_envs" in record["reason"]
    assert "1 configuration(s) failed" in capsys.readouterr().err
    assert "error: ValueError" in (out / "suite.md").read_text()


def _run(*argv: str, returncode: int = 0):
    """Runs a script of the repository with this Python; checks its exit status."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == returncode, out.stderr[-3000:]
    return out


def _run_script(*argv: str) -> str:
    return _run(*argv).stdout


def test_search_devices_script_tiny(tmp_path):
    result = tmp_path / "devices.json"
    stdout = _run_script("benchmarks/search_devices.py", "--devices", "2",
                         "--policies", "gumbel", "--hidden", "16", "--actions", "9",
                         "--batch", "4", "--sims", "4", "--budget", "0.05",
                         "--out", str(result))
    assert "| policy | H | A | B | S |" in stdout
    data = json.loads(result.read_text())
    assert "CpuDevice(id=1)" in data["devices"]
    (record,) = data["search"]
    assert (record["policy"], record["batch"], record["devices"]) == ("gumbel", 4, 2)
    for field in ("net_one_s", "net_split_s", "fast_one_s", "fast_split_s"):
        assert record[field] > 0, field
    assert 0.0 <= record["same_root_visits"] <= 1.0
    assert record["speedup"] == pytest.approx(record["fast_one_s"] / record["fast_split_s"])


@pytest.mark.parametrize("xla_loops", [True, False])
def test_profile_search_script_tiny(xla_loops):
    from mctx_planner import _native
    if not xla_loops and _native.why_not_here() is not None:
        pytest.skip(f"native kernels impossible here: {_native.why_not_here()}")
    stdout = _run_script("benchmarks/profile_search.py", "--policy", "muzero",
                         "--hidden", "16", "--actions", "9", "--batch", "4",
                         "--sims", "4", "--top", "3",
                         *(["--xla-loops"] if xla_loops else []))
    assert "kernel launches" in stdout
    assert ("copies of [B, S + 1, ...] tree arrays inside the simulation loop: none"
            in stdout)
    if "\n0 kernel launches" in stdout and jax.__version_info__ < (0, 5):
        # (Only there: on a newer JAX, no kernels in the trace is a failure.)
        pytest.skip(f"jax {jax.__version__}'s profiler records no XLA:CPU kernels")
    phases = (("descent (full batch)", "backup (full batch)") if xla_loops
              else ("native descent", "native expand_backup"))
    for phase in phases + ("rest of the simulation",):
        assert phase in stdout, phase
    top = stdout.split("the 3 kernels that took the most time:\n")[1]
    assert len([line for line in top.splitlines() if " ms " in line]) == 3


def test_compaction_ab_script_tiny(tmp_path):
    result = tmp_path / "compaction.json"
    stdout = _run_script("benchmarks/compaction_ab.py", "--cell", "muzero", "9", "64",
                         "4", "--hidden", "8", "--budget", "0.05", "--out", str(result))
    assert "fast compacting" in stdout
    (row,) = json.loads(result.read_text())
    assert row["same_actions"] is True
    for field in ("mctx_s", "compact_s", "no_compact_s"):
        assert row[field] > 0, field
    # On CPU from B = 64 the compacting program has the extra (compacted) loops.
    assert row["while_loops_compacting"] > row["while_loops_not_compacting"]


def test_cell_arguments_name_the_bad_value(monkeypatch, capsys):
    import argparse
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from suite import cells
    parser = argparse.ArgumentParser(prog="x")
    cells.add_cell_args(parser)
    args = parser.parse_args(["--cell", "gumbel", "9", "64", "16", "--hidden", "8"])
    assert cells.parse_cell(parser, args.cell, ["gumbel", "muzero"]) == (
        "gumbel", 9, 64, 16)
    assert args.hidden == 8 and args.out is None
    for bad, named in ((["bogus", "9", "64", "16"], "'bogus'"),
                       (["gumbel", "9", "many", "16"], "9 many 16")):
        with pytest.raises(SystemExit):
            cells.parse_cell(parser, bad, ["gumbel", "muzero"])
        assert named in capsys.readouterr().err


def test_exactness_probe_script_tiny(tmp_path):
    result = tmp_path / "probe.json"
    stdout = _run_script("benchmarks/exactness_probe.py", "--cell", "gumbel", "4",
                         "4", "3", "--hidden", "8", "--out", str(result))
    assert "exact; action equal" in stdout  # bit-identical on CPU
    assert json.loads(result.read_text())["leaves"] == []


def test_exactness_probe_locates_a_difference(monkeypatch):
    """`compare` names the leaf, its rows and the first node that differ."""
    import numpy as np
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import exactness_probe
    a = {"visits": np.zeros((4, 5, 3)), "action": np.arange(4)}
    b = {"visits": np.zeros((4, 5, 3)), "action": np.arange(4)}
    b["visits"][2, 3, 1] = 1e-7
    b["visits"][1, 4, 0] = 2.0
    (row,) = exactness_probe.compare(a, b)
    assert row["leaf"] == "['visits']" and row["entries_differing"] == 2
    assert row["batch_rows_differing"] == 2 and row["first_index_differing_min"] == 3
    assert row["max_abs_diff"] == 2.0 and row["max_rel_diff"] == 1.0
    # -inf (a masked logit) in both outputs is equal, not NaN.
    a["logits"] = np.array([[-np.inf, 0.5]])
    b["logits"] = np.array([[-np.inf, 1.5]])
    logits = [r for r in exactness_probe.compare(a, b) if r["leaf"] == "['logits']"]
    assert logits[0]["max_abs_diff"] == 1.0


def test_mctx_partitioned_script_tiny(tmp_path):
    result = tmp_path / "partitioned.json"
    stdout = _run_script("benchmarks/mctx_partitioned.py", "--cell", "gumbel", "4",
                         "4", "3", "--hidden", "8", "--budget", "0.05",
                         "--out", str(result))
    assert "partitioned over 2" in stdout
    (row,) = json.loads(result.read_text())
    assert row["same"] == "exact" and row["devices"] == 2
    assert sum(row["collectives"].values()) > 0  # XLA did partition it
    for field in ("mctx_one_ms", "mctx_partitioned_ms", "fast_one_ms"):
        assert row[field] > 0, field


def test_stochastic_benchmark_model_matches_mctx(monkeypatch):
    """The benchmarks' stochastic chance model runs through both backends with
    the other policies' calling convention, and they agree bit for bit."""
    import jax
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import search_overhead as so
    params = so.make_params(16, 9)
    root = so.make_root(params, 4)
    key = jax.random.PRNGKey(3)
    raw, fast = so.POLICIES["stochastic"]
    outs = [jax.jit(lambda p, k, r, fn=fn: fn(p, k, r, so.recurrent_fn, 6))(
        params, key, root) for fn in (raw, fast)]
    exact, _ = so.outputs_identical(outs[1], outs[0])
    assert exact
    # The network-only baseline evaluates both steps per simulation.
    emb, values = jax.jit(lambda p, r: so.network_only(p, r, 6, "stochastic"))(
        params, root)
    assert emb.shape == (4, so.EMBED) and values.shape == (6, 4)


def test_descent_floor_script_tiny(tmp_path):
    records = tmp_path / "overhead.json"
    records.write_text(json.dumps({"results": [dict(
        policy="muzero", hidden=16, actions=9, batch=4, sims=4, mean_depth=2.0,
        ratio_fast=3.0)]}))
    result = tmp_path / "floor.json"
    stdout = _run_script("benchmarks/descent_floor.py", "--records", str(records),
                         "--hidden", "16", "--time-fast", "--budget", "0.05",
                         "--row-processes", "1", "--out", str(result))
    assert "| fast / (net + rows floor) |" in stdout
    (row,) = json.loads(result.read_text())["rows"]
    assert row["descent_steps"] == 8.0  # mean depth 2 * 4 simulations
    for field in ("row_s", "step_iteration_s", "net_s", "fast_s"):
        assert row[field] > 0, field
    assert row["rows_floor_s"] == pytest.approx(8.0 * 4 * row["row_s"])
    # The least time per row of this process and one fresh process.
    assert len(row["row_s_per_process"]) == 2
    assert row["row_s"] == min(row["row_s_per_process"])
    assert row["fast_over_net_plus_rows_floor"] == pytest.approx(
        row["fast_s"] / (row["net_s"] + row["rows_floor_s"]))
    assert row["output_floor_s"] > 0
    assert row["fast_over_floors"] == pytest.approx(
        row["fast_s"] / (row["net_s"] + row["rows_floor_s"] + row["output_floor_s"]))
    assert row["floors_over_net"] == pytest.approx(
        (row["net_s"] + row["rows_floor_s"] + row["output_floor_s"]) / row["net_s"])


def test_path_floor_script_tiny(tmp_path):
    _require_kernels()  # the native expand_descend it profiles, and a C++ compiler
    result = tmp_path / "path_floor.json"
    stdout = _run_script("benchmarks/path_floor.py", "--hidden", "16", "--actions", "24",
                         "--batch", "4", "--sims", "8", "--reps", "2", "--budget", "0.05",
                         "--out", str(result))
    assert "| B | levels |" in stdout
    (row,) = json.loads(result.read_text())["results"]
    # The backup walks every new node and its ancestors: depth + 1 nodes per
    # simulation, the tree's mean node depth taken over those new nodes.
    assert row["levels"] == pytest.approx(4 * 8 * (row["mean_depth"] + 1))
    for field in ("one_line_ms", "three_arrays_ms", "search_ms", "network_ms",
                  "expand_descend_ms"):
        assert row[field] > 0, field
    assert row["one_line_ms"] <= row["one_line_median_ms"]


@pytest.mark.skipif(not _cpu_tasks.can_take_effect(),
                    reason="one task per kernel differs from the default only with two CPUs")
def test_single_task_ab_script_tiny(tmp_path):
    result = tmp_path / "ab.json"
    stdout = _run_script("benchmarks/single_task_ab.py", "--cells", "gumbel,4,64,16",
                         "--hidden", "8", "--budget", "0.05", "--out", str(result))
    assert "identical=True" in stdout
    (row,) = json.loads(result.read_text())["rows"]
    assert row["same"] and row["single_ms"] > 0 and row["default_ms"] > 0


def test_native_ab_script_tiny(tmp_path):
    _require_kernels()
    result = tmp_path / "native.json"
    tiny = ("--hidden", "8", "--budget", "0.05", "--out", str(result))
    # (arguments, the row's two timings): native against XLA's loops, the
    # selection cache, the one-pass unpack, huge pages for the store, the
    # backup fused with the next descent, the backup leaving narrow nodes'
    # edges, Gumbel's rows of narrow nodes, the root noise's first rounds at
    # once (B * A = 2048), and through the planner (legal-move masks, domain
    # arguments).
    for args, timings in [
            (("--cells", "muzero,5,8,16") + tiny, ("native_ms", "xla_ms")),
            (("--select-cache", "--cells", "muzero,20,8,16") + tiny,
             ("cache_ms", "no_cache_ms")),
            (("--unpack", "--cells", "gumbel,5,8,16") + tiny,
             ("unpack_ms", "xla_unpack_ms")),
            (("--huge-pages", "--cells", "muzero,5,8,16") + tiny,
             ("huge_pages_ms", "plain_pages_ms")),
            (("--fused-descent", "--cells", "muzero,20,8,16") + tiny,
             ("fused_ms", "two_calls_ms")),
            (("--lazy-edges", "--cells", "muzero,20,8,16") + tiny,
             ("lazy_edges_ms", "every_edge_ms")),
            (("--gumbel-rows", "--cells", "gumbel,48,8,16") + tiny,
             ("rows_ms", "full_rows_ms")),
            (("--fast-dirichlet", "--cells", "muzero,64,32,4") + tiny,
             ("fast_dirichlet_ms", "jax_dirichlet_ms")),
            (("--select-cache", "--planner-cells",
              "recommendation:num_candidates=20,muzero,4,8") + tiny[2:],
             ("cache_ms", "no_cache_ms"))]:
        stdout = _run_script("benchmarks/native_ab.py", *args)
        assert "identical=True" in stdout, args
        (row,) = json.loads(result.read_text())["rows"]
        assert row["same"] and all(row[t] > 0 for t in timings), args


def test_topk_ab_script_tiny(tmp_path):
    _require_kernels()
    result = tmp_path / "topk.json"
    stdout = _run_script("benchmarks/topk_ab.py", "--rows", "4", "--items", "30",
                         "--k", "5", "--planner", "4,4,8", "--budget", "0.05",
                         "--out", str(result))
    assert stdout.count("identical=True") == 2
    top_k, planner = json.loads(result.read_text())["rows"]
    assert top_k["same"] and top_k["native_us"] > 0 and top_k["xla_us"] > 0
    assert planner["same"] and planner["native_ms"] > 0 and planner["xla_ms"] > 0


def test_peers_driver_tiny(tmp_path):
    # The JAX and NumPy peers (LightZero needs its own virtual environment),
    # each in its own process, on the tiniest configuration; the sanity check
    # compares root visits with raw mctx on a 4 x 4 batch.
    result = tmp_path / "peers.json"
    stdout = _run_script("benchmarks/peers/run_peers.py", "--peers", "fast", "mctx",
                         "numpy", "--policies", "muzero", "--hidden", "16",
                         "--actions", "9", "--batch", "4", "--sims", "4",
                         "--budget", "0.05", "--check", "4x4",
                         "--work-dir", str(tmp_path / "work"), "--out", str(result))
    assert "| peer | policy |" in stdout
    data = json.loads(result.read_text())
    assert {p: s["rc"] for p, s in data["peer_status"].items()} == dict(
        fast=0, mctx=0, numpy=0)
    rows = {r["peer"]: r for r in data["results"]}
    assert set(rows) == {"fast", "mctx", "numpy"}
    for peer, row in rows.items():
        assert (row["batch"], row["sims"]) == (4, 4), peer
        assert row["search_s"] > 0 and row["net_s"] > 0, peer
    checks = {c["peer"]: c for c in data["checks"]}
    # fast is mctx's search, so its root visits equal raw mctx's.
    assert checks["fast"]["visits_equal_pct"] == 100.0
    assert checks["numpy"]["visit_sums_eq_S_pct"] == 100.0


def test_search_throughput_script_tiny(tmp_path):
    result = tmp_path / "throughput.json"
    _run_script("benchmarks/search_throughput.py", "--algorithms", "gumbel_muzero",
                "--batch", "2", "--sims", "2", "--platforms", "cpu", "--repeats", "2",
                "--min-repeats", "1", "--budget", "0.05", "--out", str(result),
                "--markdown", str(tmp_path / "throughput.md"))
    (row,) = json.loads(result.read_text())["results"]
    assert (row["algorithm"], row["batch"], row["sims"]) == ("gumbel_muzero", 2, 2)
    assert row["planner_raw_actions_identical"] is True
    assert row["fast_raw_actions_identical"] is True
    assert row["planner_raw_weights_max_abs_diff"] == 0.0
    for field in ("planner_s", "raw_s", "fast_s"):
        assert row[field] > 0, field


def test_peers_driver_fails_when_a_peer_fails(tmp_path):
    # A peer process that exits non-zero (here: an interpreter that always
    # fails) is reported, its status saved, and the driver exits non-zero.
    result = tmp_path / "peers.json"
    out = _run("benchmarks/peers/run_peers.py", "--peers", "numpy",
               "--policies", "muzero", "--hidden", "16", "--actions", "9",
               "--batch", "4", "--sims", "4", "--check", "4x4",
               "--lib-python", "/bin/false", "--work-dir", str(tmp_path / "work"),
               "--out", str(result), returncode=1)
    assert "peers that failed" in out.stderr
    assert json.loads(result.read_text())["peer_status"]["numpy"]["rc"] == 1


_TINY_TRAIN = ["--set", "iterations=1", "--set", "num_envs=8", "--set", "unroll_length=4",
               "--set", "num_simulations=4", "--set", "eval_simulations=2",
               "--set", "replay_capacity=64", "--set", "batch_size=16",
               "--set", "updates_per_iteration=2", "--set", "network.hidden_size=16",
               "--set", "network.num_layers=1"]


def test_train_targets_script_tiny(tmp_path, capsys):
    # The maze target end to end on a shrunken preset: training, its run
    # directory and the held-out evaluation, recorded in --results-dir (never
    # in the repository's results file).
    spec = importlib.util.spec_from_file_location(
        "train_targets", ROOT / "benchmarks" / "train_targets.py")
    targets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(targets)
    targets.main(["maze", *_TINY_TRAIN, "--games", "2", "--eval-sims", "2",
                  "--results-dir", str(tmp_path)])
    lines = (tmp_path / "train_targets.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["target"] == "maze" and record["mazes"] == 2
    assert record["eval_simulations"] == 2 and record["train_s"] > 0
    assert 0.0 <= record["maze_optimal_fraction"] <= record["maze_solved_fraction"] <= 1.0
    assert (tmp_path / "runs" / "maze").is_dir()
    assert "RESULT " in capsys.readouterr().out
    # --games is refused where a target has no evaluation size to shrink.
    with pytest.raises(SystemExit):
        targets.main(["throughput", "--games", "2", "--results-dir", str(tmp_path)])
    assert "--games does not apply to the throughput target" in capsys.readouterr().err


def test_command_buffer_ab_script_tiny(tmp_path):
    # On the CPU the GPU options change nothing: both variants of both
    # backends must give the same outputs, and every time must be recorded.
    # An XLA that does not know the options (old jaxlib) is told, not timed.
    from mctx_planner import gpu_loop_graphs  # pylint: disable=g-import-not-at-top
    result = tmp_path / "cb.json"
    argv = ("benchmarks/command_buffer_ab.py", "--cells", "gumbel,9,8,4",
            "--hidden", "16", "--budget", "0.05", "--out", str(result))
    if not gpu_loop_graphs():
        assert "does not know the command buffer options" in _run(
            *argv, returncode=1).stderr
        return
    stdout = _run_script(*argv)
    assert "gumbel A=9 B=8 S=4" in stdout
    (row,) = json.loads(result.read_text())["rows"]
    assert row["mctx_loops_identical"] == row["fast_loops_identical"] == [True, True]
    for tag in ("mctx_default", "mctx_loops", "fast_default", "fast_loops"):
        assert row[f"{tag}_ms"] > 0 and row[f"{tag}_compile_s"] > 0, tag
