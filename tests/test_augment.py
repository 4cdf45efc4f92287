"""Symmetry augmentation: domains' symmetries, the example transform, config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mctx_planner import domains, testing
from mctx_planner.augment import augment_examples
from mctx_planner.domains.base import Symmetry
from mctx_planner.domains.connect4 import ConnectFour
from mctx_planner.targets import Example
from mctx_planner.train import make_agent

from test_train import tiny


def random_examples(domain, n=64, k=2, seed=0):
    rng = np.random.default_rng(seed)
    a = domain.num_actions
    policies = rng.random((n, k + 1, a)).astype(np.float32)
    return Example(
        observation=jnp.asarray(rng.random((n,) + domain.observation_shape), jnp.float32),
        legal_action_mask=jnp.asarray(rng.random((n, a)) < 0.6),
        actions=jnp.asarray(rng.integers(0, a, (n, k)), jnp.int32),
        chance_outcomes=jnp.zeros((n, k), jnp.int32),
        rewards=jnp.asarray(rng.random((n, k)), jnp.float32),
        values=jnp.asarray(rng.random((n, k + 1)), jnp.float32),
        policies=jnp.asarray(policies / policies.sum(-1, keepdims=True)),
        search_values=jnp.zeros((n, k + 1)), reward_mask=jnp.ones((n, k)),
        value_mask=jnp.ones((n, k + 1)), policy_mask=jnp.ones((n, k + 1)))


@pytest.mark.parametrize("name", ["connect4", "tictactoe"])
def test_augmented_examples_are_consistent_symmetric_views(name):
    domain = domains.make(name)
    frames = [Symmetry(lambda o: o, tuple(range(domain.num_actions)))]
    frames += list(domain.symmetries())
    ex = random_examples(domain)
    out = jax.device_get(augment_examples(ex, domain.symmetries(), jax.random.PRNGKey(1)))
    ex = jax.device_get(ex)
    used = set()
    for i in range(ex.observation.shape[0]):
        matches = [g for g, s in enumerate(frames)
                   if np.array_equal(np.asarray(s.transform(ex.observation[i])),
                                     out.observation[i])]
        assert len(matches) == 1, f"example {i}: observation is no symmetric view"
        g = matches[0]
        used.add(g)
        perm = np.asarray(frames[g].action_permutation)
        # Action a of the original is action perm[a] of the new frame.
        np.testing.assert_array_equal(out.legal_action_mask[i][perm],
                                      ex.legal_action_mask[i])
        np.testing.assert_allclose(out.policies[i][:, perm], ex.policies[i])
        np.testing.assert_array_equal(out.actions[i], perm[ex.actions[i]])
        np.testing.assert_array_equal(out.values[i], ex.values[i])
        np.testing.assert_array_equal(out.rewards[i], ex.rewards[i])
    assert len(used) == len(frames)  # every frame drawn at n=64


def test_connect4_mirror_is_the_column_reversal():
    (mirror,) = ConnectFour().symmetries()
    assert mirror.action_permutation == (6, 5, 4, 3, 2, 1, 0)


def test_check_domain_rejects_a_wrong_symmetry():
    class WrongMirror(ConnectFour):
        def symmetries(self):  # mirrored board but unpermuted actions
            return (Symmetry(lambda o: o[:, ::-1], tuple(range(7))),)

    with pytest.raises(testing.DomainCheckError, match="does not commute with step"):
        testing.check_domain(WrongMirror(), num_episodes=1, batch_size=4)

    class NotAPermutation(ConnectFour):
        def symmetries(self):
            return (Symmetry(lambda o: o[:, ::-1], (0,) * 7),)

    with pytest.raises(testing.DomainCheckError, match="not a permutation"):
        testing.check_domain(NotAPermutation(), num_episodes=1, batch_size=4)


def test_augment_symmetries_needs_a_domain_with_symmetries():
    with pytest.raises(ValueError, match="TrainConfig.augment_symmetries"):
        make_agent(tiny("maze", augment_symmetries=True))


def test_training_with_augmentation_runs():
    agent = make_agent(tiny(augment_symmetries=True, updates_per_iteration=8))
    state = agent.init(jax.random.PRNGKey(0))
    state, first = agent.iteration(state)
    state, second = agent.iteration(state)
    assert np.isfinite(float(first["loss"])) and np.isfinite(float(second["loss"]))
    assert int(state.updates) == 16
