"""The examples, the documentation's code and the API reference.

* every script in ``examples/`` runs with ``--tiny`` in a subprocess, exits
  with status 0 and prints its ``RESULT`` line;
* the Python code blocks of ``docs/quickstart.md`` and
  ``docs/tutorial_new_domain.md`` run, each document as one script in a
  fresh process (the quickstart's training call is shrunk to a tiny
  configuration by a prelude, see :data:`_TINY_TRAIN_PRELUDE`);
* every public name (``mctx_planner.__all__``) is documented in
  ``docs/api.md``;
* the pgx / gymnax adapters: against small pgx-like and gymnax-like fake
  environments here, and through ``examples/adapters_pgx_gymnax.py`` against
  the real packages (``check_domain``, search, training), which must then
  not be skipped when the packages are installed.

The subprocesses are compilation-bound. Under pytest-xdist (the project's
``pytest -n 2``) each test runs its own; without xdist they are all started
on a two-worker pool when the module starts, so that they overlap with each
other and with the in-process tests.
``--xla_backend_optimization_level=0`` is added to ``XLA_FLAGS`` for them:
the tiny runs check behaviour, not speed, and XLA compiles much faster.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mctx_planner as mp
from mctx_planner import adapters
from mctx_planner import evaluate as ev

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"
TIMEOUT_S = 900

#: example script -> the line it must print.
EXAMPLE_RESULTS = {
    "tictactoe_alphazero_vs_muzero.py": "RESULT tictactoe:",
    "connect4_gumbel.py": "RESULT connect4:",
    "maze_muzero.py": "RESULT maze:",
    "game2048_stochastic_muzero.py": "RESULT 2048:",
    "knowledge_graph_reasoning.py": "RESULT knowledge_graph:",
    "recommendation_planning.py": "RESULT recommendation:",
    "adapters_pgx_gymnax.py": "RESULT adapters:",
    "search_on_all_cores.py": "RESULT search_on_all_cores: devices=",
}
DOCS_WITH_CODE = ("quickstart.md", "tutorial_new_domain.md")

#: Run before the quickstart's code: every ``train`` call gets a tiny
#: configuration (the documented presets take minutes).
_TINY_TRAIN_PRELUDE = textwrap.dedent("""\
    import mctx_planner as _mp
    import mctx_planner.trainer as _trainer
    from mctx_planner.networks import NetworkConfig as _Net
    from mctx_planner.transforms import Support as _Support

    _real_train = _trainer.train

    def _tiny_train(config, **kwargs):
        config = config.replace(
            iterations=min(config.iterations, 2), num_envs=8, unroll_length=4,
            num_simulations=4, eval_simulations=4, max_num_considered_actions=4,
            num_unroll_steps=1, replay_capacity=64, batch_size=16,
            updates_per_iteration=2, warmup_steps=1, eval_games=4,
            network=_Net(hidden_size=16, num_layers=1, latent_size=16,
                         value_support=_Support(size=1, transform=False),
                         reward_support=_Support(size=1, transform=False)))
        return _real_train(config, **kwargs)

    _mp.train = _trainer.train = _tiny_train
    """)


def _python_blocks(markdown: str) -> list[str]:
    """The fenced ```python blocks of a markdown text, in order."""
    return [textwrap.dedent(b) for b in
            re.findall(r"^```python\n(.*?)^```", markdown, re.S | re.M)]


def _subprocess_env(cache_dir: str | None = None) -> dict:
    env = dict(os.environ)
    if cache_dir and "JAX_COMPILATION_CACHE_DIR" not in env:
        # One persistent compilation cache for this session's subprocesses:
        # the small programs every run compiles (key splitting, init, ...)
        # are compiled once.
        env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    flags = env.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        env["XLA_FLAGS"] = (flags + " --xla_backend_optimization_level=0").strip()
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    return env


@dataclasses.dataclass
class _Job:
    argv: list
    cwd: str
    cache_dir: str | None = None


def _run(job: _Job) -> subprocess.CompletedProcess:
    return subprocess.run(job.argv, cwd=job.cwd, capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=_subprocess_env(job.cache_dir))


def _example_job(name: str, tmp: pathlib.Path) -> _Job:
    return _Job([sys.executable, str(EXAMPLES / name), "--tiny"], str(tmp))


def _docs_job(name: str, tmp: pathlib.Path) -> _Job:
    blocks = _python_blocks((DOCS / name).read_text())
    prelude = _TINY_TRAIN_PRELUDE if name == "quickstart.md" else ""
    script = tmp / f"{name}.py"
    script.write_text(prelude + "\n\n".join(blocks))
    return _Job([sys.executable, str(script)], str(tmp))


class _Runner:
    """Runs the subprocess jobs, concurrently unless under pytest-xdist."""

    def __init__(self, tmp: pathlib.Path, wanted: list):
        self.tmp = tmp
        self.futures = {}
        self.pool = None
        if os.environ.get("PYTEST_XDIST_WORKER") is None and wanted:
            # Two at most: more processes only fight over the cores (measured
            # slower on the 2-core test machine).
            workers = max(1, min(2, os.cpu_count() or 1))
            self.pool = concurrent.futures.ThreadPoolExecutor(workers)
            for kind, name in wanted:
                self.futures[(kind, name)] = self.pool.submit(
                    _run, self._job(kind, name))

    def _job(self, kind: str, name: str) -> _Job:
        workdir = self.tmp / f"{kind}-{name}"
        workdir.mkdir(parents=True, exist_ok=True)
        job = (_example_job if kind == "example" else _docs_job)(name, workdir)
        job.cache_dir = str(self.tmp / "jax_compilation_cache")
        return job

    def result(self, kind: str, name: str) -> subprocess.CompletedProcess:
        future = self.futures.get((kind, name))
        if future is None:
            return _run(self._job(kind, name))
        return future.result()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


#: Submission order, longest first (the examples that train two agents or
#: compile the stochastic search start before the quick ones).
_ORDER = ["adapters_pgx_gymnax.py", "tictactoe_alphazero_vs_muzero.py",
          "game2048_stochastic_muzero.py", "quickstart.md",
          "recommendation_planning.py", "knowledge_graph_reasoning.py",
          "maze_muzero.py", "tutorial_new_domain.md", "connect4_gumbel.py"]


@pytest.fixture(scope="module", autouse=True)
def runner(request, tmp_path_factory):
    wanted = []
    for item in request.session.items:
        m = re.search(r"test_(example|docs_code)_runs\[(.+)\]$", item.nodeid)
        if m and item.path == request.node.path:
            wanted.append(("example" if m.group(1) == "example" else "docs",
                           m.group(2)))
    wanted.sort(key=lambda kn: _ORDER.index(kn[1]) if kn[1] in _ORDER else 99)
    r = _Runner(tmp_path_factory.mktemp("subprocess_runs"), wanted)
    yield r
    r.close()


def _report(proc: subprocess.CompletedProcess) -> str:
    return (f"exit status {proc.returncode}\n--- stdout (tail) ---\n"
            f"{proc.stdout[-4000:]}\n--- stderr (tail) ---\n{proc.stderr[-4000:]}")


# ---------------------------------------------------------------------------
# Adapters
# ---------------------------------------------------------------------------


@chex.dataclass(frozen=True)
class _FakePgxState:
    current_player: chex.Array
    observation: chex.Array
    rewards: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    legal_action_mask: chex.Array
    stones: chex.Array


class _FakePgxNim:
    """A pgx-like two-player game: take 1 or 2 of 5 stones; taking the last
    one wins. pgx-style: random first player, per-player rewards, illegal
    move loses, all-True mask at the end, ``step(state, action, key=None)``."""

    id = "fake_nim"
    version = "v0"
    num_actions = 2
    num_players = 2

    def _obs(self, stones):
        return jax.nn.one_hot(stones, 6) > 0

    def init(self, key):
        player = jax.random.bernoulli(key).astype(jnp.int32)
        stones = jnp.int32(5)
        return _FakePgxState(current_player=player, observation=self._obs(stones),
                             rewards=jnp.zeros(2, jnp.float32),
                             terminated=jnp.bool_(False), truncated=jnp.bool_(False),
                             legal_action_mask=jnp.ones(2, jnp.bool_),
                             stones=stones)

    def step(self, state, action, key=None):
        del key
        take = action + 1
        legal = take <= state.stones
        stones = jnp.where(legal, state.stones - take, state.stones)
        win = legal & (stones == 0)
        me = state.current_player
        r_me = jnp.where(win, 1.0, jnp.where(legal, 0.0, -1.0))
        rewards = jnp.zeros(2, jnp.float32).at[me].set(r_me).at[1 - me].set(-r_me)
        done = win | ~legal
        new = _FakePgxState(
            current_player=1 - me, observation=self._obs(stones), rewards=rewards,
            terminated=done, truncated=jnp.bool_(False),
            legal_action_mask=jnp.where(done, True, jnp.arange(1, 3) <= stones),
            stones=stones)
        ended = state.terminated | state.truncated
        return mp.select_state(ended, state.replace(rewards=jnp.zeros(2, jnp.float32)),
                               new)


@chex.dataclass(frozen=True)
class _FakeGymnaxState:
    position: chex.Array
    time: chex.Array


@dataclasses.dataclass(frozen=True)
class _FakeParams:
    max_steps_in_episode: int = 20


class _Discrete:
    def __init__(self, n):
        self.n = n


class _FakeGymnaxWalk:
    """A gymnax-like corridor: start at 0, actions left/right, +1 on
    reaching position 3 (done), -0.1 per step; ``time`` starts as a Python
    int like gymnax's (a weakly typed leaf)."""

    name = "FakeWalk-v0"
    default_params = _FakeParams()

    def action_space(self, params):
        return _Discrete(2)

    def reset_env(self, key, params):
        del key
        state = _FakeGymnaxState(position=jnp.int32(0), time=0)
        return jnp.zeros(1) + state.position, state

    def step_env(self, key, state, action, params):
        noise = jax.random.uniform(key) * 0.0
        position = jnp.clip(state.position + 2 * action - 1, -3, 3)
        done = position >= 3
        reward = jnp.where(done, 1.0, -0.1) + noise
        new = _FakeGymnaxState(position=position, time=state.time + 1)
        return (jnp.zeros(1) + position).astype(jnp.float32), new, reward, done, {}


def test_adapter_fake_pgx_follows_the_protocol_and_conventions():
    domain = adapters.from_pgx(_FakePgxNim())
    mp.check_domain(domain, num_episodes=2)
    assert domain.num_players == 2 and domain.num_actions == 2
    assert domain == adapters.from_pgx(_FakePgxNim())
    assert hash(domain) == hash(adapters.from_pgx(_FakePgxNim()))
    init, step = jax.jit(domain.init), jax.jit(domain.step)
    first_players = set()
    for seed in range(6):  # pgx's first player is random; the seat is not
        s = init(jax.random.PRNGKey(seed))
        first_players.add(int(s.first_player))
        assert int(s.current_player) == 0
        movers = []
        for a in (1, 0, 1):  # 5 -> 3 -> 2 -> 0: the first mover wins
            movers.append(int(s.current_player))
            s = step(s, jnp.int32(a))
        assert movers == [0, 1, 0]
        assert float(s.reward) == 1.0 and bool(s.terminated)
        assert bool(jnp.all(s.legal_action_mask))
    assert first_players == {0, 1}  # both pgx ids moved first at least once
    # Search finds the win: from 5 stones take 2 (leaving a multiple of 3).
    model = mp.true_model(domain, mp.uniform_predict_fn(domain.num_actions))
    planner = mp.make_planner(model, ev.evaluation_config(32))
    out = planner.plan(None, jax.random.PRNGKey(0),
                       mp.init_states(domain, jax.random.PRNGKey(1), 2))
    np.testing.assert_array_equal(np.asarray(out.action), [1, 1])


def test_adapter_fake_gymnax_follows_the_protocol():
    domain = adapters.from_gymnax(_FakeGymnaxWalk())
    mp.check_domain(domain, num_episodes=2)
    assert domain.max_episode_steps == 20 and domain.num_actions == 2
    init, step = jax.jit(domain.init), jax.jit(domain.step)
    s = init(jax.random.PRNGKey(0))
    for _ in range(3):
        s = step(s, jnp.int32(1))
    assert bool(s.terminated) and abs(float(s.reward) - 1.0) < 1e-6
    stats = mp.evaluate_single_player(domain, mp.pure_search_player(domain, 16),
                                      num_episodes=4, key=jax.random.PRNGKey(0))
    assert stats.mean_return > 0.7  # straight to the goal: -0.1 -0.1 +1


def test_adapter_import_errors_name_the_package(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_optional(name, *args, **kwargs):
        if name in ("pgx", "gymnax"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optional)
    with pytest.raises(ImportError, match="pip install pgx"):
        adapters.from_pgx("tic_tac_toe")
    with pytest.raises(ImportError, match="pip install gymnax"):
        adapters.from_gymnax("CartPole-v1")


def test_adapter_rejects_bad_environments():
    class ThreePlayers(_FakePgxNim):
        num_players = 3
    with pytest.raises(ValueError, match="players"):
        adapters.from_pgx(ThreePlayers())

    class Continuous(_FakeGymnaxWalk):
        def action_space(self, params):
            return object()
    with pytest.raises(ValueError, match="discrete"):
        adapters.from_gymnax(Continuous())


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# ---------------------------------------------------------------------------
# Examples and documentation code (subprocesses; started by the fixture at
# the first test of this module, so the in-process tests above overlap them)
# ---------------------------------------------------------------------------


def test_every_example_is_listed():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(EXAMPLE_RESULTS)


@pytest.mark.parametrize("name", sorted(EXAMPLE_RESULTS))
def test_example_runs(runner, name):
    proc = runner.result("example", name)
    assert proc.returncode == 0, _report(proc)
    assert EXAMPLE_RESULTS[name] in proc.stdout, _report(proc)
    if name == "adapters_pgx_gymnax.py":
        # The example skips a part whose package does not import; an
        # installed package must work (check_domain, search, training).
        for package in ("pgx", "gymnax"):
            if _installed(package):
                assert f"{package} skipped" not in proc.stdout, _report(proc)
    if name == "search_on_all_cores.py":
        # The search split over the devices chooses the actions of XLA's own
        # partitioning of the same inputs, for both algorithms.
        assert proc.stdout.count("_same_as_partitioned=100%") == 2, _report(proc)


@pytest.mark.parametrize("name", sorted(EXAMPLE_RESULTS))
def test_example_documents_its_command(name):
    source = (EXAMPLES / name).read_text()
    assert f"python examples/{name}" in source
    # The command line comes from the shared parser (which has --tiny).
    assert "example_parser(__doc__" in source


def test_shared_example_command_line():
    spec = importlib.util.spec_from_file_location("_common", EXAMPLES / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    args = common.example_parser("Doc.\n\nMore.").parse_args(
        ["--tiny", "--iterations", "3", "--set", "seed=5"])
    assert args.tiny and args.iterations == 3
    config = common.finish_config(common.tiny(mp.preset("tictactoe")), args)
    assert (config.iterations, config.seed, config.num_envs) == (3, 5, 8)
    assert config.network.hidden_size == 16
    with pytest.raises(ValueError, match="TrainConfig"):
        common.finish_config(config, common.example_parser("D").parse_args(
            ["--set", "num_envs=0"]))


@pytest.mark.parametrize("name", DOCS_WITH_CODE)
def test_docs_code_runs(runner, name):
    assert _python_blocks((DOCS / name).read_text()), f"no python code in {name}"
    proc = runner.result("docs", name)
    assert proc.returncode == 0, _report(proc)


def test_api_reference_lists_every_public_name():
    text = (DOCS / "api.md").read_text()
    headings = set(re.findall(r"^#{2,4} `?([A-Za-z_][A-Za-z0-9_]*)", text, re.M))
    missing = [n for n in mp.__all__ if n not in headings]
    assert not missing, (f"docs/api.md lacks {missing}; regenerate it with "
                         "`python docs/gen_api.py`")


def test_docs_index_links_resolve():
    text = (DOCS / "index.md").read_text()
    links = re.findall(r"\]\(([^)#]+\.md)", text)
    assert links
    for link in links:
        assert (DOCS / link).is_file(), link
