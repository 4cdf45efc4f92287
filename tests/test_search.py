"""Planner tests: analytic cases, two-player signs, legality, traces, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from jax.sharding import Mesh

from mctx_planner import explanation as explain
from mctx_planner.config import TrainConfig
from mctx_planner.domains import ConnectFour, TicTacToe
from mctx_planner.domains.base import Domain, select_state
from mctx_planner.networks import AlphaZeroNet, MuZeroNet, NetworkConfig, init_params
from mctx_planner.search import (RootInput, SearchConfig, improved_policy_value, learned_model,
                                 make_planner, network_predict_fn, true_model,
                                 uniform_predict_fn)


# ---------------------------------------------------------------- toy domains
@chex.dataclass(frozen=True)
class TreeState:
    observation: chex.Array
    legal_action_mask: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    current_player: chex.Array
    step_count: chex.Array
    node: chex.Array


class GameTree(Domain):
    """A fixed game tree given by arrays: children[node, a], reward[node, a].

    Terminal nodes have no legal children; rewards go to the mover.
    """

    name = "gametree"

    def __init__(self, children, rewards, legal, num_players):
        self.children = np.asarray(children, np.int32)
        self.rewards = np.asarray(rewards, np.float32)
        self.legal = np.asarray(legal, bool)
        self.num_actions = self.children.shape[1]
        self.num_nodes = self.children.shape[0]
        self.observation_shape = (self.num_nodes,)
        self.num_players = num_players
        self.max_episode_steps = 8
        self.reward_range = (-1.0, 1.0)

    def _state(self, node, reward, player, steps):
        leaf = ~jnp.any(jnp.asarray(self.legal)[node])
        return TreeState(
            observation=jax.nn.one_hot(node, self.num_nodes),
            legal_action_mask=jnp.where(leaf, True, jnp.asarray(self.legal)[node]),
            reward=jnp.float32(reward), terminated=leaf,
            truncated=jnp.bool_(False), current_player=jnp.int32(player),
            step_count=jnp.int32(steps), node=jnp.int32(node))

    def init(self, key):
        del key
        return self._state(0, 0.0, 0, 0)

    def step(self, state, action):
        node = jnp.asarray(self.children)[state.node, action]
        reward = jnp.asarray(self.rewards)[state.node, action]
        nxt = self._state(node, reward, (state.current_player + 1) % self.num_players,
                          state.step_count + 1)
        return select_state(state.terminated,
                            state.replace(reward=jnp.float32(0.0)), nxt)


def bandit():
    # Node 0 -> leaves 1..4 with rewards; action 3 illegal (but best if taken).
    children = [[1, 2, 3, 4]] + [[0, 0, 0, 0]] * 4
    rewards = [[0.2, 0.9, 0.5, 1.0]] + [[0.0] * 4] * 4
    legal = [[True, True, True, False]] + [[False] * 4] * 4
    return GameTree(children, rewards, legal, num_players=1)


def minimax_tree():
    """Two-player depth-2 tree. Root (P0) picks a in {0,1}; P1 replies b in {0,1}.

    P1's reward (to P1) after (a, b): a=0: b0 -> -1 (P0 wins), b1 -> 0 (draw)
    a=1: b0 -> +1 (P1 wins), b1 -> -1. Minimax for P0: a=0 is worth 0 (P1
    answers b1), a=1 is worth -1 (P1 answers b0). So the root value is 0 and
    P0's best move is 0, even though a=1 contains P0's "best" leaf.
    """
    children = [[1, 2], [3, 4], [5, 6], [0, 0], [0, 0], [0, 0], [0, 0]]
    rewards = [[0, 0], [-1, 0], [1, -1], [0, 0], [0, 0], [0, 0], [0, 0]]
    legal = [[True, True]] * 3 + [[False, False]] * 4
    return GameTree(children, rewards, legal, num_players=2)


def batch_of(domain, n):
    return jax.vmap(domain.init)(jax.random.split(jax.random.PRNGKey(0), n))


GREEDY = dict(temperature=0.0, dirichlet_fraction=0.0, gumbel_scale=0.0)


# ---------------------------------------------------------------- analytic
@pytest.mark.parametrize("algorithm", ["muzero", "gumbel_muzero"])
def test_bandit_picks_best_legal_arm(algorithm):
    d = bandit()
    planner = make_planner(true_model(d, uniform_predict_fn(4)),
                           SearchConfig(algorithm=algorithm, num_simulations=64, **GREEDY))
    out = planner.plan(None, jax.random.PRNGKey(1), batch_of(d, 2))
    np.testing.assert_array_equal(out.action, [1, 1])
    assert np.all(np.asarray(out.action_weights)[:, 3] == 0)
    np.testing.assert_allclose(np.asarray(out.action_weights).sum(-1), 1.0, atol=1e-5)
    # Q of each visited arm equals its reward exactly (terminal children).
    q = np.asarray(out.tree.summary().qvalues)
    visits = np.asarray(out.tree.summary().visit_counts)
    for arm, r in enumerate([0.2, 0.9, 0.5]):
        if visits[0, arm] > 0:
            assert q[0, arm] == pytest.approx(r, abs=1e-6)
    average = float(out.tree.node_values[0, 0])
    # The planner computes the root value from the root alone (so that
    # self-play, which drops the tree, does not unpack it); the whole
    # tree gives the same.
    whole = (improved_policy_value(out.tree, out.action_weights)
             if algorithm == "gumbel_muzero" else out.tree.node_values[:, 0])
    np.testing.assert_allclose(out.root_value, whole, rtol=1e-6, atol=1e-7)
    if algorithm == "gumbel_muzero":
        # Every legal arm is visited; the root value is the improved policy's.
        assert np.all(visits[0, :3] > 0)
        w = np.asarray(out.action_weights)[0]
        assert float(out.root_value[0]) == pytest.approx(w[:3] @ [0.2, 0.9, 0.5], abs=1e-5)
        # It is not dragged down by the visits sequential halving spent on
        # the arms it discarded (the tree's visit average is).
        assert float(out.root_value[0]) > average + 0.05
    else:
        assert float(out.root_value[0]) == pytest.approx(average)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel_muzero"])
def test_minimax_values_of_a_two_player_tree(algorithm):
    d = minimax_tree()
    planner = make_planner(true_model(d, uniform_predict_fn(2)),
                           SearchConfig(algorithm=algorithm, num_simulations=200, **GREEDY))
    out = planner.plan(None, jax.random.PRNGKey(0), batch_of(d, 1))
    assert int(out.action[0]) == 0
    q = np.asarray(out.tree.summary().qvalues)[0]
    # With enough simulations the search concentrates on the minimax replies.
    assert q[0] > q[1]
    assert q[1] < -0.3
    # The opponent's most-visited reply is its minimax reply in both subtrees.
    tree = jax.tree_util.tree_map(lambda x: np.asarray(x)[0], out.tree)
    for a, best_reply in ((0, 1), (1, 0)):
        node = tree.children_index[0, a]
        assert np.argmax(tree.children_visits[node]) == best_reply


# ---------------------------------------------------------------- two players
def _play(domain, moves):
    s = domain.init(jax.random.PRNGKey(0))
    for m in moves:
        s = domain.step(s, jnp.int32(m))
    return s


def _stack(states):
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *states)


# (moves so far, expected move). Cells are row-major 0..8.
TTT_CASES = [
    ([0, 3, 1, 4], 2),       # X to move: X wins at 2
    ([0, 3, 1, 4, 8], 5),    # O to move: O wins at 5 (O has 3, 4)
    ([4, 0, 8, 6], 3),       # X to move: no win; O threatens 3 (0, 6): block
    ([0, 4, 1], 2),          # O to move: X threatens 2 (0, 1), O must block 2
    ([2, 4, 5, 6], 8),       # X to move: X wins at 8 (2,5,8)
    ([4, 0, 2, 6], 3),       # X to move: O threatens 3 (0,6); X has no win -> block
]


@pytest.fixture(scope="module")
def ttt_planners():
    d = TicTacToe()
    model = true_model(d, uniform_predict_fn(d.num_actions))
    return d, {alg: make_planner(model, SearchConfig(algorithm=alg, num_simulations=64,
                                                     **GREEDY))
               for alg in ("muzero", "gumbel_muzero")}


def test_gpu_loop_graphs_change_no_result(ttt_planners):
    # The options name XLA enums that the installed XLA must know: compiled
    # with them (the CPU ignores GPU options), a search gives exactly the
    # plan's result. An XLA that does not know them gets {}.
    from mctx_planner import search as search_lib  # pylint: disable=g-import-not-at-top
    options = search_lib.gpu_loop_graphs()
    d, planners = ttt_planners
    planner = planners["gumbel_muzero"]
    states = _stack([_play(d, m) for m, _ in TTT_CASES])
    lowered = jax.jit(planner.search).lower(None, jax.random.PRNGKey(3), states)
    if options:
        assert options == search_lib._GPU_LOOP_GRAPHS  # pylint: disable=protected-access
        assert "WHILE" in options["xla_gpu_enable_command_buffer"].split(",")
    else:  # only where XLA rejects them
        with pytest.raises(Exception, match="xla_gpu_enable_command_buffer"):
            lowered.compile(compiler_options=search_lib._GPU_LOOP_GRAPHS)  # pylint: disable=protected-access
    out = lowered.compile(compiler_options=options)(None, jax.random.PRNGKey(3), states)
    ref = planner.plan(None, jax.random.PRNGKey(3), states)
    chex.assert_trees_all_equal(out, ref)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel_muzero"])
def test_tictactoe_takes_wins_and_blocks(ttt_planners, algorithm):
    d, planners = ttt_planners
    cases = TTT_CASES
    states = _stack([_play(d, m) for m, _ in cases])
    players = set(np.asarray(states.current_player).tolist())
    assert players == {0, 1}  # both players to move appear
    out = planners[algorithm].plan(None, jax.random.PRNGKey(3), states)
    np.testing.assert_array_equal(np.asarray(out.action), [e for _, e in cases])


def test_connect4_takes_wins_and_blocks():
    d = ConnectFour()
    model = true_model(d, uniform_predict_fn(d.num_actions))
    planner = make_planner(model, SearchConfig(algorithm="gumbel_muzero",
                                               num_simulations=128,
                                               max_num_considered_actions=7, **GREEDY))
    cases = [
        ([0, 6, 0, 6, 0, 6], {0}),       # P0: vertical win in column 0
        ([1, 1, 2, 2, 3, 3], {0, 4}),    # P0: horizontal win at either end
        ([0, 6, 0, 6, 0], {0}),          # P1: must block column 0
        ([6, 0, 6, 0, 6, 5], {6}),       # P0: vertical win in column 6
        ([0, 1, 0, 1, 5, 1], {1}),       # P0 to move: block P1's column-1 three
        ([3, 0, 3, 0, 3], {3}),          # P1 to move: block column 3
    ]
    states = _stack([_play(d, m) for m, _ in cases])
    assert set(np.asarray(states.current_player).tolist()) == {0, 1}
    out = planner.plan(None, jax.random.PRNGKey(0), states)
    for (moves, expected), action in zip(cases, np.asarray(out.action)):
        assert int(action) in expected, (moves, int(action), expected)


# ---------------------------------------------------------------- legality
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 8), min_size=0, max_size=7), st.integers(0, 2**16))
def test_random_positions_action_legal_and_policy_normalised(ttt_planners, moves, seed):
    d, planners = ttt_planners
    s = d.init(jax.random.PRNGKey(0))
    for m in moves:  # play the legal ones only
        if bool(s.terminated) or not bool(s.legal_action_mask[m]):
            continue
        s = d.step(s, jnp.int32(m))
    if bool(s.terminated):
        return
    batch = _stack([s, s])
    for alg, planner in planners.items():
        out = planner.plan(None, jax.random.PRNGKey(seed), batch)
        legal = np.asarray(batch.legal_action_mask)
        w = np.asarray(out.action_weights)
        assert legal[np.arange(2), np.asarray(out.action)].all(), alg
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
        assert np.all(w[~legal] == 0), alg


def test_inside_tree_never_visits_illegal_moves():
    d = TicTacToe()
    planner = make_planner(true_model(d, uniform_predict_fn(9)),
                           SearchConfig(algorithm="muzero", num_simulations=128,
                                        **GREEDY))
    s = _stack([_play(d, [4, 0, 8])])
    out = planner.plan(None, jax.random.PRNGKey(0), s)
    tree = jax.tree_util.tree_map(lambda x: np.asarray(x)[0], out.tree)
    legal = np.asarray(tree.embeddings.legal_action_mask)  # [N, A]
    ended = np.asarray(tree.embeddings.terminated)
    visited = tree.node_visits > 0
    for node in np.nonzero(visited & ~ended)[0]:
        bad = (tree.children_visits[node] > 0) & ~legal[node]
        assert not bad.any(), f"node {node} visited an illegal child"


# ---------------------------------------------------------------- learned model
def test_learned_model_and_explain():
    d = TicTacToe()
    net = MuZeroNet(9, NetworkConfig(hidden_size=16, latent_size=8))
    params = init_params(net, jax.random.PRNGKey(0), d.observation_shape)
    model = learned_model(net, d.observation_shape, two_player=True)
    planner = make_planner(model, SearchConfig(algorithm="gumbel_muzero",
                                               num_simulations=8, **GREEDY))
    states = _stack([_play(d, [0, 4]), _play(d, [4])])
    out = planner.plan(params, jax.random.PRNGKey(0), states)
    legal = np.asarray(states.legal_action_mask)
    assert legal[np.arange(2), np.asarray(out.action)].all()
    expanded = np.asarray(out.tree.children_index[:, 0]) >= 0
    assert expanded.any()
    discounts = np.asarray(out.tree.children_discounts[:, 0])
    np.testing.assert_array_equal(discounts[expanded], -1.0)
    root = RootInput(observation=states.observation,
                     legal_action_mask=states.legal_action_mask)
    out2 = planner.plan(params, jax.random.PRNGKey(0), root)
    np.testing.assert_array_equal(out.action, out2.action)
    text = explain.explain(out, 1)
    assert "chosen action" in text and "principal line" in text
    assert len(text.splitlines()) == 2 + 9 + 1
    dot = explain.to_dot(out.tree, 0, max_depth=2)
    assert dot.startswith("digraph") and "->" in dot
    line = explain.principal_line(out.tree, 0)
    assert line and all(0 <= a < 9 for a in line)


def test_auto_backend_is_fast_where_measured(monkeypatch):
    """backend="auto" (the default) plans with the fast backend on CPU and
    NVIDIA GPUs, with mctx elsewhere (TPU is not measured), and with the fast
    backend whenever a mesh splits the search; an explicit backend wins."""
    from mctx_planner import search as search_mod
    assert SearchConfig().backend == "auto"
    assert TrainConfig().search_backend == "auto"
    chosen = []
    original = search_mod._policy_functions
    monkeypatch.setattr(search_mod, "_policy_functions",
                        lambda backend: chosen.append(backend) or original(backend))
    d = TicTacToe()
    model = true_model(d, uniform_predict_fn(d.num_actions))
    states = _stack([_play(d, [])])
    cfg = SearchConfig(num_simulations=2, max_num_considered_actions=2)
    mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
    # The platform decides when the search is traced (the planner's jit).
    for platform, with_mesh, expected in [("cpu", False, "fast"),
                                          ("tpu", False, "mctx"),
                                          ("tpu", True, "fast")]:
        monkeypatch.setattr(jax, "default_backend", lambda p=platform: p)
        chosen.clear()
        make_planner(model, cfg, mesh=mesh if with_mesh else None).plan(
            {}, jax.random.PRNGKey(0), states)
        assert chosen == [expected], (platform, with_mesh)
    for platform, expected in [("gpu", "fast"), ("cuda", "fast"), ("rocm", "mctx")]:
        monkeypatch.setattr(jax, "default_backend", lambda p=platform: p)
        assert search_mod._resolve_backend("auto") == expected, platform
        for explicit in ("fast", "mctx"):
            assert search_mod._resolve_backend(explicit) == explicit


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel_muzero"])
def test_mctx_and_fast_backends_plan_alike(algorithm):
    """The fast backend (the default's choice on CPU) and mctx itself give
    the same search through the planner: actions, visit counts and tree links
    exactly, floats to rounding."""
    d = TicTacToe()
    net = MuZeroNet(9, NetworkConfig(hidden_size=16, latent_size=8))
    params = init_params(net, jax.random.PRNGKey(0), d.observation_shape)
    model = learned_model(net, d.observation_shape, two_player=True)
    states = _stack([_play(d, [0, 4]), _play(d, [4]), _play(d, [])])
    outs = {backend: make_planner(model, SearchConfig(
        algorithm=algorithm, num_simulations=10, max_num_considered_actions=4,
        backend=backend)).plan(params, jax.random.PRNGKey(3), states)
        for backend in ("mctx", "fast")}
    fast, ref = outs["fast"], outs["mctx"]
    np.testing.assert_array_equal(fast.action, ref.action)
    for name in ("node_visits", "parents", "children_index"):
        np.testing.assert_array_equal(getattr(fast.tree, name),
                                      getattr(ref.tree, name), err_msg=name)
    chex.assert_trees_all_close(fast, ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- traces
def test_plan_traces_once_per_shape():
    d = TicTacToe()
    net = AlphaZeroNet(9, NetworkConfig(hidden_size=8, num_layers=1))
    params = init_params(net, jax.random.PRNGKey(0), d.observation_shape)
    traces = []
    base = network_predict_fn(net)

    def counting_predict(p, obs):
        traces.append(1)
        return base(p, obs)

    planner = make_planner(true_model(d, counting_predict),
                           SearchConfig(num_simulations=4))
    states = batch_of(d, 3)
    planner.plan(params, jax.random.PRNGKey(0), states)
    n = len(traces)
    for seed in range(1, 4):
        planner.plan(params, jax.random.PRNGKey(seed), states)
    assert len(traces) == n, "plan re-traced for the same shapes"


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("field,value,match", [
    ("num_simulations", 0, "num_simulations"),
    ("algorithm", "alphago", "algorithm"),
    ("temperature", -1.0, "temperature"),
    ("dirichlet_fraction", 1.5, "dirichlet_fraction"),
    ("dirichlet_alpha", 0.0, "dirichlet_alpha"),
    ("gumbel_scale", -0.1, "gumbel_scale"),
    ("max_depth", 0, "max_depth"),
    ("qtransform", "magic", "qtransform"),
    ("backend", "cuda", "backend"),
])
def test_bad_search_config(field, value, match):
    with pytest.raises(ValueError, match=match):
        SearchConfig(**{field: value})


def test_bad_inputs_raise_before_tracing():
    d = TicTacToe()
    net = AlphaZeroNet(7, NetworkConfig(hidden_size=8, num_layers=1))  # wrong A
    params = init_params(net, jax.random.PRNGKey(0), d.observation_shape)
    planner = make_planner(true_model(d, network_predict_fn(net)),
                           SearchConfig(num_simulations=2))
    with pytest.raises(ValueError, match="action logits.*num_actions=9"):
        planner.plan(params, jax.random.PRNGKey(0), batch_of(d, 2))

    good = make_planner(true_model(d, uniform_predict_fn(9)),
                        SearchConfig(num_simulations=2))
    s = batch_of(d, 2)
    with pytest.raises(ValueError, match="observation must have shape"):
        good.plan(None, jax.random.PRNGKey(0),
                  s.replace(observation=jnp.zeros((2, 9))))
    with pytest.raises(ValueError, match="batch size"):
        good.plan(None, jax.random.PRNGKey(0),
                  s.replace(legal_action_mask=jnp.ones((3, 9), bool)))
    with pytest.raises(ValueError, match="legal_action_mask must have shape"):
        good.plan(None, jax.random.PRNGKey(0),
                  s.replace(legal_action_mask=jnp.ones((2, 8), bool)))
    with pytest.raises(TypeError, match="observation"):
        good.plan(None, jax.random.PRNGKey(0), {"x": 1})
    with pytest.raises(ValueError, match="stochastic"):
        make_planner(good.model, SearchConfig(algorithm="stochastic_muzero"))


def test_domain_changing_structure_is_rejected():
    class Broken(TicTacToe):
        def step(self, state, action):
            s = super().step(state, action)
            return {"observation": s.observation}

    with pytest.raises(ValueError, match="another structure"):
        true_model(Broken(), uniform_predict_fn(9))


def test_true_model_does_not_read_the_real_future_of_a_stochastic_state():
    """Root states get fresh rng_keys: the search result cannot depend on the
    environment's own key (which decides its actual next chance outcome)."""
    from mctx_planner.domains import Game2048
    domain = Game2048(size=3)
    states = jax.vmap(domain.init)(jax.random.split(jax.random.PRNGKey(0), 4))
    other = states.replace(rng_key=jax.random.split(jax.random.PRNGKey(99), 4))
    config = SearchConfig(algorithm="gumbel_muzero", num_simulations=8,
                          gumbel_scale=0.0)
    key = jax.random.PRNGKey(5)
    fresh = make_planner(true_model(domain, uniform_predict_fn(4)), config)
    a, b = fresh.search(None, key, states), fresh.search(None, key, other)
    np.testing.assert_array_equal(a.action_weights, b.action_weights)
    np.testing.assert_array_equal(a.tree.embeddings.rng_key[:, 0],
                                  b.tree.embeddings.rng_key[:, 0])
    assert not np.array_equal(a.tree.embeddings.rng_key[:, 0], states.rng_key)
    seer = make_planner(true_model(domain, uniform_predict_fn(4), resample_rng=False),
                        config)
    np.testing.assert_array_equal(
        seer.search(None, key, states).tree.embeddings.rng_key[:, 0], states.rng_key)
