"""The mctx-planner command: train, eval, play, search, and its error messages."""

import io
import os
import subprocess
import sys

import jax
import pytest

from mctx_planner.cli import main

TINY = ["--set", "num_envs=8", "--set", "unroll_length=10", "--set", "num_simulations=4",
        "--set", "eval_simulations=2", "--set", "replay_capacity=80",
        "--set", "batch_size=16", "--set", "updates_per_iteration=2",
        "--set", "network.hidden_size=16", "--set", "network.num_layers=1",
        "--set", "eval_games=4", "--set", "checkpoint_every=1",
        "--set", "opening_moves=0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rc = main(["train", "--out", str(out), "--iterations", "2", "--no-progress",
               "--no-eval", *TINY])
    assert rc == 0
    return out


def test_train_writes_checkpoints_and_metrics(run_dir):
    assert (run_dir / "checkpoints").is_dir()
    assert (run_dir / "config.json").is_file()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"loss"' in lines[0]


def test_train_refuses_to_mix_runs_and_resumes(run_dir, capsys):
    rc = main(["train", "--out", str(run_dir), "--iterations", "2", "--no-progress",
               "--no-eval", *TINY])
    assert rc == 2
    assert "already holds a run" in capsys.readouterr().err
    rc = main(["train", "--out", str(run_dir), "--iterations", "3", "--no-progress",
               "--no-eval", "--resume", *TINY])
    assert rc == 0
    assert "resumed" in capsys.readouterr().out


def test_eval_reports_arena_and_audit(run_dir, capsys):
    assert main(["eval", "--checkpoint", str(run_dir), "--games", "4"]) == 0
    out = capsys.readouterr().out
    assert "vs random" in out and "audit (search)" in out and "audit (network)" in out


def test_play_against_the_agent(run_dir, monkeypatch, capsys):
    # The human plays every cell in order; illegal/garbage input is re-asked.
    moves = "x\n" + "\n".join(str(i) for i in range(9) for _ in range(2)) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(moves))
    assert main(["play", "--checkpoint", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "not a number" in out
    assert any(w in out for w in ("you win", "agent wins", "draw"))


def test_search_explains_one_position(capsys, tmp_path):
    dot = tmp_path / "tree.dot"
    assert main(["search", "--moves", "0,3,1,4", "--simulations", "16",
                 "--dot", str(dot)]) == 0
    out = capsys.readouterr().out
    assert "chosen action 2" in out and "principal line" in out
    assert dot.read_text().startswith("digraph")


@pytest.mark.parametrize("argv,message", [
    (["train", "--set", "num_sims=3"], "unknown TrainConfig field"),
    (["train", "--set", "num_envs=0", "--print-config"], "num_envs"),
    (["train", "--domain", "chess"], "--domain must be one of"),
    (["search", "--moves", "0,0"], "illegal"),
    (["eval", "--checkpoint", "/nonexistent/run"], "no checkpoint"),
    (["train", "--devices", "0", "--no-progress"], "--devices must be >= 1"),
    # This process started JAX with one CPU device.
    (["train", "--devices", "2", "--no-progress"], "JAX has only 1 device"),
])
def test_bad_input_is_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "mctx_planner.cli", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout


def test_import_makes_a_user_domain_usable_by_name(tmp_path, capsys):
    module = tmp_path / "my_cli_domain.py"
    module.write_text(
        "from mctx_planner import domains\n"
        "from mctx_planner.domains import TicTacToe\n\n"
        "class MyGame(TicTacToe):\n"
        "    name = 'cli_user_game'\n\n"
        "domains.register('cli_user_game', MyGame)\n")
    rc = main(["search", "--import", str(module), "--domain", "cli_user_game",
               "--simulations", "4"])
    assert rc == 0, capsys.readouterr().err
    assert "player to move: 0" in capsys.readouterr().out


def test_import_errors_name_the_module(capsys):
    assert main(["search", "--import", "no_such_module_xyz", "--simulations", "4"]) == 2
    err = capsys.readouterr().err
    assert "--import no_such_module_xyz" in err and "ModuleNotFoundError" in err
    assert main(["train", "--domain", "nope", "--no-progress"]) == 2
    assert "--import the module that registers it" in capsys.readouterr().err


def test_train_on_two_cpu_devices_then_resume_on_one(tmp_path):
    # Fresh processes: the CPU device count is set when JAX starts.
    out = tmp_path / "run"
    base = [sys.executable, "-m", "mctx_planner.cli", "train", "--out", str(out),
            "--no-progress", *TINY, "--set", "search_backend=fast"]
    # With the final evaluation: it must take the sharded parameters.
    env = dict(os.environ)
    if not hasattr(jax.config, "jax_num_cpu_devices"):
        # An older JAX (0.4.30) cannot be asked by --devices; the CLI's error
        # says to set this flag, as a user there would.
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    first = subprocess.run(base + ["--iterations", "2", "--devices", "2"],
                           capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "split over 2" in first.stdout and "CpuDevice(id=1)" in first.stdout
    assert "final evaluation" in first.stdout
    second = subprocess.run(base + ["--iterations", "3", "--resume", "--no-eval"],
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout and "iter    3" in second.stdout
