"""Training: one compiled iteration (self-play + replay + updates) and the loop.

:func:`make_agent` builds every pure piece of a run from a
:class:`~mctx_planner.config.TrainConfig`: domain, network, planner, replay,
optimiser and loss. :class:`Agent` exposes

* ``init(key) -> TrainState``
* ``iteration(state) -> (state, metrics)``: one compiled program that plays
  ``T`` self-play steps on ``B`` episodes, turns them into training examples,
  writes them to the replay and runs ``U`` gradient updates (``lax.scan``);
  metrics come back from the compiled code. It *donates* its input state:
  XLA writes the new state (above all the replay, usually the largest array)
  into the old one's buffers, which halves the run's peak memory (Connect
  Four preset: 222 to 116 MB) and saves a copy of the replay per iteration.
  Use the state it returns; the one passed in is deleted (copy arrays you
  want to keep first, e.g. ``jax.tree.map(jnp.copy, state.params)``).

:func:`train` is the Python loop around it: progress bar, one-line summaries,
JSON-lines metrics, evaluation and checkpoints. Everything that influences
training lives in ``TrainState`` (including the PRNG key), so a run resumed
from a checkpoint reproduces the uninterrupted run exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax

from mctx_planner import domains as domains_lib
from mctx_planner.augment import augment_examples
from mctx_planner.config import TrainConfig, _as_train_config_message
from mctx_planner.domains.base import Domain
from mctx_planner.losses import LossConfig, alphazero_loss, muzero_loss
from mctx_planner.networks import AlphaZeroNet, MuZeroNet, init_params
from mctx_planner.replay import ReplayState, make_replay
from mctx_planner.search import (Planner, RootInput, SearchConfig, _check_mesh,
                                 learned_model, make_planner,
                                 network_predict_fn, true_model)
from mctx_planner.selfplay import init_states, rollout
from mctx_planner.targets import make_examples


@chex.dataclass(frozen=True)
class TrainState:
    """Everything a run needs to continue exactly.

    Attributes:
      params: network parameters.
      target_params: a lagging copy of ``params`` (the target network), used
        by reanalyze; refreshed every ``target_update_interval`` updates (equal
        to ``params`` when that is 0).
      opt_state: optax state.
      replay: :class:`~mctx_planner.replay.ReplayState` ``[B, L, ...]``.
      env_states: batched domain states ``[B]``.
      key: PRNG key of the run.
      iteration: ``[]`` int32 iterations done.
      env_steps: ``[]`` int32 environment steps played.
      updates: ``[]`` int32 gradient updates done.
    """

    params: Any
    target_params: Any
    opt_state: Any
    replay: ReplayState
    env_states: Any
    key: chex.PRNGKey
    iteration: chex.Array
    env_steps: chex.Array
    updates: chex.Array


class Agent(NamedTuple):
    """The pure pieces of a run (see module docstring).

    ``iteration(state) -> (state, metrics)`` donates its input: the state
    passed in is deleted, and XLA writes the new one into its buffers (one
    replay buffer in memory, not two). Keep the state it returns; copy what
    you need from the old one first (``jax.tree.map(jnp.copy, ...)``).
    """

    config: TrainConfig
    domain: Domain
    net: Any
    planner: Planner
    eval_planner: Planner
    init: Callable
    iteration: Callable
    replay_nbytes: int


def _unshare_buffers(tree: Any) -> Any:
    """``tree`` with a copy for every array that holds a device buffer an
    earlier leaf already holds (JAX cannot donate one buffer twice; a domain's
    ``init`` may put one array in two fields, ``init`` puts the parameters in
    ``params`` and ``target_params``). Buffers are compared shard by shard:
    ``jax.device_put`` of one array into two replicated leaves gives two
    arrays that share the first device's buffer only."""
    seen = set()

    def own(x):
        if not isinstance(x, jax.Array):
            return x
        try:
            buffers = [s.data.unsafe_buffer_pointer() for s in x.addressable_shards]
        except Exception:  # pylint: disable=broad-except
            buffers = [("object", id(x))]  # (a backend without buffer pointers)
        if any(b in seen for b in buffers):
            return jnp.copy(x)
        seen.update(buffers)
        return x

    return jax.tree_util.tree_map(own, tree)


