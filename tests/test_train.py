"""Training tests: targets, replay, losses, one iteration per algorithm, resume,
sharding over 2 devices, and a tiny learning test."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mctx_planner import evaluate as ev
from mctx_planner.config import TrainConfig, apply_overrides, preset
from mctx_planner.networks import NetworkConfig
from mctx_planner.replay import make_replay
from mctx_planner.selfplay import Trajectory
from mctx_planner.targets import make_examples, value_targets
from mctx_planner.train import make_agent, search_config
from mctx_planner.trainer import load_run, network_action_fn, train
from mctx_planner.transforms import Support

TINY_NET = NetworkConfig(hidden_size=16, num_layers=1, latent_size=8,
                         value_support=Support(size=2), reward_support=Support(size=2))


def tiny(domain="tictactoe", algorithm="gumbel_alphazero", **kw):
    fields = dict(domain=domain, algorithm=algorithm, iterations=3, num_envs=8,
                  unroll_length=4, num_simulations=4, max_num_considered_actions=4,
                  eval_simulations=4, num_unroll_steps=2, replay_capacity=64,
                  batch_size=16, updates_per_iteration=2, network=TINY_NET,
                  eval_games=4, checkpoint_every=1, warmup_steps=1)
    if domain == "2048":
        fields["domain_kwargs"] = (("size", 3),)
    fields.update(kw)
    return TrainConfig(**fields)


# ------------------------------------------------------------------ targets
def two_player_chunk():
    """B=1, T=5: P0, P1, P0 wins (terminal); new game: P0, P1 (unfinished)."""
    T, A = 5, 3
    return Trajectory(
        observation=jnp.zeros((T, 1, 2)),
        legal_action_mask=jnp.ones((T, 1, A), bool),
        action=jnp.array([[0], [1], [2], [1], [0]], jnp.int32),
        policy=jnp.tile(jnp.array([0.5, 0.25, 0.25]), (T, 1, 1)),
        root_value=jnp.array([[0.1], [0.2], [0.3], [0.4], [0.5]]),
        reward=jnp.array([[0.0], [0.0], [1.0], [0.0], [0.0]]),
        terminated=jnp.array([[False], [False], [True], [False], [False]]),
        truncated=jnp.zeros((T, 1), bool),
        player=jnp.array([[0], [1], [0], [0], [1]], jnp.int32),
        chance_outcome=jnp.zeros((T, 1), jnp.int32))


def test_monte_carlo_targets_two_player():
    z, valid = value_targets(two_player_chunk(), two_player=True)
    # P0 wins at t=2: z2 = +1 (P0 to move), z1 = -1 (P1), z0 = +1 (P0).
    np.testing.assert_allclose(np.asarray(z[:3, 0]), [1.0, -1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(valid[:, 0]),
                                  [True, True, True, False, False])


def test_n_step_targets_two_player():
    z, valid = value_targets(two_player_chunk(), two_player=True, td_steps=2)
    # z0 = r0 + d0 r1 + d0 d1 v2 = 0 + 0 + (-1)(-1)(0.3); z1 = r1 - r2 = -1;
    # z2 = r2 = 1 (terminal); z3, z4 need v5, v6: outside the chunk.
    np.testing.assert_allclose(np.asarray(z[:3, 0]), [0.3, -1.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(valid[:, 0]),
                                  [True, True, True, False, False])


def test_unrolled_examples_respect_episode_boundaries():
    ex = make_examples(two_player_chunk(), num_unroll_steps=2, two_player=True)
    at = lambda x, t: np.asarray(x)[t, 0]  # noqa: E731
    # From t=1: z1, z2, then absorbing (value 0 known, policy untrained).
    np.testing.assert_allclose(at(ex.values, 1), [-1.0, 1.0, 0.0])
    np.testing.assert_array_equal(at(ex.value_mask, 1), [1, 1, 1])
    np.testing.assert_array_equal(at(ex.policy_mask, 1), [1, 1, 0])
    np.testing.assert_array_equal(at(ex.actions, 1), [1, 2])
    np.testing.assert_allclose(at(ex.rewards, 1), [0.0, 1.0])
    # From t=2 the next game (t=3) must not leak in.
    np.testing.assert_allclose(at(ex.values, 2), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(at(ex.actions, 2), [2, 0])
    np.testing.assert_allclose(at(ex.rewards, 2), [1.0, 0.0])
    np.testing.assert_array_equal(at(ex.reward_mask, 2), [1, 1])
    np.testing.assert_array_equal(at(ex.policy_mask, 2), [1, 0, 0])
    # From t=4 (unfinished game, end of chunk): no value known; only the
    # reward of the action taken at t=4 itself was observed.
    np.testing.assert_array_equal(at(ex.value_mask, 4), [0, 0, 0])
    np.testing.assert_array_equal(at(ex.reward_mask, 4), [1, 0])


def test_truncation_is_never_bootstrapped_across():
    chunk = two_player_chunk().replace(
        terminated=jnp.zeros((5, 1), bool),
        truncated=jnp.array([[False], [True], [False], [False], [False]]),
        reward=jnp.zeros((5, 1)))
    _, valid = value_targets(chunk, two_player=False, td_steps=3)
    assert not bool(valid[0, 0]) and not bool(valid[1, 0])


# ------------------------------------------------------------------ replay
def test_replay_samples_only_valid_examples_and_wraps():
    ex = make_examples(two_player_chunk(), num_unroll_steps=1, two_player=True)
    one = jax.tree_util.tree_map(lambda x: x[0, 0], ex)
    replay = make_replay(7)
    state = replay.init(one, num_columns=1)
    state = replay.add(state, ex)
    sample = replay.sample(state, jax.random.PRNGKey(0), 256)
    # Only t in {0, 1, 2} have a known first value target.
    assert set(np.asarray(sample.row).tolist()) <= {0, 1, 2}
    assert np.all(np.asarray(sample.examples.value_mask)[:, 0] == 1)
    state = replay.add(state, ex)  # 10 rows into 7: wraps around
    assert int(state.size) == 7 and int(state.position) == 3
    assert replay.nbytes(one, 1) > 0


def test_prioritized_replay_weights():
    ex = make_examples(two_player_chunk(), num_unroll_steps=1, two_player=True)
    one = jax.tree_util.tree_map(lambda x: x[0, 0], ex)
    replay = make_replay(8, prioritized=True)
    state = replay.add(replay.init(one, 1), ex)
    s = replay.sample(state, jax.random.PRNGKey(1), 64)
    w = np.asarray(s.weights)
    assert w.max() == pytest.approx(1.0) and (w > 0).all()
    state2 = replay.update_priorities(state, s, jnp.zeros(64))
    assert float(state2.priorities[0, int(s.row[0])]) < 0.1


# ------------------------------------------------------------------ one iteration
ALGOS = [("tictactoe", "alphazero"), ("tictactoe", "gumbel_alphazero"),
         ("tictactoe", "muzero"), ("maze", "gumbel_muzero"),
         ("2048", "stochastic_muzero")]


@pytest.mark.parametrize("domain,algorithm", ALGOS)
def test_one_iteration_runs_and_fixed_batch_loss_decreases(domain, algorithm):
    kwargs = {"2048": (("size", 3),), "maze": (("size", 5),)}.get(domain, ())
    # One-player domains bootstrap (n-step) since few episodes end in 12 steps.
    td = None if domain == "tictactoe" else 4
    agent = make_agent(tiny(domain, algorithm, domain_kwargs=kwargs, td_steps=td,
                            unroll_length=12, replay_capacity=96))
    state = agent.init(jax.random.PRNGKey(0))
    state, metrics = agent.iteration(state)
    metrics = jax.device_get(metrics)
    assert np.isfinite(metrics["loss"]) and int(state.iteration) == 1
    assert int(state.env_steps) == 8 * 12
    assert float(jnp.sum(state.replay.priorities)) > 0

    # A fixed batch from the replay; plain Adam on it must lower the loss.
    from mctx_planner.losses import LossConfig, alphazero_loss, muzero_loss
    from mctx_planner.replay import make_replay as mk
    replay = mk(state.replay.priorities.shape[1])
    batch = replay.sample(state.replay, jax.random.PRNGKey(1), 32)
    loss_impl = muzero_loss if agent.config.learned_model else alphazero_loss
    cfg = LossConfig(two_player=agent.domain.two_player)

    def loss_fn(p):
        return loss_impl(agent.net, cfg, p, batch.examples, batch.weights)[0]

    opt = optax.adam(1e-2)

    @jax.jit
    def fit(params):
        def step(carry, _):
            p, o = carry
            loss, g = jax.value_and_grad(loss_fn)(p)
            u, o = opt.update(g, o, p)
            return (optax.apply_updates(p, u), o), loss
        (_, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=30)
        return losses

    losses = np.asarray(fit(state.params))
    assert losses[-1] < 0.8 * losses[0], losses


def test_evaluation_against_the_previous_parameters(tmp_path):
    # The evaluation keeps the parameters it evaluated, to play them at the
    # next evaluation; the iterations in between donate (delete) the state.
    result = train(tiny(iterations=2, eval_every=1, eval_games=2, checkpoint_every=0),
                   out_dir=str(tmp_path), progress=False, verbose=False)
    assert result.evaluation["vs_previous_score"] >= 0


# ------------------------------------------------------------------ resume
def test_resume_equals_uninterrupted(tmp_path):
    # (A run saved before "auto" became the default names "fast".)
    cfg = tiny(iterations=4, checkpoint_every=1, search_backend="fast")
    full = train(cfg, out_dir=str(tmp_path / "full"), progress=False,
                 evaluate=False, verbose=False)
    part = train(cfg, out_dir=str(tmp_path / "part"), progress=False,
                 evaluate=False, verbose=False, stop_after=2)
    assert int(part.state.iteration) == 2
    # Evaluation and checkpoint settings and the search backend may change on
    # resume; they touch neither the parameters nor any training key.
    resumed = train(cfg.replace(eval_simulations=cfg.eval_simulations + 1,
                                eval_games=2, checkpoint_every=3,
                                search_backend="auto"),
                    out_dir=str(tmp_path / "part"), resume=True,
                    progress=False, evaluate=False, verbose=False)
    assert int(resumed.state.iteration) == 4
    for a, b in zip(jax.tree_util.tree_leaves(full.state.params),
                    jax.tree_util.tree_leaves(resumed.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    agent, state, info = load_run(str(tmp_path / "full"))
    assert int(state.iteration) == 4 and info["config"]["domain"] == "tictactoe"
    with pytest.raises(ValueError, match="differs"):
        train(cfg.replace(seed=1), out_dir=str(tmp_path / "part"), resume=True,
              progress=False, evaluate=False, verbose=False)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from mctx_planner.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_run(str(tmp_path))


# ------------------------------------------------------------------ configs
def test_config_validation_and_overrides():
    with pytest.raises(ValueError, match="num_envs"):
        TrainConfig(num_envs=0)
    with pytest.raises(ValueError, match="domain"):
        TrainConfig(domain="chess")
    with pytest.raises(ValueError, match="algorithm"):
        TrainConfig(algorithm="ppo")
    with pytest.raises(ValueError, match="replay_capacity"):
        TrainConfig(replay_capacity=10)
    cfg = apply_overrides(preset(), ["num_simulations=8", "network.hidden_size=32",
                                     "td_steps=5", "prioritized=true"])
    assert (cfg.num_simulations, cfg.network.hidden_size, cfg.td_steps,
            cfg.prioritized) == (8, 32, 5, True)
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        apply_overrides(preset(), ["num_sims=8"])
    with pytest.raises(ValueError, match="num_simulations must be a int"):
        apply_overrides(preset(), ["num_simulations=many"])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    # Search knobs reach both search configs; bad ones name the TrainConfig field.
    cfg = apply_overrides(preset(), ["search_backend=mctx", "max_depth=6",
                                     "pb_c_init=2.0", "gumbel_scale=0.5"])
    play, greedy = search_config(cfg), search_config(cfg, evaluation=True)
    assert (play.backend, play.max_depth, play.pb_c_init, play.gumbel_scale) == (
        "mctx", 6, 2.0, 0.5)
    assert (greedy.backend, greedy.max_depth, greedy.gumbel_scale) == ("mctx", 6, 0.0)
    with pytest.raises(ValueError, match="TrainConfig.search_backend"):
        apply_overrides(preset(), ["search_backend=cuda"])
    with pytest.raises(ValueError, match="TrainConfig.qtransform"):
        apply_overrides(preset(), ["qtransform=bogus"])
    with pytest.raises(ValueError, match="stochastic"):
        make_agent(tiny("tictactoe", "stochastic_muzero"))
    # The evaluation search may differ from self-play's (same network).
    assert greedy.algorithm == play.algorithm == "gumbel_muzero"
    cfg = apply_overrides(preset(), ["eval_search_algorithm=muzero"])
    assert search_config(cfg, evaluation=True).algorithm == "muzero"
    assert search_config(cfg).algorithm == "gumbel_muzero"
    assert apply_overrides(cfg, ["eval_search_algorithm=none"]).eval_search == "gumbel_muzero"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="TrainConfig.eval_search_algorithm"):
        apply_overrides(preset(), ["eval_search_algorithm=puct"])
    with pytest.raises(ValueError, match="TrainConfig.eval_search_algorithm"):
        preset("2048").replace(eval_search_algorithm="muzero")


# ------------------------------------------------------------------ devices
def test_sharded_iteration_matches_single_device():
    code = textwrap.dedent("""
        import jax, numpy as np
        from jax.sharding import Mesh
        from mctx_planner.config import TrainConfig
        from mctx_planner.networks import NetworkConfig
        from mctx_planner.train import make_agent, shard_state
        assert len(jax.devices()) == 2, jax.devices()
        cfg = TrainConfig(iterations=2, num_envs=8, unroll_length=4, num_simulations=4,
                          max_num_considered_actions=4, replay_capacity=64,
                          batch_size=16, updates_per_iteration=2,
                          network=NetworkConfig(hidden_size=16, num_layers=1))
        agent = make_agent(cfg)
        s1 = agent.init(jax.random.PRNGKey(0))
        s2 = shard_state(agent.init(jax.random.PRNGKey(0)),
                         Mesh(np.array(jax.devices()), ("batch",)))
        assert len(s2.env_states.observation.sharding.device_set) == 2
        for _ in range(2):
            s1, m1 = agent.iteration(s1)
            s2, m2 = agent.iteration(s2)
        l1, l2 = float(m1["loss"]), float(m2["loss"])
        assert abs(l1 - l2) < 1e-4 * max(1.0, abs(l1)), (l1, l2)
        print("LOSSES", l1, l2)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOSSES" in out.stdout


