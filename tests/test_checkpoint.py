"""Tests of `mctx_planner.checkpoint` (atomic, bit-exact orbax checkpoints)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from mctx_planner import checkpoint as ckpt


@chex.dataclass
class Params:
    w: jax.Array
    b: jax.Array
    scale: float


class Counters(NamedTuple):
    iteration: int
    frames: np.ndarray
    done: bool


def _state(seed: int = 0):
    rng = np.random.default_rng(seed)
    nan_payload = np.array([0x7FC00001, 0xFFC00123, 0x80000000, 0x00000001],
                           np.uint32).view(np.float32)  # NaNs, -0.0, denormal
    return {
        "params": Params(
            w=jnp.asarray(rng.standard_normal((4, 3)), jnp.float32),
            b=jnp.asarray(nan_payload),
            scale=0.1 + seed,
        ),
        "counters": Counters(iteration=7 + seed, frames=np.int64(2**40 + seed),
                             done=False),
        "key": jax.random.key(42 + seed),
        "rbg_key": jax.random.split(jax.random.key(3, impl="rbg"), 2),
        "raw_key": jax.random.PRNGKey(5 + seed),
        "mask": jnp.asarray(rng.random(6) > 0.5),
        "ints": jnp.arange(5, dtype=jnp.int32) * (seed + 1),
        "half": jnp.asarray(rng.standard_normal(3), jnp.bfloat16),
        "lr": jnp.asarray(3e-4),  # weakly typed
        "buffer": {"obs": rng.standard_normal((8, 2)).astype(np.float32),
                   "empty": np.zeros((0, 4), np.int32),
                   "ptr": 3},
        "nothing": None,
        "temperature": np.float32(0.25),
    }


def _leaf_bytes(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(
            x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x).tobytes()


def _assert_identical(restored, original):
    assert (jax.tree_util.tree_structure(restored)
            == jax.tree_util.tree_structure(original))
    r_leaves = jax.tree_util.tree_leaves_with_path(restored)
    o_leaves = jax.tree_util.tree_leaves_with_path(original)
    for (path, r), (_, o) in zip(r_leaves, o_leaves):
        where = jax.tree_util.keystr(path)
        assert type(r) is type(o), where
        if isinstance(o, (bool, int, float)):
            assert r == o and repr(r) == repr(o), where
            continue
        assert r.dtype == o.dtype and r.shape == o.shape, where
        assert getattr(r, "weak_type", None) == getattr(o, "weak_type", None), where
        assert _leaf_bytes(r) == _leaf_bytes(o), where


def test_round_trip_bit_identical(tmp_path, capfd):
    state = _state()
    config = {"lr": 3e-4, "layers": [64, 64], "name": "muzero-ü", "x": None}
    capfd.readouterr()
    path = ckpt.save(tmp_path, 10, state, config=config,
                     metadata={"frames": 123})
    restored, info = ckpt.restore(tmp_path, state)
    out, err = capfd.readouterr()
    assert out == "" and err == "", "checkpointing must be quiet"

    assert path == tmp_path / "step_00000010" and path.is_dir()
    assert info["step"] == 10 and info["config"] == config
    assert info["metadata"] == {"frames": 123}
    _assert_identical(restored, state)
    assert isinstance(restored["params"], Params)
    assert isinstance(restored["counters"], Counters)
    # Typed keys come back as typed keys that generate the same numbers.
    assert jax.random.key_impl(restored["rbg_key"]) == jax.random.key_impl(
        state["rbg_key"])
    np.testing.assert_array_equal(
        jax.random.uniform(restored["key"], (4,)),
        jax.random.uniform(state["key"], (4,)))
    # Weak typing (and hence type promotion) is preserved.
    assert (restored["lr"] * jnp.ones(2, jnp.bfloat16)).dtype == jnp.bfloat16
    # NumPy leaves stay NumPy and writable (e.g. a replay buffer).
    restored["buffer"]["obs"][0, 0] = 1.0


def test_restore_into_abstract_target(tmp_path):
    state = _state(1)
    ckpt.save(tmp_path, 1, state)
    abstract = jax.eval_shape(lambda: state)
    restored, _ = ckpt.restore(tmp_path, abstract)
    # Leaves come back as what was saved (Python ints stay ints, ...).
    _assert_identical(restored, state)


def test_keep_prunes_old_checkpoints(tmp_path):
    state = {"x": jnp.arange(3)}
    for step in range(0, 60, 10):
        ckpt.save(tmp_path, step, state, keep=2)
    assert ckpt.all_steps(tmp_path) == [40, 50]
    assert sorted(os.listdir(tmp_path)) == ["step_00000040", "step_00000050"]
    ckpt.save(tmp_path, 60, state, keep=None)
    ckpt.save(tmp_path, 70, state, keep=None)
    assert ckpt.all_steps(tmp_path) == [40, 50, 60, 70]
    # The checkpoint just written always survives, even if it is not newest.
    ckpt.save(tmp_path, 5, state, keep=1)
    assert ckpt.all_steps(tmp_path) == [5, 70]
    with pytest.raises(ValueError):
        ckpt.save(tmp_path, 80, state, keep=0)


def test_latest_step_and_specific_step(tmp_path):
    assert ckpt.latest_step(tmp_path / "nope") is None
    assert ckpt.all_steps(tmp_path / "nope") == []
    states = {step: _state(step) for step in (3, 1, 2)}
    for step, state in states.items():
        ckpt.save(tmp_path, step, state, metadata={"s": step}, keep=5)
    assert ckpt.latest_step(tmp_path) == 3
    assert ckpt.all_steps(tmp_path) == [1, 2, 3]

    restored, info = ckpt.restore(tmp_path, states[1])
    assert info["step"] == 3 and info["metadata"] == {"s": 3}
    _assert_identical(restored, states[3])
    restored, info = ckpt.restore(tmp_path, states[1], step=1)
    assert info["step"] == 1 and info["metadata"] == {"s": 1}
    _assert_identical(restored, states[1])


def test_overwrite_same_step(tmp_path):
    ckpt.save(tmp_path, 4, {"x": jnp.zeros(2)}, metadata={"v": 1})
    ckpt.save(tmp_path, 4, {"x": jnp.ones(2)}, metadata={"v": 2})
    restored, info = ckpt.restore(tmp_path, {"x": jnp.zeros(2)})
    assert info["metadata"] == {"v": 2}
    np.testing.assert_array_equal(restored["x"], np.ones(2))
    assert os.listdir(tmp_path) == ["step_00000004"]


def test_missing_directory_and_step_errors(tmp_path):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(ckpt.CheckpointNotFoundError,
                       match="does not exist") as excinfo:
        ckpt.restore(missing, {"x": 0})
    assert isinstance(excinfo.value, FileNotFoundError)
    assert isinstance(excinfo.value, ckpt.CheckpointError)
    assert isinstance(excinfo.value, RuntimeError)
    assert str(missing) in str(excinfo.value)

    with pytest.raises(ckpt.CheckpointNotFoundError, match="No complete"):
        ckpt.restore(tmp_path, {"x": 0})

    ckpt.save(tmp_path, 1, {"x": 0})
    ckpt.save(tmp_path, 2, {"x": 0})
    with pytest.raises(ckpt.CheckpointNotFoundError,
                       match=r"step 7 .*available steps: \[1, 2\]"):
        ckpt.restore(tmp_path, {"x": 0}, step=7)


def _data_files(step_dir: pathlib.Path):
    return [p for p in (step_dir / "arrays").rglob("*")
            if p.is_file() and p.parent.name == "d"]


def _truncate_data(step_dir):
    for p in _data_files(step_dir):
        with open(p, "r+b") as f:
            f.truncate(p.stat().st_size // 2)


def _delete_data(step_dir):
    for p in _data_files(step_dir):
        p.unlink()


def _delete_ocdbt_manifest(step_dir):
    (step_dir / "arrays" / "manifest.ocdbt").unlink()


def _bad_metadata_json(step_dir):
    (step_dir / "metadata.json").write_text('{"frames": 12')


def _delete_manifest(step_dir):
    (step_dir / "manifest.json").unlink()


def _wrong_checksum(step_dir):
    manifest = json.loads((step_dir / "manifest.json").read_text())
    manifest["leaves"][0]["crc32"] ^= 1
    (step_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("corrupt", [
    _truncate_data, _delete_data, _delete_ocdbt_manifest, _bad_metadata_json,
    _delete_manifest, _wrong_checksum,
])
def test_corrupt_newest_checkpoint(tmp_path, corrupt, capfd):
    old, new = {"w": jnp.arange(64.0)}, {"w": jnp.arange(64.0) + 1}
    ckpt.save(tmp_path, 1, old)
    ckpt.save(tmp_path, 2, new)
    corrupt(tmp_path / "step_00000002")
    capfd.readouterr()
    with pytest.raises(ckpt.CheckpointCorruptError) as excinfo:
        ckpt.restore(tmp_path, new)
    msg = str(excinfo.value)
    assert "step 2" in msg and str(tmp_path) in msg
    assert "steps [1]" in msg and "step=" in msg
    assert isinstance(excinfo.value, ckpt.CheckpointError)
    if corrupt is _wrong_checksum:
        assert "checksum mismatch for leaf ['w']" in msg
    elif corrupt is not _delete_manifest:
        assert excinfo.value.__cause__ is not None  # original error chained
    # No raw orbax/tensorstore noise on the terminal.
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    # The older checkpoint is still usable when requested explicitly.
    restored, info = ckpt.restore(tmp_path, old, step=1)
    assert info["step"] == 1
    np.testing.assert_array_equal(restored["w"], old["w"])


def test_interrupted_save_leaves_last_good_checkpoint(tmp_path, monkeypatch):
    good = _state()
    ckpt.save(tmp_path, 1, good)

    # 1) Leftover of a save killed mid-way: a partial temporary folder, from a
    # dead process, that even contains a manifest.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / (f".tmp-step_00000002-{ckpt._host()}-{dead.pid}-"
                           "0123456789ab")
    shutil.copytree(tmp_path / "step_00000001", leftover)
    _truncate_data(leftover)
    assert ckpt.latest_step(tmp_path) == 1
    assert ckpt.all_steps(tmp_path) == [1]
    restored, info = ckpt.restore(tmp_path, good)
    assert info["step"] == 1
    _assert_identical(restored, good)

    # 2) An exception (e.g. Ctrl-C) in the middle of a save, including an
    # overwrite of the existing step: nothing changes, nothing is left over.
    def interrupted(root):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "_fsync_tree", interrupted)
    for step in (2, 1):
        with pytest.raises(KeyboardInterrupt):
            ckpt.save(tmp_path, step, _state(5))
    monkeypatch.undo()
    assert ckpt.all_steps(tmp_path) == [1]
    assert not [n for n in os.listdir(tmp_path)
                if n.startswith(".tmp") and n != leftover.name]
    restored, _ = ckpt.restore(tmp_path, good)
    _assert_identical(restored, good)

    # The next successful save cleans up the dead process's leftover.
    ckpt.save(tmp_path, 3, good)
    assert sorted(os.listdir(tmp_path)) == ["step_00000001", "step_00000003"]


def test_hard_kill_mid_save(tmp_path):
    """A process that dies (no cleanup at all) right before publishing."""
    state = {"w": jnp.arange(10.0), "step": 1}
    ckpt.save(tmp_path, 1, state)
    script = textwrap.dedent(f"""
        import os
        import jax.numpy as jnp
        from mctx_planner import checkpoint as ckpt
        ckpt._publish = lambda tmp, final: os._exit(17)
        ckpt.save({str(tmp_path)!r}, 2, {{"w": jnp.zeros(10), "step": 2}})
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", script], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    assert any(n.startswith(".tmp-step_00000002") for n in os.listdir(tmp_path))
    assert ckpt.latest_step(tmp_path) == 1
    restored, info = ckpt.restore(tmp_path, state)
    assert info["step"] == 1 and restored["step"] == 1
    np.testing.assert_array_equal(restored["w"], state["w"])