class _DonatingIteration:
    """``jax.jit(iteration, donate_argnums=0)`` whose call first gives every
    shared buffer of the state its own copy (:func:`_unshare_buffers`).
    Attributes (``lower``, ...) are the jitted function's."""

    def __init__(self, iteration: Callable):
        self._jitted = jax.jit(iteration, donate_argnums=0)
        functools.update_wrapper(self, iteration)

    def __call__(self, state: "TrainState"):
        return self._jitted(_unshare_buffers(state))

    def __getattr__(self, name: str):
        return getattr(self._jitted, name)


def make_domain(config: TrainConfig) -> Domain:
    """The domain named by the config."""
    return domains_lib.make(config.domain, **dict(config.domain_kwargs))


def make_network(config: TrainConfig, domain: Domain):
    """AlphaZeroNet (true model) or MuZeroNet (learned model)."""
    if config.learned_model:
        chance = domain.num_chance_outcomes if config.algorithm == "stochastic_muzero" else 0
        return MuZeroNet(domain.num_actions, config.network, num_chance_outcomes=chance)
    return AlphaZeroNet(domain.num_actions, config.network)


def make_search_model(config: TrainConfig, domain: Domain, net):
    """The planner's model: the domain (AlphaZero) or the networks (MuZero)."""
    if config.learned_model:
        discount = config.discount if config.discount is not None else domain.discount
        return learned_model(net, domain.observation_shape,
                             two_player=domain.two_player, discount=discount)
    return true_model(domain, network_predict_fn(net))


def search_config(config: TrainConfig, *, evaluation: bool = False) -> SearchConfig:
    """The :class:`~mctx_planner.search.SearchConfig` a run searches with.

    Self-play uses ``num_simulations`` and the exploration settings of
    ``config`` (temperature, Dirichlet noise, Gumbel scale); with
    ``evaluation=True`` it uses ``eval_simulations`` and no exploration
    (temperature 0, no noise) and the search ``config.eval_search`` names.
    Both share the remaining search fields (:meth:`TrainConfig.search_fields`).
    """
    shared = config.search_fields()
    if evaluation:
        shared["algorithm"] = config.eval_search
        return SearchConfig(num_simulations=config.eval_simulations,
                            temperature=0.0, dirichlet_fraction=0.0,
                            gumbel_scale=0.0, **shared)
    return SearchConfig(
        num_simulations=config.num_simulations, temperature=config.temperature,
        dirichlet_alpha=config.dirichlet_alpha,
        dirichlet_fraction=config.dirichlet_fraction,
        gumbel_scale=config.gumbel_scale, **shared)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """adamw with linear warmup and cosine decay, after global-norm clipping."""
    total = max(config.iterations * config.updates_per_iteration, 1)
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.learning_rate,
        warmup_steps=min(config.warmup_steps, total - 1) if total > 1 else 0,
        decay_steps=total, end_value=0.1 * config.learning_rate)
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                       optax.adamw(schedule, weight_decay=config.weight_decay))


