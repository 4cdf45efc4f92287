"""Networks and the categorical value transform (MuZero, Appendix F)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mctx_planner.networks import (AlphaZeroNet, MuZeroNet, NetworkConfig, init_params,
                                   scale_to_unit)
from mctx_planner.transforms import Support, signed_hyperbolic, signed_parabolic, two_hot

EPS = 1e-3


def paper_h(x):
    """h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x, written independently in numpy."""
    x = np.asarray(x, np.float64)
    return np.sign(x) * (np.sqrt(np.abs(x) + 1) - 1) + EPS * x


@pytest.mark.parametrize("x", [0.0, 1e-4, -0.5, 1.0, -3.0, 17.0, 250.0, -1e4])
def test_transform_matches_paper_formula(x):
    np.testing.assert_allclose(float(signed_hyperbolic(jnp.float32(x))),
                               paper_h(x), rtol=1e-5, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32))
def test_transform_round_trip(x):
    y = signed_parabolic(signed_hyperbolic(jnp.float32(x)))
    assert float(y) == pytest.approx(x, rel=1e-3, abs=1e-3)


def test_two_hot_expectation_is_exact_and_clipped():
    y = jnp.array([-2.0, -0.25, 0.0, 0.7, 3.0, 99.0])
    p = two_hot(y, -3, 3)
    np.testing.assert_allclose(np.asarray(p).sum(-1), 1.0, atol=1e-6)
    atoms = np.arange(-3, 4)
    np.testing.assert_allclose(np.asarray(p) @ atoms, [-2.0, -0.25, 0.0, 0.7, 3.0, 3.0],
                               atol=1e-6)
    assert int((np.asarray(p[3]) > 0).sum()) == 2  # 0.7 -> atoms 0 and 1


@pytest.mark.parametrize("transform", [True, False])
def test_support_round_trip(transform):
    support = Support(size=20, transform=transform)
    x = jnp.array([-19.5, -1.0, 0.0, 0.3, 7.5, 19.0]) if not transform else \
        jnp.array([-300.0, -1.0, 0.0, 0.3, 7.5, 250.0])
    np.testing.assert_allclose(np.asarray(support.probs_to_scalar(support.scalar_to_probs(x))),
                               np.asarray(x), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="size"):
        Support(size=0)


def test_logits_to_scalar_of_uniform_is_zero():
    support = Support(size=5)
    assert float(support.logits_to_scalar(jnp.zeros(11))) == pytest.approx(0.0, abs=1e-6)


CFGS = [NetworkConfig(hidden_size=16, num_layers=1, latent_size=12),
        NetworkConfig(torso="resnet", channels=8, num_blocks=1, hidden_size=16)]


@pytest.mark.parametrize("cfg", CFGS, ids=["mlp", "resnet"])
def test_alphazero_net_shapes_and_uninformed_start(cfg):
    net = AlphaZeroNet(7, cfg)
    params = init_params(net, jax.random.PRNGKey(0), (6, 7, 2))
    obs = jax.random.uniform(jax.random.PRNGKey(1), (5, 6, 7, 2))
    logits, value_logits = net.apply(params, obs)
    assert logits.shape == (5, 7) and value_logits.shape == (5, 21)
    # Zero-initialised heads: uniform prior and value 0 before training.
    np.testing.assert_allclose(np.asarray(logits), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(cfg.value_support.logits_to_scalar(value_logits)),
                               0.0, atol=1e-5)


@pytest.mark.parametrize("cfg", CFGS, ids=["mlp", "resnet"])
def test_muzero_net_functions(cfg):
    net = MuZeroNet(4, cfg, num_chance_outcomes=6)
    params = init_params(net, jax.random.PRNGKey(0), (3, 3, 5))
    obs = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 3, 5))
    latent = net.apply(params, obs, method=MuZeroNet.represent)
    assert float(latent.min()) >= 0.0 and float(latent.max()) <= 1.0
    action = jnp.array([0, 3])
    nxt, reward_logits = net.apply(params, latent, action, method=MuZeroNet.dynamics)
    assert nxt.shape == latent.shape and reward_logits.shape == (2, 21)
    assert float(nxt.min()) >= 0.0 and float(nxt.max()) <= 1.0
    logits, value_logits = net.apply(params, latent, method=MuZeroNet.predict)
    assert logits.shape == (2, 4) and value_logits.shape == (2, 21)
    after = net.apply(params, latent, action, method=MuZeroNet.afterstate_dynamics)
    chance_logits, _ = net.apply(params, after, method=MuZeroNet.afterstate_predict)
    assert after.shape == latent.shape and chance_logits.shape == (2, 6)
    nxt2, r2 = net.apply(params, after, jnp.array([5, 1]), method=MuZeroNet.chance_dynamics)
    assert nxt2.shape == latent.shape and r2.shape == (2, 21)
    # Different actions lead to different next latents.
    a, _ = net.apply(params, latent, jnp.array([0, 0]), method=MuZeroNet.dynamics)
    b, _ = net.apply(params, latent, jnp.array([1, 1]), method=MuZeroNet.dynamics)
    assert not np.allclose(np.asarray(a), np.asarray(b))


def test_scale_to_unit_per_example():
    x = jnp.array([[1.0, 3.0, 5.0], [-2.0, -2.0, -2.0]])
    y = np.asarray(scale_to_unit(x))
    np.testing.assert_allclose(y[0], [0.0, 0.5, 1.0])
    assert np.isfinite(y).all()


def test_network_config_validation():
    with pytest.raises(ValueError, match="torso"):
        NetworkConfig(torso="transformer")
    with pytest.raises(ValueError, match="hidden_size"):
        NetworkConfig(hidden_size=0)
    net = AlphaZeroNet(9, NetworkConfig(torso="resnet", channels=4, num_blocks=1))
    with pytest.raises(ValueError, match="resnet torso needs observations"):
        init_params(net, jax.random.PRNGKey(0), (18,))