def test_mismatched_target_names_leaf(tmp_path):
    state = _state()
    ckpt.save(tmp_path, 1, state)

    bad_shape = _state()
    bad_shape["params"].w = jnp.zeros((4, 4))
    with pytest.raises(ckpt.CheckpointMismatchError,
                       match=r"\['params'\]\.w.*\(4, 3\).*\(4, 4\)") as excinfo:
        ckpt.restore(tmp_path, bad_shape)
    assert isinstance(excinfo.value, ValueError)
    assert str(tmp_path) in str(excinfo.value)

    bad_dtype = _state()
    bad_dtype["ints"] = bad_dtype["ints"].astype(jnp.float32)
    with pytest.raises(ckpt.CheckpointMismatchError,
                       match=r"\['ints'\].*int32.*float32"):
        ckpt.restore(tmp_path, bad_dtype)

    raw_instead_of_typed = _state()
    raw_instead_of_typed["key"] = jax.random.PRNGKey(0)
    with pytest.raises(ckpt.CheckpointMismatchError, match=r"\['key'\]"):
        ckpt.restore(tmp_path, raw_instead_of_typed)

    extra = _state()
    extra["buffer"]["new_field"] = jnp.zeros(2)
    with pytest.raises(ckpt.CheckpointMismatchError,
                       match=r"\['buffer'\]\['new_field'\]"):
        ckpt.restore(tmp_path, extra)

    missing = _state()
    del missing["temperature"]
    with pytest.raises(ckpt.CheckpointMismatchError,
                       match=r"\['temperature'\] is missing from the target"):
        ckpt.restore(tmp_path, missing)


