"""The planner: batched MuZero-style search over a true or a learned model.

One entry point, :func:`make_planner`, runs mctx's ``muzero_policy``,
``gumbel_muzero_policy`` or ``stochastic_muzero_policy`` over a
:class:`SearchModel`:

* :func:`true_model` -- AlphaZero style: the domain's own ``step`` is the
  transition, the network only supplies prior and value.
* :func:`learned_model` -- MuZero style: the representation / dynamics /
  prediction networks of :class:`~mctx_planner.networks.MuZeroNet`.

Sign convention for two-player zero-sum domains (handled here, not by the
user): values are from the point of view of the player to move, rewards from
the point of view of the player who moved, and every ply carries
``discount = -1`` (``0`` after a terminal state), so that mctx's
``Q(s, a) = r + discount * v(s')`` is always the value of ``a`` for the player
choosing it.

Legal moves: illegal actions are masked at the root (``invalid_actions``) and,
with a true model, inside the tree as well: the legal mask of every node's
state is in the tree's embeddings, and the Q-transform gives illegal children a
score no legal child can lose to, so search never visits them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import mctx

from mctx_planner import _cpu_tasks
from mctx_planner.domains.base import Domain, StochasticDomain, fresh_rng_keys
from mctx_planner.networks import AlphaZeroNet, MuZeroNet

ALGORITHMS = ("muzero", "gumbel_muzero", "stochastic_muzero")
QTRANSFORMS = ("default", "parent_and_siblings", "min_max", "completed_by_mix_value")
BACKENDS = ("auto", "fast", "mctx")

# Platforms where the fast backend was measured against mctx and kept:
# XLA:CPU (1.2x to 47x) and NVIDIA GPUs (H200: 1.08x to 4.48x in all 108
# cells of the hidden-256 and hidden-64 grids, 1.6x to 2.3x at B = 4096 and
# 16384; docs/benchmarks.md, "GPU, current code").  `backend="auto"` runs
# mctx itself anywhere else (TPU is not measured, and its gathers and
# scatters, which the fast backend is made of, are slow where mctx's dense
# whole-tree selects are not).  JAX names AMD GPUs "gpu" as well, so they
# get the fast backend too (not measured there).
_FAST_PLATFORMS = ("cpu", "gpu", "cuda")

_MASKED_SCORE = -1e9

# XLA's default command buffer types (jax 0.11) plus while loops and
# conditionals: see `gpu_loop_graphs`.
_GPU_LOOP_GRAPHS = {"xla_gpu_enable_command_buffer": ",".join((
    "FUSION", "CUBLAS", "CUBLASLT", "CUSTOM_CALL", "CUDNN",
    "DYNAMIC_SLICE_FUSION", "WHILE", "CONDITIONAL"))}


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Every knob of one search. Frozen and hashable: one compile per config.

    Attributes:
      algorithm: ``"muzero"`` (PUCT with Dirichlet noise), ``"gumbel_muzero"``
        (Gumbel root + sequential halving; policy improvement with few
        simulations) or ``"stochastic_muzero"`` (chance nodes; needs a
        stochastic model).
      num_simulations: simulations per search (>= 1).
      max_depth: maximum tree depth, or None for unbounded.
      temperature: muzero/stochastic: act ~ visits^(1/T); 0 = most visited.
      dirichlet_alpha: muzero/stochastic: root noise concentration (> 0).
      dirichlet_fraction: muzero/stochastic: noise weight in [0, 1]; 0 = none.
      pb_c_init, pb_c_base: PUCT constants (MuZero paper, Appendix B).
      max_num_considered_actions: gumbel: actions sampled at the root (>= 1).
      gumbel_scale: gumbel: scale of the root Gumbel noise; 0 = deterministic.
      qtransform: ``"default"`` (parent_and_siblings for muzero/stochastic,
        completed_by_mix_value for gumbel), or one of those by name, or
        ``"min_max"`` with ``value_bounds``.
      value_bounds: ``(min, max)`` for the ``"min_max"`` transform.
      value_scale, maxvisit_init: completed_by_mix_value constants (sigma of
        the Gumbel MuZero paper, eq. 8).
      backend: ``"auto"`` (default: ``"fast"`` on CPU and GPU, where it was
        measured, ``"mctx"`` on other platforms such as TPU; ``"fast"`` with
        a mesh), ``"fast"`` (the library's batched search with mctx's
        semantics: the same trees and actions, floats equal to rounding;
        1.2x to 47x quicker than mctx on CPU at batch 64 and more, 0.9x to
        1.6x at batch 1; 1.08x to 4.5x on an H200 at batch 64 to 1024) or
        ``"mctx"`` (DeepMind's implementation, the reference).
        The platform is the default device's when the search is traced.
        See docs/benchmarks.md.
    """

    algorithm: str = "gumbel_muzero"
    num_simulations: int = 32
    max_depth: Optional[int] = None
    temperature: float = 1.0
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.25
    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    max_num_considered_actions: int = 16
    gumbel_scale: float = 1.0
    qtransform: str = "default"
    value_bounds: Tuple[float, float] = (-1.0, 1.0)
    value_scale: float = 0.1
    maxvisit_init: float = 50.0
    backend: str = "auto"

    def __post_init__(self):
        def bad(field, expected):
            raise ValueError(
                f"SearchConfig.{field} must be {expected}, got {getattr(self, field)!r}")
        if self.algorithm not in ALGORITHMS:
            bad("algorithm", f"one of {ALGORITHMS}")
        if not isinstance(self.num_simulations, int) or self.num_simulations < 1:
            bad("num_simulations", "an int >= 1")
        if self.max_depth is not None and (
                not isinstance(self.max_depth, int) or self.max_depth < 1):
            bad("max_depth", "None or an int >= 1")
        if not self.temperature >= 0:
            bad("temperature", ">= 0")
        if not self.dirichlet_alpha > 0:
            bad("dirichlet_alpha", "> 0")
        if not 0 <= self.dirichlet_fraction <= 1:
            bad("dirichlet_fraction", "in [0, 1]")
        if not self.pb_c_init >= 0 or not self.pb_c_base > 0:
            bad("pb_c_init" if not self.pb_c_init >= 0 else "pb_c_base", "positive")
        if (not isinstance(self.max_num_considered_actions, int)
                or self.max_num_considered_actions < 1):
            bad("max_num_considered_actions", "an int >= 1")
        if not self.gumbel_scale >= 0:
            bad("gumbel_scale", ">= 0")
        if self.qtransform not in QTRANSFORMS:
            bad("qtransform", f"one of {QTRANSFORMS}")
        if not self.value_bounds[0] < self.value_bounds[1]:
            bad("value_bounds", "(min, max) with min < max")
        if not self.value_scale > 0 or not self.maxvisit_init >= 0:
            bad("value_scale" if not self.value_scale > 0 else "maxvisit_init",
                "positive")
        if self.backend not in BACKENDS:
            bad("backend", f"one of {BACKENDS}")