def make_agent(config: TrainConfig, *, mesh: Optional[jax.sharding.Mesh] = None,
               batch_axis: str = "batch") -> Agent:
    """Builds every pure piece of a run from its config.

    Args:
      config: the run's :class:`TrainConfig`.
      mesh: optional device mesh for a state placed with :func:`shard_state`
        (the same mesh and axis): self-play then splits each search over the
        mesh's ``batch_axis`` (``shard_map``, see
        :func:`~mctx_planner.search.make_planner`) instead of leaving the
        search's loops to XLA's automatic partitioning (the same results as
        that, much faster).
        Needs ``search_backend`` ``"fast"`` or ``"auto"`` (the default) and
        ``num_envs`` divisible by the number of devices on that axis.
      batch_axis: the mesh axis name.

    Raises:
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.
      ValueError: the mesh lacks ``batch_axis``, or naming the TrainConfig
        field that does not fit the mesh.
    """
    if mesh is not None:
        # make_planner's own checks, up front and naming our fields.
        try:
            _check_mesh(mesh, batch_axis, search_config(config))
        except ValueError as e:
            raise ValueError(_as_train_config_message(e)) from None
        shards = mesh.shape[batch_axis]
        if config.num_envs % shards:
            raise ValueError(f"TrainConfig.num_envs ({config.num_envs}) must divide "
                             f"evenly over the {shards} devices of mesh axis "
                             f"{batch_axis!r}")
    domain = make_domain(config)
    if config.algorithm == "stochastic_muzero" and not domain.is_stochastic:
        raise ValueError(f"TrainConfig.algorithm='stochastic_muzero' needs a stochastic "
                         f"domain; {config.domain!r} is deterministic")
    net = make_network(config, domain)
    model = make_search_model(config, domain, net)
    planner = make_planner(model, search_config(config))
    play_planner = planner if mesh is None else make_planner(
        model, search_config(config), mesh=mesh, batch_axis=batch_axis)
    # AlphaZero reanalyze searches the true model from the stored states.
    record_states = config.reanalyze_fraction > 0 and not config.learned_model
    symmetries = domain.symmetries() if config.augment_symmetries else ()
    if config.augment_symmetries and (domain.is_stochastic or not symmetries):
        raise ValueError(f"TrainConfig.augment_symmetries=True needs a deterministic "
                         f"domain that lists symmetries; {config.domain!r} "
                         + ("is stochastic" if domain.is_stochastic else "lists none"))
    # Reanalyze searches without exploration noise, like evaluation.
    reanalyze_planner = make_planner(
        model, dataclasses.replace(search_config(config), dirichlet_fraction=0.0))
    eval_planner = make_planner(model, search_config(config, evaluation=True))
    discount = config.discount if config.discount is not None else domain.discount
    K = config.num_unroll_steps if config.learned_model else 0
    loss_config = LossConfig(value_weight=config.value_weight,
                             reward_weight=config.reward_weight,
                             two_player=domain.two_player, discount=discount)
    loss_impl = muzero_loss if config.learned_model else alphazero_loss

    def loss_fn(params, examples, weights):
        loss, metrics, errors = loss_impl(net, loss_config, params, examples, weights)
        return loss, (metrics, errors)

    optimizer = make_optimizer(config)
    B, T = config.num_envs, config.unroll_length
    rows = max(config.replay_capacity // B, T)
    replay = make_replay(rows, prioritized=config.prioritized)

    def examples_of(trajectory):
        return make_examples(trajectory, num_unroll_steps=K,
                             two_player=domain.two_player, discount=discount,
                             td_steps=config.td_steps)

    def play(params, env_states, key):
        return rollout(domain, play_planner.search, params, env_states, key, T,
                       opening_moves=config.opening_moves, record_states=record_states)

    # One unbatched example, for shapes only.
    def abstract_one_example():
        params = jax.eval_shape(
            lambda k: init_params(net, k, domain.observation_shape),
            jax.random.PRNGKey(0))
        states = jax.eval_shape(lambda k: init_states(domain, k, 1),
                                jax.random.PRNGKey(0))
        _, traj = jax.eval_shape(
            lambda p, s, k: rollout(domain, planner.search, p, s, k, 1,
                                    record_states=record_states),
            params, states, jax.random.PRNGKey(0))
        ex = jax.eval_shape(examples_of, traj)
        return jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape[2:], x.dtype), ex)

    example_shape = abstract_one_example()
    replay_nbytes = replay.nbytes(example_shape, B)

    def init(key: chex.PRNGKey) -> TrainState:
        key, params_key, env_key = jax.random.split(key, 3)
        params = init_params(net, params_key, domain.observation_shape)
        # (`params` twice: the iteration gives the second its own buffers.)
        return TrainState(
            params=params, target_params=params, opt_state=optimizer.init(params),
            replay=replay.init(example_shape, B),
            env_states=init_states(domain, env_key, B, config.opening_moves), key=key,
            iteration=jnp.zeros((), jnp.int32), env_steps=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32))

    num_reanalyzed = int(round(config.reanalyze_fraction * config.batch_size))

    def reanalyze(target_params, key, examples):
        """Fresh search policy targets for the first states of the batch.

        MuZero Reanalyse (Schrittwieser et al., 2021): the stored search
        policy was computed with older parameters; a new search with the
        target network gives a better target. A learned model searches from
        the stored observation; a true model (AlphaZero) from the stored
        domain state, which the replay then keeps (``record_states``).
        """
        n = num_reanalyzed
        if record_states:
            root = jax.tree_util.tree_map(lambda x: x[:n], examples.state)
        else:
            root = RootInput(observation=examples.observation[:n],
                             legal_action_mask=examples.legal_action_mask[:n])
        out = reanalyze_planner.search(target_params, key, root)
        return examples.replace(
            policies=examples.policies.at[:n, 0].set(out.action_weights),
            policy_mask=examples.policy_mask.at[:n, 0].set(1.0))

    def update(carry, key):
        params, target_params, opt_state, replay_state, count = carry
        sample_key, reanalyze_key = jax.random.split(key)
        sample = replay.sample(replay_state, sample_key, config.batch_size)
        examples = sample.examples
        if num_reanalyzed:
            examples = reanalyze(target_params, reanalyze_key, examples)
        if symmetries:  # (fold_in keeps the other streams of existing runs)
            examples = augment_examples(examples, symmetries, jax.random.fold_in(key, 7))
        grads, (metrics, errors) = jax.grad(loss_fn, has_aux=True)(
            params, examples, sample.weights)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        replay_state = replay.update_priorities(replay_state, sample, errors)
        grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g))
                                 for g in jax.tree_util.tree_leaves(grads)))
        metrics = dict(metrics, grad_norm=grad_norm)
        count = count + 1
        if config.target_update_interval:
            refresh = count % config.target_update_interval == 0
            target_params = jax.tree_util.tree_map(
                lambda new, old: jnp.where(refresh, new, old), params, target_params)
        else:
            target_params = params
        return (params, target_params, opt_state, replay_state, count), metrics

    def iteration(state: TrainState):
        key, play_key, learn_key = jax.random.split(state.key, 3)
        env_states, trajectory = play(state.params, state.env_states, play_key)
        examples = examples_of(trajectory)
        replay_state = replay.add(state.replay, examples)
        (params, target_params, opt_state, replay_state, _), metrics = jax.lax.scan(
            update, (state.params, state.target_params, state.opt_state, replay_state,
                     state.updates),
            jax.random.split(learn_key, config.updates_per_iteration))
        metrics = jax.tree_util.tree_map(jnp.mean, metrics)
        ended = trajectory.terminated | trajectory.truncated
        num_ended = jnp.sum(ended)
        metrics.update(
            episodes=num_ended,
            # Mean reward per finished episode, from player 0's point of view
            # in two-player games (+1 = the first player won).
            first_player_return=jnp.sum(jnp.where(
                trajectory.terminated,
                jnp.where(trajectory.player == 0, 1.0, -1.0) * trajectory.reward,
                0.0)) / jnp.maximum(num_ended, 1) if domain.two_player else
            jnp.sum(trajectory.reward) / jnp.maximum(num_ended, 1),
            root_value=jnp.mean(trajectory.root_value),
            valid_examples=jnp.mean(examples.value_mask[..., 0]))
        new_state = TrainState(
            params=params, target_params=target_params, opt_state=opt_state, replay=replay_state,
            env_states=env_states, key=key, iteration=state.iteration + 1,
            env_steps=state.env_steps + B * T,
            updates=state.updates + config.updates_per_iteration)
        return new_state, metrics

    return Agent(config=config, domain=domain, net=net, planner=planner,
                 eval_planner=eval_planner, init=init,
                 iteration=_DonatingIteration(iteration),
                 replay_nbytes=replay_nbytes)


def shard_state(state: TrainState, mesh: jax.sharding.Mesh,
                axis: str = "batch") -> TrainState:
    """Places a TrainState on ``mesh``: the batch axis of the environment states
    and the replay sharded over ``axis``, everything else replicated."""
    P = jax.sharding.PartitionSpec  # pylint: disable=invalid-name
    sharded = jax.sharding.NamedSharding(mesh, P(axis))
    replicated = jax.sharding.NamedSharding(mesh, P())

    def put(tree, sharding):
        return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)

    replay = state.replay
    replay = replay.replace(data=put(replay.data, sharded),
                            priorities=put(replay.priorities, sharded),
                            position=put(replay.position, replicated),
                            size=put(replay.size, replicated))
    return state.replace(
        params=put(state.params, replicated),
        target_params=put(state.target_params, replicated),
        opt_state=put(state.opt_state, replicated),
        replay=replay, env_states=put(state.env_states, sharded),
        key=put(state.key, replicated), iteration=put(state.iteration, replicated),
        env_steps=put(state.env_steps, replicated), updates=put(state.updates, replicated))