# ------------------------------------------------------------------ learning
def test_tiny_tictactoe_learning_beats_untrained_network():
    # Iterations cost milliseconds here; compilation dominates the test time.
    cfg = tiny(iterations=50, num_envs=128, unroll_length=16, num_simulations=8,
               max_num_considered_actions=9, replay_capacity=8192, batch_size=256,
               updates_per_iteration=8, learning_rate=3e-3, opening_moves=2,
               checkpoint_every=0,
               network=NetworkConfig(hidden_size=32, num_layers=2,
                                     value_support=Support(size=1, transform=False)))
    result = train(cfg, progress=False, evaluate=False, verbose=False)
    agent = result.agent
    act = network_action_fn(agent)
    untrained = agent.init(jax.random.PRNGKey(0)).params

    def player(params, name):
        return ev.Player(act=lambda k, s: act(params, s), jittable=True, name=name)

    domain = agent.domain
    key = jax.random.PRNGKey(7)
    before = ev.arena(domain, player(untrained, "untrained"), ev.random_player(domain),
                      num_games=200, key=key)
    after = ev.arena(domain, player(result.state.params, "trained"),
                     ev.random_player(domain), num_games=200, key=key)
    assert after.score > before.score + 0.15, (before.summary(), after.summary())
    assert after.score > 0.78, after.summary()