class RootInput(NamedTuple):
    """What a learned model needs at the root when there is no domain state.

    Any object with these two fields works as a root input (domain states do).
    """

    observation: chex.Array  # [B, *observation_shape]
    legal_action_mask: chex.Array  # [B, A] bool


# A prediction function for a true model: (params, observation [B, ...]) ->
# (prior logits [B, A], value [B]); value from the point of view of the player
# to move.
PredictFn = Callable[[Any, chex.Array], Tuple[chex.Array, chex.Array]]


class SearchModel(NamedTuple):
    """A model mctx can search: root and recurrent functions plus metadata.

    Build one with :func:`true_model` or :func:`learned_model`.

    Attributes:
      num_actions: ``A``.
      observation_shape: per-example observation shape the model expects.
      two_player: alternate perspectives with ``discount = -1``.
      knows_legal_moves: the embeddings carry ``legal_action_mask`` (true
        model), so illegal moves are masked inside the tree.
      root_fn: ``(params, key, root_input) -> mctx.RootFnOutput``.
      recurrent_fn: mctx ``RecurrentFn`` (muzero / gumbel).
      decision_recurrent_fn, chance_recurrent_fn: for stochastic_muzero.
      num_chance_outcomes: ``C`` (0 when not stochastic).
      predict_shapes: ``(params, observation) -> (logits, value)`` used only
        for shape checks with ``jax.eval_shape``.
      domain: the domain (true model) or None.
    """

    num_actions: int
    observation_shape: Tuple[int, ...]
    two_player: bool
    knows_legal_moves: bool
    root_fn: Callable
    recurrent_fn: Callable
    decision_recurrent_fn: Optional[Callable]
    chance_recurrent_fn: Optional[Callable]
    num_chance_outcomes: int
    predict_shapes: Callable
    domain: Optional[Domain] = None


def _mask_logits(logits, legal):
    return jnp.where(legal, logits, jnp.finfo(logits.dtype).min)


def network_predict_fn(net: AlphaZeroNet) -> PredictFn:
    """Turns an :class:`AlphaZeroNet` into a :data:`PredictFn` (scalar value)."""
    support = net.config.value_support

    def predict(params, observation):
        logits, value_logits = net.apply(params, observation)
        return logits, support.logits_to_scalar(value_logits)
    return predict


def uniform_predict_fn(num_actions: int) -> PredictFn:
    """An uninformed network: uniform prior and value 0 (pure search)."""
    def predict(params, observation):
        del params
        batch = observation.shape[0]
        return jnp.zeros((batch, num_actions)), jnp.zeros((batch,))
    return predict


