"""Search split over devices (`mesh=`): same results as one device, clear errors.

The checks that need several devices run in one subprocess with four host
CPU devices (the device count is fixed when JAX starts).
"""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from mctx_planner.config import TrainConfig
from mctx_planner.domains import TicTacToe
from mctx_planner.search import SearchConfig, make_planner, true_model, uniform_predict_fn
from mctx_planner.train import make_agent

_MULTI_DEVICE_CODE = textwrap.dedent("""
    import dataclasses
    import jax, jax.numpy as jnp, mctx, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from mctx_planner import _fast_search
    from mctx_planner.config import TrainConfig
    from mctx_planner.domains import TicTacToe
    from mctx_planner.networks import NetworkConfig
    from mctx_planner.search import SearchConfig, make_planner, true_model, uniform_predict_fn
    from mctx_planner.selfplay import init_states
    from mctx_planner.train import make_agent, shard_state

    assert len(jax.devices()) == 4, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("batch",))

    def same(a, b):
        # Integers (actions, visit counts, tree links) exactly; floats to the
        # last bits (XLA may round transcendental functions differently on
        # the per-device shapes of a sharded program).
        la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
        assert len(la) == len(lb)
        for x, y in zip(la, lb):
            x, y = np.asarray(x), np.asarray(y)
            if x.shape != y.shape or x.dtype != y.dtype:
                return False
            if np.issubdtype(x.dtype, np.floating):
                if not np.allclose(x, y, rtol=1e-5, atol=1e-6, equal_nan=True):
                    return False
            elif not np.array_equal(x, y):
                return False
        return True

    # 1. Planner: a mesh gives mctx's result, muzero and gumbel, with the
    #    in-tree legal masks of a true model (B = 8 over 4 devices). The
    #    uniform prior keeps the arithmetic exact: a network's matmuls may
    #    round differently on the per-device batch and flip near-ties.
    domain = TicTacToe()
    params = None
    model = true_model(domain, uniform_predict_fn(domain.num_actions))
    states = init_states(domain, jax.random.PRNGKey(1), 8, opening_moves=2)
    sharded_states = jax.device_put(states, NamedSharding(mesh, P("batch")))
    for algorithm in ("muzero", "gumbel_muzero"):
        cfg = SearchConfig(algorithm=algorithm, num_simulations=12,
                           max_num_considered_actions=4, backend="mctx")
        ref = make_planner(model, cfg).plan(params, jax.random.PRNGKey(2), states)
        fast = make_planner(model, dataclasses.replace(cfg, backend="fast"),
                            mesh=mesh).plan(params, jax.random.PRNGKey(2), sharded_states)
        assert same(ref, fast), algorithm
        assert len(fast.tree.node_visits.sharding.device_set) == 4, algorithm
        # Not divisible: a ValueError at trace time (before XLA), naming the batch.
        try:
            make_planner(model, SearchConfig(backend="fast"), mesh=mesh).plan(
                params, jax.random.PRNGKey(2), init_states(domain, jax.random.PRNGKey(1), 6))
            raise AssertionError("no error for a batch of 6 over 4 devices")
        except ValueError as e:
            assert "batch (6)" in str(e), e

    # 2. Stochastic MuZero through the backend itself (chance nodes).
    def decision_fn(p, key, action, emb):
        after = jnp.tanh(emb + action[:, None] * 0.3)
        return mctx.DecisionRecurrentFnOutput(chance_logits=after[:, :3],
                                              afterstate_value=after[:, 0]), after
    def chance_fn(p, key, outcome, after):
        nxt = jnp.tanh(after * 1.3 + outcome[:, None] * 0.5)
        return mctx.ChanceRecurrentFnOutput(
            action_logits=nxt[:, :4], value=nxt[:, 1], reward=nxt[:, 2],
            discount=jnp.full_like(nxt[:, 0], -1.0)), nxt
    root = mctx.RootFnOutput(
        prior_logits=jax.random.normal(jax.random.PRNGKey(3), (8, 4)),
        value=jax.random.normal(jax.random.PRNGKey(4), (8,)),
        embedding=jax.random.normal(jax.random.PRNGKey(5), (8, 6)))
    run = lambda fn, **kw: jax.jit(lambda k: fn(None, k, root, decision_fn, chance_fn, 10, **kw))(
        jax.random.PRNGKey(6))
    assert same(run(mctx.stochastic_muzero_policy),
                run(_fast_search.stochastic_muzero_policy, mesh=mesh)), "stochastic"

    # 3. Training: self-play split over the mesh equals XLA's automatic
    #    partitioning of the same sharded state.
    cfg = TrainConfig(iterations=2, num_envs=8, unroll_length=4, num_simulations=4,
                      max_num_considered_actions=4, replay_capacity=64, batch_size=16,
                      updates_per_iteration=2, search_backend="fast",
                      network=NetworkConfig(hidden_size=16, num_layers=1))
    try:
        make_agent(dataclasses.replace(cfg, num_envs=6), mesh=mesh)
        raise AssertionError("no error for 6 environments over 4 devices")
    except ValueError as e:
        assert "TrainConfig.num_envs (6)" in str(e), e
    auto, split = make_agent(cfg), make_agent(cfg, mesh=mesh)
    s1 = shard_state(auto.init(jax.random.PRNGKey(0)), mesh)
    s2 = shard_state(split.init(jax.random.PRNGKey(0)), mesh)
    for _ in range(2):
        s1, m1 = auto.iteration(s1)
        s2, m2 = split.iteration(s2)
    assert same(s1.params, s2.params) and same(m1, m2)

    # 4. A run on the mesh resumes exactly from its sharded checkpoint.
    import tempfile
    from mctx_planner.trainer import train
    cfg = dataclasses.replace(cfg, iterations=3, checkpoint_every=1)
    with tempfile.TemporaryDirectory() as tmp:
        quiet = dict(progress=False, evaluate=False, verbose=False, mesh=mesh)
        full = train(cfg, out_dir=tmp + "/full", **quiet)
        train(cfg, out_dir=tmp + "/part", stop_after=2, **quiet)
        resumed = train(cfg, out_dir=tmp + "/part", resume=True, **quiet)
        assert int(resumed.state.iteration) == 3
        assert len(resumed.state.env_states.observation.sharding.device_set) == 4
        for a, b in zip(jax.tree_util.tree_leaves(full.state.params),
                        jax.tree_util.tree_leaves(resumed.state.params)):
            assert np.array_equal(np.asarray(a), np.asarray(b))
    print("SHARDED OK")
""")


def test_search_split_over_devices_matches_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _MULTI_DEVICE_CODE], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SHARDED OK" in out.stdout


def _tictactoe_model():
    domain = TicTacToe()
    return true_model(domain, uniform_predict_fn(domain.num_actions))


def test_mesh_needs_the_fast_backend_and_the_axis():
    mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
    model = _tictactoe_model()
    with pytest.raises(ValueError, match="backend='fast'"):
        make_planner(model, SearchConfig(backend="mctx"), mesh=mesh)
    with pytest.raises(ValueError, match="'envs' is not an axis"):
        make_planner(model, SearchConfig(backend="fast"), mesh=mesh, batch_axis="envs")
    with pytest.raises(TypeError, match="jax.sharding.Mesh"):
        make_planner(model, SearchConfig(backend="fast"), mesh=("batch", 2))
    with pytest.raises(ValueError, match="search_backend='fast'"):
        make_agent(TrainConfig(num_envs=8, search_backend="mctx"), mesh=mesh)