def test_network_action_fn_compiles_once_per_network():
    from mctx_planner import trainer
    from mctx_planner.selfplay import init_states
    agent = make_agent(tiny())
    params = agent.init(jax.random.PRNGKey(0)).params
    states = init_states(agent.domain, jax.random.PRNGKey(1), 4)
    first = network_action_fn(agent)(params, states)
    compiled = trainer._network_act._cache_size()
    # A new player for the same network (each evaluation makes one) and new
    # parameters reuse the program.
    params2 = jax.tree_util.tree_map(lambda x: x + 1.0, params)
    second = network_action_fn(make_agent(tiny()))(params2, states)
    assert trainer._network_act._cache_size() == compiled
    assert first.shape == second.shape == (4,)
    legal = np.asarray(states.legal_action_mask)
    assert legal[np.arange(4), np.asarray(first)].all()


def test_reanalyze_and_target_network():
    cfg = tiny("tictactoe", "gumbel_muzero", unroll_length=12, replay_capacity=96,
               reanalyze_fraction=0.5, target_update_interval=3, updates_per_iteration=2)
    agent = make_agent(cfg)
    state = agent.init(jax.random.PRNGKey(0))
    state, m = agent.iteration(state)
    assert np.isfinite(float(m["loss"]))
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(  # noqa: E731
        jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    init_params = agent.init(jax.random.PRNGKey(0)).params
    # After 2 updates (< 3) the target network is still the initial one...
    assert same(state.target_params, init_params)
    state, _ = agent.iteration(state)
    # ...and after the 3rd update it was refreshed (then 1 more update moved on).
    assert not same(state.target_params, init_params)
    assert not same(state.target_params, state.params)


def test_alphazero_reanalyze_keeps_the_states_it_searches():
    cfg = tiny(unroll_length=8, reanalyze_fraction=0.5, target_update_interval=3)
    agent = make_agent(cfg)
    # The replay now holds a domain state per example: its size says so.
    assert agent.replay_nbytes > make_agent(tiny(unroll_length=8)).replay_nbytes
    state, m = agent.iteration(agent.init(jax.random.PRNGKey(0)))
    assert np.isfinite(float(m["loss"]))
    data = jax.device_get(state.replay.data)
    # Each stored state is the state the example was recorded at.
    assert data.observation.any()
    np.testing.assert_array_equal(data.state.observation, data.observation)
    np.testing.assert_array_equal(data.state.legal_action_mask, data.legal_action_mask)


def test_iteration_donates_its_state_even_with_shared_buffers():
    agent = make_agent(tiny(unroll_length=4))
    state = agent.init(jax.random.PRNGKey(0))
    # The same arrays in two fields (as a domain's init may do): the call
    # gives the second its own copy, since JAX cannot donate a buffer twice.
    state = state.replace(target_params=state.params)
    old_replay = state.replay.priorities
    new_state, metrics = agent.iteration(state)
    assert np.isfinite(float(metrics["loss"]))
    # The replay was updated in place: the input's buffer is gone.
    assert old_replay.is_deleted()
    assert not new_state.replay.priorities.is_deleted()
    new_state, _ = agent.iteration(new_state)
    assert int(new_state.iteration) == 2


def test_iteration_traces_once():
    agent = make_agent(tiny(unroll_length=4))
    state = agent.init(jax.random.PRNGKey(0))
    for _ in range(3):
        state, _ = agent.iteration(state)
    assert agent.iteration._cache_size() == 1  # pylint: disable=protected-access