def true_model(domain: Domain, predict_fn: PredictFn, *,
               resample_rng: bool = True) -> SearchModel:
    """AlphaZero-style model: transitions by ``domain.step``.

    Embeddings are batched domain states, so search sees real rewards,
    terminal states and legal moves at every node. With a
    :class:`~mctx_planner.domains.StochasticDomain`, the decision/chance
    functions for ``stochastic_muzero`` use the domain's afterstates and exact
    chance probabilities (the afterstate value is the network's value of the
    afterstate observation).

    Random transitions: a domain whose state carries an ``rng_key`` (every
    :class:`~mctx_planner.domains.StochasticDomain`, the pgx/gymnax adapters)
    draws its chance outcomes from that key in ``step``. Searching with the
    state's own key would show the planner the environment's *actual* next
    draws. With ``resample_rng=True`` (the default) the root states' keys are
    replaced by keys drawn from the search's key, so the search plans on
    sampled futures (each tree edge one sample; ``stochastic_muzero`` uses
    exact expectations instead). ``resample_rng=False`` gives the clairvoyant
    planner, an upper bound that no real agent can reach.

    Args:
      domain: the domain.
      predict_fn: ``(params, observation [B, ...]) -> (logits [B, A], value [B])``,
        e.g. :func:`network_predict_fn` or :func:`uniform_predict_fn`.
      resample_rng: give root states fresh ``rng_key`` s (see above); no
        effect on states without an ``rng_key`` field.
    """
    _check_domain_structure(domain)
    step = jax.vmap(domain.step)
    two_player = domain.two_player

    def evaluate(params, state):
        logits, value = predict_fn(params, state.observation)
        ended = state.terminated
        value = jnp.where(ended, 0.0, value)
        return _mask_logits(logits, state.legal_action_mask), value

    def transition_output(params, state):
        logits, value = evaluate(params, state)
        continuing = -1.0 if two_player else domain.discount
        discount = jnp.where(state.terminated, 0.0, continuing)
        return mctx.RecurrentFnOutput(
            reward=state.reward.astype(jnp.float32), discount=discount,
            prior_logits=logits, value=value)

    def root_fn(params, key, state):
        if resample_rng and hasattr(state, "rng_key"):
            state = state.replace(rng_key=fresh_rng_keys(key, state.rng_key))
        logits, value = evaluate(params, state)
        return mctx.RootFnOutput(prior_logits=logits, value=value, embedding=state)

    def recurrent_fn(params, key, action, state):
        del key
        next_state = step(state, action)
        return transition_output(params, next_state), next_state

    num_chance = 0
    if isinstance(domain, StochasticDomain):
        num_chance = domain.num_chance_outcomes
        afterstate = jax.vmap(domain.afterstate)
        chance_probs = jax.vmap(domain.chance_probs)
        apply_chance = jax.vmap(domain.apply_chance)

        def decision_fn(params, key, action, state):
            del key
            after = afterstate(state, action)
            _, value = predict_fn(params, after.observation)
            probs = chance_probs(after)
            logits = jnp.where(probs > 0, jnp.log(jnp.maximum(probs, 1e-30)),
                               jnp.finfo(jnp.float32).min)
            value = jnp.where(after.terminated, 0.0, value)
            return mctx.DecisionRecurrentFnOutput(
                chance_logits=logits, afterstate_value=value), after

        def chance_fn(params, key, outcome, after):
            del key
            next_state = apply_chance(after, outcome)
            out = transition_output(params, next_state)
            return mctx.ChanceRecurrentFnOutput(
                action_logits=out.prior_logits, value=out.value,
                reward=out.reward, discount=out.discount), next_state
    else:
        decision_fn = chance_fn = None

    return SearchModel(
        num_actions=domain.num_actions,
        observation_shape=tuple(domain.observation_shape),
        two_player=two_player, knows_legal_moves=True,
        root_fn=root_fn, recurrent_fn=recurrent_fn,
        decision_recurrent_fn=decision_fn, chance_recurrent_fn=chance_fn,
        num_chance_outcomes=num_chance, predict_shapes=predict_fn, domain=domain)