def test_config_and_metadata_json(tmp_path):
    config = {"a": 1, "b": [1.5, "x", None, True], "c": {"nested": {"d": -2}}}
    metadata = {"wall_time": 12.5, "frames": np.int64(7), "lib": "0.1.0",
                "dir": pathlib.Path("/x/y")}
    ckpt.save(tmp_path, 0, {"x": 1}, config=config, metadata=metadata)
    _, info = ckpt.restore(tmp_path, {"x": 1})
    assert info["config"] == config
    assert info["metadata"] == {"wall_time": 12.5, "frames": 7, "lib": "0.1.0",
                                "dir": "/x/y"}
    assert info["versions"]["jax"] == jax.__version__
    on_disk = json.loads((tmp_path / "step_00000000" / "config.json").read_text())
    assert on_disk == config

    ckpt.save(tmp_path, 1, {"x": 1})
    assert ckpt.restore(tmp_path, {"x": 1})[1]["config"] is None


def test_read_info_reads_no_arrays(tmp_path):
    ckpt.save(tmp_path, 3, {"w": jnp.arange(4.0)}, config={"seed": 1},
              metadata={"updates": 9})
    _delete_data(tmp_path / "step_00000003")  # arrays are not needed
    info = ckpt.read_info(tmp_path)
    assert info["step"] == 3 and info["config"] == {"seed": 1}
    assert info["metadata"] == {"updates": 9}
    assert info["path"] == tmp_path / "step_00000003"
    assert ckpt.read_info(tmp_path, 3)["step"] == 3
    with pytest.raises(ckpt.CheckpointNotFoundError, match=r"\[3\]"):
        ckpt.read_info(tmp_path, 4)
    with pytest.raises(ckpt.CheckpointCorruptError):
        ckpt.restore(tmp_path, {"w": jnp.arange(4.0)})


def test_invalid_arguments_write_nothing(tmp_path):
    with pytest.raises(TypeError, match="config must be JSON"):
        ckpt.save(tmp_path, 0, {"x": 1}, config={"f": object()})
    with pytest.raises(TypeError, match=r"Unsupported leaf type str at \['s'\]"):
        ckpt.save(tmp_path, 0, {"s": "text"})
    with pytest.raises(ValueError):
        ckpt.save(tmp_path, -1, {"x": 1})
    assert not tmp_path.exists() or not os.listdir(tmp_path)


def test_empty_state_and_bfloat16_numpy(tmp_path):
    ckpt.save(tmp_path, 0, {})
    restored, info = ckpt.restore(tmp_path, {})
    assert restored == {} and info["step"] == 0
    arr = np.arange(4).astype(ml_dtypes.bfloat16)
    ckpt.save(tmp_path, 1, (arr,))
    (restored,), _ = ckpt.restore(tmp_path, (arr,))
    assert restored.dtype == arr.dtype and restored.tobytes() == arr.tobytes()