def learned_model(net: MuZeroNet, observation_shape: Tuple[int, ...], *,
                  two_player: bool = False, discount: float = 1.0) -> SearchModel:
    """MuZero-style model: transitions by the learned dynamics network.

    Legal moves are known only at the root (from the root input's
    ``legal_action_mask``). With ``net.num_chance_outcomes > 0`` the model
    also supports ``stochastic_muzero`` (afterstate dynamics/prediction and
    chance dynamics).

    Args:
      net: the :class:`~mctx_planner.networks.MuZeroNet`.
      observation_shape: per-example observation shape.
      two_player: alternate perspectives (``discount = -1`` at every ply).
      discount: one-player discount.
    """
    value_support = net.config.value_support
    reward_support = net.config.reward_support
    continuing = -1.0 if two_player else float(discount)

    def apply(params, *args, method):
        return net.apply(params, *args, method=method)

    def root_fn(params, key, root_input):
        del key
        latent = apply(params, root_input.observation, method=MuZeroNet.represent)
        logits, value_logits = apply(params, latent, method=MuZeroNet.predict)
        return mctx.RootFnOutput(
            prior_logits=logits, value=value_support.logits_to_scalar(value_logits),
            embedding=latent)

    def recurrent_fn(params, key, action, latent):
        del key
        next_latent, reward_logits = apply(params, latent, action,
                                           method=MuZeroNet.dynamics)
        logits, value_logits = apply(params, next_latent, method=MuZeroNet.predict)
        reward = reward_support.logits_to_scalar(reward_logits)
        return mctx.RecurrentFnOutput(
            reward=reward, discount=jnp.full_like(reward, continuing),
            prior_logits=logits,
            value=value_support.logits_to_scalar(value_logits)), next_latent

    def decision_fn(params, key, action, latent):
        del key
        after = apply(params, latent, action, method=MuZeroNet.afterstate_dynamics)
        chance_logits, value_logits = apply(params, after,
                                            method=MuZeroNet.afterstate_predict)
        return mctx.DecisionRecurrentFnOutput(
            chance_logits=chance_logits,
            afterstate_value=value_support.logits_to_scalar(value_logits)), after

    def chance_fn(params, key, outcome, after):
        del key
        next_latent, reward_logits = apply(params, after, outcome,
                                           method=MuZeroNet.chance_dynamics)
        logits, value_logits = apply(params, next_latent, method=MuZeroNet.predict)
        reward = reward_support.logits_to_scalar(reward_logits)
        return mctx.ChanceRecurrentFnOutput(
            action_logits=logits,
            value=value_support.logits_to_scalar(value_logits),
            reward=reward, discount=jnp.full_like(reward, continuing)), next_latent

    def predict_shapes(params, observation):
        latent = apply(params, observation, method=MuZeroNet.represent)
        return apply(params, latent, method=MuZeroNet.predict)

    stochastic = net.num_chance_outcomes > 0
    return SearchModel(
        num_actions=net.num_actions, observation_shape=tuple(observation_shape),
        two_player=two_player, knows_legal_moves=False,
        root_fn=root_fn, recurrent_fn=recurrent_fn,
        decision_recurrent_fn=decision_fn if stochastic else None,
        chance_recurrent_fn=chance_fn if stochastic else None,
        num_chance_outcomes=net.num_chance_outcomes, predict_shapes=predict_shapes)


@chex.dataclass(frozen=True)
class PlanOutput:
    """What one batched search returns.

    Attributes:
      action: ``[B]`` int32, the chosen action (always legal at the root).
      action_weights: ``[B, A]`` the improved policy (training target): visit
        distribution (muzero) or softmax(prior logits + completed Q) (gumbel);
        0 on illegal actions, sums to 1.
      root_value: ``[B]`` search value of the root for the player to move:
        the visit-weighted average of the tree (muzero, stochastic_muzero) or
        the value of the improved policy under completed Q-values (gumbel,
        :func:`improved_policy_value`). Self-play bootstraps n-step value
        targets from it.
      prior_value: ``[B]`` the network's value of the root.
      prior_logits: ``[B, A]`` the network's (masked) prior logits.
      tree: the ``mctx.Tree`` (batched) for inspection and :mod:`explain`.
        The other fields do not depend on it: a jitted program that drops
        it (as self-play does) does not build it, which with the fast
        backend on CPU saves writing ``[B, S + 1, A]`` arrays (1.12x faster
        searches in the median of the measured 64-action cells).
    """

    action: chex.Array
    action_weights: chex.Array
    root_value: chex.Array
    prior_value: chex.Array
    prior_logits: chex.Array
    tree: mctx.Tree


def _resolve_backend(backend: str, mesh: Any = None) -> str:
    """``"fast"`` or ``"mctx"``: what ``SearchConfig.backend`` stands for
    here (see its docstring): ``"auto"`` is ``"fast"`` with a mesh (only the
    fast backend splits a search) or on a platform of ``_FAST_PLATFORMS``."""
    if backend != "auto":
        return backend
    from mctx_planner._fast_search import default_platform  # pylint: disable=g-import-not-at-top
    if mesh is not None or default_platform() in _FAST_PLATFORMS:
        return "fast"
    return "mctx"


def _policy_functions(backend: str):
    """The three policies of ``backend``, each returning ``(PolicyOutput,
    root)``: ``root`` a tree whose root holds the search's root (the fast
    backend's one-node tree, so that a caller who keeps only the action, the
    weights and the root value lets XLA drop the unpack of the whole tree;
    mctx's whole tree)."""
    if backend == "fast":
        from mctx_planner import _fast_search as fast  # pylint: disable=g-import-not-at-top
        return (fast.muzero_policy_with_root, fast.gumbel_muzero_policy_with_root,
                fast.stochastic_muzero_policy_with_root)

    def with_tree(policy):
        def run(*args, **kwargs):
            out = policy(*args, **kwargs)
            return out, out.search_tree
        return run
    return (with_tree(mctx.muzero_policy), with_tree(mctx.gumbel_muzero_policy),
            with_tree(mctx.stochastic_muzero_policy))


def _qtransform(config: SearchConfig, knows_legal_moves: bool, stochastic: bool):
    name = config.qtransform
    if name == "default":
        name = ("completed_by_mix_value" if config.algorithm == "gumbel_muzero"
                else "parent_and_siblings")
    if name == "parent_and_siblings":
        base = mctx.qtransform_by_parent_and_siblings
    elif name == "min_max":
        base = functools.partial(mctx.qtransform_by_min_max,
                                 min_value=config.value_bounds[0],
                                 max_value=config.value_bounds[1])
    else:
        base = functools.partial(mctx.qtransform_completed_by_mix_value,
                                 value_scale=config.value_scale,
                                 maxvisit_init=config.maxvisit_init)
    if not knows_legal_moves or stochastic:
        return base
    masked = functools.partial(_legal_qtransform, base=base)
    # The fast backend's native CPU descents compute the default
    # qtransforms themselves (mctx_planner._native), with this score for
    # illegal moves.
    masked.native_base = base
    masked.native_masked_score = _MASKED_SCORE
    return masked


def _legal_qtransform(tree, node_index, *, base):
    """Q-transform that gives illegal children a hopeless score.

    ``tree`` is unbatched here (mctx vmaps action selection); its embeddings
    are the domain states of the nodes, whose legal masks are known.
    """
    q = base(tree, node_index)
    legal = tree.embeddings.legal_action_mask[node_index]
    return jnp.where(legal, q, _MASKED_SCORE)


def improved_policy_value(tree: mctx.Tree, policy: chex.Array) -> chex.Array:
    """``[B]`` value of ``policy`` at the root under the completed Q-values.

    ``sum_a policy(a) * completedQ(a)`` with ``completedQ(a) = q(a) = r(a) +
    discount(a) * v(child a)`` for visited actions and the mixed value
    ``v_mix`` (Danihelka et al., 2022, eq. 33) for unvisited ones, all in the
    root player's view. For Gumbel search this is the value of the improved
    policy: unlike the root's visit-weighted average, it does not include
    the visits sequential halving spends on actions it then discards, which
    bias an n-step bootstrap low.

    Args:
      tree: a batched ``mctx.Tree`` (gumbel or muzero search).
      policy: ``[B, A]`` action probabilities, e.g. ``action_weights``.
    """
    root = jnp.full(tree.node_visits.shape[:1], tree.ROOT_INDEX, jnp.int32)
    q = tree.qvalues(root)                                    # [B, A]
    visits = tree.children_visits[:, tree.ROOT_INDEX]         # [B, A]
    prior = jax.nn.softmax(tree.children_prior_logits[:, tree.ROOT_INDEX])
    visited = visits > 0
    total = jnp.sum(visits, axis=-1)
    visited_prior = jnp.sum(jnp.where(visited, prior, 0.0), axis=-1)
    weighted_q = jnp.sum(jnp.where(visited, prior * q, 0.0), axis=-1) / jnp.maximum(
        visited_prior, jnp.finfo(jnp.float32).tiny)
    raw_value = tree.raw_values[:, tree.ROOT_INDEX]
    mixed = (raw_value + total * weighted_q) / (total + 1.0)
    completed = jnp.where(visited, q, mixed[:, None])
    return jnp.sum(policy * completed, axis=-1)


def search(params: chex.ArrayTree, rng_key: chex.PRNGKey, root_input: Any, *,
           model: SearchModel, config: SearchConfig,
           mesh: Optional[jax.sharding.Mesh] = None,
           batch_axis: str = "batch") -> PlanOutput:
    """Runs one batched search. Pure and traceable (no checks; see make_planner).

    Args:
      params: network parameters forwarded to the model.
      rng_key: consumed.
      root_input: batched domain states (true model) or anything with
        ``observation [B, ...]`` and ``legal_action_mask [B, A]``.
      model: a :class:`SearchModel`.
      config: a :class:`SearchConfig`.
      mesh: optional (``backend`` ``"fast"`` or ``"auto"``): the tree search
        is split over the devices of mesh axis ``batch_axis``, each device
        searching its ``B / n`` examples on its own (``shard_map``; see
        make_planner for how its result relates to one device's).
      batch_axis: the mesh axis the batch is split over.

    Returns:
      A :class:`PlanOutput`.
    """
    root_key, search_key = jax.random.split(rng_key)
    root = model.root_fn(params, root_key, root_input)
    legal = root_input.legal_action_mask
    root = root.replace(prior_logits=_mask_logits(root.prior_logits, legal))
    invalid = jnp.logical_not(legal)
    muzero, gumbel, stochastic = _policy_functions(
        _resolve_backend(config.backend, mesh))
    is_stochastic = config.algorithm == "stochastic_muzero"
    qtransform = _qtransform(config, model.knows_legal_moves, is_stochastic)
    common = dict(params=params, rng_key=search_key, root=root,
                  num_simulations=config.num_simulations,
                  invalid_actions=invalid, max_depth=config.max_depth,
                  qtransform=qtransform)
    if mesh is not None:
        common.update(mesh=mesh, batch_axis=batch_axis)
    puct = dict(dirichlet_fraction=config.dirichlet_fraction,
                dirichlet_alpha=config.dirichlet_alpha,
                pb_c_init=config.pb_c_init, pb_c_base=config.pb_c_base,
                temperature=config.temperature)
    if config.algorithm == "muzero":
        out, root_tree = muzero(recurrent_fn=model.recurrent_fn, **common, **puct)
    elif config.algorithm == "gumbel_muzero":
        out, root_tree = gumbel(
            recurrent_fn=model.recurrent_fn, **common,
            max_num_considered_actions=config.max_num_considered_actions,
            gumbel_scale=config.gumbel_scale)
    else:
        out, root_tree = stochastic(
            decision_recurrent_fn=model.decision_recurrent_fn,
            chance_recurrent_fn=model.chance_recurrent_fn, **common, **puct)
    # From the root alone: self-play, which drops the tree, then does not
    # pay for the whole tree's unpack (see `_policy_functions`).
    if config.algorithm == "gumbel_muzero":
        root_value = improved_policy_value(root_tree, out.action_weights)
    else:
        root_value = root_tree.node_values[:, root_tree.ROOT_INDEX]
    tree = out.search_tree
    return PlanOutput(
        action=out.action.astype(jnp.int32),
        action_weights=out.action_weights,
        root_value=root_value,
        prior_value=root.value,
        prior_logits=root.prior_logits,
        tree=tree)


class Planner(NamedTuple):
    """A configured planner.

    Attributes:
      model: the :class:`SearchModel`.
      config: the :class:`SearchConfig`.
      search: the pure function ``(params, key, root_input) -> PlanOutput``
        (no input checks) to call inside your own jitted code (self-play).
      plan: the checked, jitted entry point with the same signature; it
        validates shapes before tracing and compiles once per input shape.
        On CPU, a fast search of at most 256 examples with a tree big enough
        for XLA to split its kernels is compiled with one task per kernel
        (:func:`~mctx_planner.single_task_compile`): same outputs, 1.06x
        to 1.53x faster in 21 of 24 measured cells with a hidden-256 MLP
        and 1.02x to 2.02x in all 24 with a hidden-64 one.
    """

    model: SearchModel
    config: SearchConfig
    search: Callable[..., PlanOutput]
    plan: Callable[..., PlanOutput]


def make_planner(model: SearchModel, config: SearchConfig = SearchConfig(), *,
                 mesh: Optional[jax.sharding.Mesh] = None,
                 batch_axis: str = "batch") -> Planner:
    """Builds a :class:`Planner` (see the module docstring for conventions).

    Args:
      model: the :class:`SearchModel`.
      config: the :class:`SearchConfig`.
      mesh: optional ``jax.sharding.Mesh``: split every search's batch over
        the devices of its axis ``batch_axis`` (``shard_map``), each device
        searching its examples independently, with the same per-example keys
        as without a mesh. The result is exactly that of XLA's automatic
        partitioning of the same sharded inputs (only much faster), and that
        of one device up to float rounding: the network may round the last
        bit differently on the per-device batch, which flips near-ties (rare
        with a trained network; with an untrained Connect Four network, 26
        to 40% of the actions changed, see examples/search_on_all_cores.py).
        Needs ``config.backend`` ``"fast"`` or ``"auto"`` and a batch that
        divides evenly. Use it whenever the root inputs are sharded over
        devices (several GPUs, or a CPU's cores exposed as devices with
        ``jax.config.update("jax_num_cpu_devices", n)``): left to XLA's
        automatic partitioning, the search's loops synchronise the devices
        at every step.
      batch_axis: the mesh axis name.

    Raises:
      TypeError: ``model`` is not a SearchModel, ``config`` not a
        SearchConfig, or ``mesh`` not a ``jax.sharding.Mesh``.
      ValueError: the algorithm needs what the model lacks (stochastic_muzero
        over a deterministic model); a mesh with ``backend="mctx"`` or
        without the axis ``batch_axis``.
    """
    if not isinstance(model, SearchModel):
        raise TypeError(f"model must be a SearchModel (from true_model or "
                        f"learned_model), got {type(model).__name__}")
    if not isinstance(config, SearchConfig):
        raise TypeError(f"config must be a SearchConfig, got {type(config).__name__}")
    if config.algorithm == "stochastic_muzero" and not model.num_chance_outcomes:
        raise ValueError(
            "SearchConfig.algorithm='stochastic_muzero' needs a stochastic model: a "
            "StochasticDomain with true_model, or a MuZeroNet with "
            "num_chance_outcomes > 0 with learned_model")
    if mesh is not None:
        _check_mesh(mesh, batch_axis, config)
    pure = functools.partial(search, model=model, config=config, mesh=mesh,
                             batch_axis=batch_axis)

    def checked(params, rng_key, root_input):
        # Runs at trace time only: once per input shape, before XLA sees
        # anything, and free on every later call (no per-call Python cost).
        check_root_input(model, params, root_input)
        # (With a mesh, the fast search itself rejects a batch that does not
        # divide over the devices, at trace time too.)
        return pure(params, rng_key, root_input)

    jitted = jax.jit(checked)
    compiled_signatures = set()
    may_compile_unsplit = mesh is None and _resolve_backend(config.backend) == "fast"

    def plan(params, rng_key, root_input):
        for field in ("observation", "legal_action_mask"):
            if not hasattr(root_input, field):
                raise TypeError(
                    f"root_input must have a '{field}' field (a batched domain state "
                    f"or RootInput), got {type(root_input).__name__}")
        if may_compile_unsplit:
            _compile_unsplit_once(jitted, compiled_signatures, config.num_simulations,
                                  (params, rng_key, root_input))
        return jitted(params, rng_key, root_input)

    return Planner(model=model, config=config, search=pure, plan=plan)


@functools.lru_cache(maxsize=None)
def _xla_accepts(options: Tuple[Tuple[str, str], ...]) -> bool:
    """Whether this jaxlib's XLA takes ``options`` (compiles a trivial
    program with them on the CPU, which ignores GPU options)."""
    try:
        with jax.default_device(jax.devices("cpu")[0]):
            jax.jit(lambda x: x + 1).lower(jax.ShapeDtypeStruct((), jnp.float32)).compile(
                compiler_options=dict(options))
    except Exception:  # pylint: disable=broad-except
        return False
    return True


def gpu_loop_graphs() -> Dict[str, str]:
    """XLA compiler options that run whole ``while`` loops as CUDA graphs.

    On an NVIDIA GPU a ``while`` loop runs from the host by default: every
    iteration brings its condition back to the host, then launches the
    body's kernels, and a search is loops of small kernels. These options
    (XLA's default command buffer types plus ``WHILE`` and ``CONDITIONAL``)
    record whole loops into command buffers (CUDA graphs with conditional
    nodes) that the GPU runs by itself. Pass them where you compile a search::

        search = jax.jit(planner.search, compiler_options=mp.gpu_loop_graphs())

    Measured on an H200 (``benchmarks/command_buffer_ab.py``;
    docs/benchmarks.md, "GPU: whole loops as CUDA graphs"): the fast search
    1.57x to 1.80x faster and raw mctx 1.39x to 1.65x, outputs bit-identical.
    XLA:CPU ignores them (tested); a TPU was not tried. They are not the
    default of ``plan`` or of training, which were not measured with them
    yet; for a whole process, ``XLA_FLAGS=--xla_gpu_enable_command_buffer=``
    followed by the value returned here.

    Returns:
      ``{"xla_gpu_enable_command_buffer": "FUSION,...,WHILE,CONDITIONAL"}``,
      or ``{}`` where the installed XLA does not know these options by name
      (older jaxlib, e.g. 0.4.30, which also lacks ``jax.jit``'s
      ``compiler_options``).
    """
    items = tuple(sorted(_GPU_LOOP_GRAPHS.items()))
    return dict(items) if _xla_accepts(items) else {}


def native_cpu_kernels() -> str:
    """Whether searches on XLA:CPU use the library's native tree kernels.

    On a CPU, the fast backend runs the tree descents of MuZero (with the
    default ``qtransform``, ``"parent_and_siblings"``) and of Gumbel MuZero
    (with the default ``"completed_by_mix_value"``; for 2, 4 to 22 and 33
    to 200 actions with jaxlib 0.10, where a check at first use finds that
    it rounds as XLA), both also with the legal-move masking of a true
    model, and every algorithm's expansion writes and backup as native XLA
    custom calls instead of loops of small XLA kernels: the same trees, bit
    for bit. Measured on a 2-core CPU (docs/benchmarks.md, "Native CPU
    kernels", "Native Gumbel descent" and "Wide Gumbel rows"): MuZero
    searches 1.16x to 1.68x faster in the benchmark grid (9 actions),
    Gumbel's 1.11x to 1.55x (9 actions) and 1.25x to 2.06x (64 actions),
    AlphaZero's and Gumbel AlphaZero's through the planner 1.03x to 2.1x.
    They are C++ compiled once per machine on first use (a few seconds)
    with the system's C++ compiler against the XLA FFI headers that jaxlib
    ships, and cached in ``$MCTX_PLANNER_CACHE_DIR`` (default
    ``~/.cache/mctx_planner``). Without
    a compiler (``$CXX``, else ``c++``), with jax older than ``jax.ffi``, or
    with ``MCTX_PLANNER_NATIVE=0`` in the environment, searches use the
    pure-XLA loops, with the same results.

    Calling this builds the kernels if they are not built yet.

    Returns:
      ``"in use (<path of the library>)"`` or ``"not in use: <why>"``.
    """
    from mctx_planner import _native  # pylint: disable=g-import-not-at-top
    return _native.status()


def _compile_unsplit_once(jitted: Any, seen: set, num_simulations: int,
                          args: Tuple[Any, ...]) -> None:
    """Compiles ``jitted`` for ``args`` with one task per XLA:CPU kernel the
    first time it sees their shapes, where that was measured faster
    (``_cpu_tasks.prefers_single_task``: CPU, batch up to 256, a tree big
    enough for XLA to split its kernels; see ``mctx_planner._cpu_tasks``).
    JAX's compilation cache then serves the call that follows and every later
    one with the same shapes. Inside an outer trace (tracers), the outer
    program's compile decides instead."""
    from mctx_planner._fast_search import default_platform  # pylint: disable=g-import-not-at-top
    mask_shape = getattr(args[2].legal_action_mask, "shape", ())
    if len(mask_shape) != 2 or not _cpu_tasks.prefers_single_task(
            default_platform(), mask_shape[0], num_simulations, mask_shape[1]):
        return
    leaves, treedef = jax.tree_util.tree_flatten(args)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        return
    # What JAX's own cache tells programs apart by: shapes, dtypes, placement.
    signature = (treedef, tuple((getattr(x, "shape", None), getattr(x, "dtype", type(x)),
                                 getattr(x, "sharding", None)) for x in leaves))
    if signature in seen:
        return
    seen.add(signature)
    lowered = jitted.lower(*args)
    with _cpu_tasks.single_task_compile():
        lowered.compile()


def _check_mesh(mesh: Any, batch_axis: str, config: SearchConfig) -> None:
    """Raises if ``mesh`` cannot split the search's batch (see make_planner)."""
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if batch_axis not in mesh.axis_names:
        raise ValueError(f"batch_axis {batch_axis!r} is not an axis of the mesh "
                         f"(axes: {mesh.axis_names})")
    if config.backend == "mctx":
        # Measured (benchmarks/mctx_partitioned.py, 2 CPU devices): raw mctx
        # left to XLA's partitioning took 1.3x to 2.3x one device's time at
        # B = 256 and 0.95x at B = 1024 (docs/benchmarks.md, "Search split
        # over a CPU's cores").
        raise ValueError("a mesh needs SearchConfig.backend='fast' or 'auto' "
                         "(the mctx backend has no split search: left to "
                         "XLA's partitioning it is no faster than on one "
                         f"device), got {config.backend!r}")


def check_root_input(model: SearchModel, params: chex.ArrayTree,
                     root_input: Any) -> None:
    """Validates a root input and the network's output shapes, without tracing XLA.

    Raises:
      ValueError: naming the field (observation shape, legal mask shape,
        batch sizes, network action count).
      TypeError: the root input lacks ``observation`` / ``legal_action_mask``.
    """
    for field in ("observation", "legal_action_mask"):
        if not hasattr(root_input, field):
            raise TypeError(
                f"root_input must have a '{field}' field (a batched domain state or "
                f"RootInput), got {type(root_input).__name__}")
    obs = root_input.observation
    mask = root_input.legal_action_mask
    obs_shape = tuple(model.observation_shape)
    if tuple(obs.shape[1:]) != obs_shape:
        raise ValueError(
            f"root_input.observation must have shape [B, {', '.join(map(str, obs_shape))}]"
            f" (batch first), got {tuple(obs.shape)}")
    if mask.ndim != 2 or mask.shape[1] != model.num_actions:
        raise ValueError(
            f"root_input.legal_action_mask must have shape [B, {model.num_actions}], "
            f"got {tuple(mask.shape)}")
    batch_sizes = {int(x.shape[0]) for x in jax.tree_util.tree_leaves(root_input)
                   if hasattr(x, "shape") and x.ndim >= 1}
    if len(batch_sizes) != 1 or obs.shape[0] < 1:
        raise ValueError(
            f"every field of root_input must share one batch size B >= 1; found "
            f"leading sizes {sorted(batch_sizes)}")
    logits, value = jax.eval_shape(model.predict_shapes, params, obs)
    if logits.shape[-1] != model.num_actions:
        raise ValueError(
            f"the network outputs {logits.shape[-1]} action logits but the "
            f"model/domain has num_actions={model.num_actions}")


def _check_domain_structure(domain: Domain) -> None:
    """Checks (abstractly, no compilation) that step keeps init's structure."""
    if not isinstance(domain, Domain):
        raise TypeError(f"domain must be a mctx_planner Domain, got {type(domain).__name__}")
    state = jax.eval_shape(domain.init, jax.random.PRNGKey(0))
    next_state = jax.eval_shape(domain.step, state,
                                jax.ShapeDtypeStruct((), jnp.int32))
    s1 = jax.tree_util.tree_structure(state)
    s2 = jax.tree_util.tree_structure(next_state)
    if s1 != s2:
        raise ValueError(
            f"domain {domain.name!r}: step returns a state of another structure "
            f"than init ({s2} vs {s1})")
    for a, b in zip(jax.tree_util.tree_leaves(state),
                    jax.tree_util.tree_leaves(next_state)):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(
                f"domain {domain.name!r}: step changes a state field from "
                f"{a.shape}/{a.dtype} to {b.shape}/{b.dtype}")
