"""Conformance checks for user-written domains.

:func:`check_domain` verifies that a :class:`~mctx_planner.domains.base.Domain`
follows the protocol documented in :mod:`mctx_planner.domains.base`, first
statically (shapes and dtypes via ``jax.eval_shape``) and then by rolling out
random legal actions for a few batches of episodes. Any violation raises
:class:`DomainCheckError` with a message naming the field, the expected value
and what was found::

    from mctx_planner.testing import check_domain
    check_domain(MyDomain())  # raises DomainCheckError on a violation
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner._compat import typeof
from mctx_planner.domains.base import STATE_FIELDS, Domain, StochasticDomain

__all__ = ["DomainCheckError", "check_domain"]

#: Tolerance used for reward bounds and probability sums.
_TOL = 1e-4
#: Moves per jitted rollout call (a ``lax.scan``).
_CHUNK = 16

#: Expected (shape, dtype) of the protocol fields other than the observation.
_SCALAR_FIELDS = {
    "reward": ((), jnp.float32),
    "terminated": ((), jnp.bool_),
    "truncated": ((), jnp.bool_),
    "current_player": ((), jnp.int32),
    "step_count": ((), jnp.int32),
}

#: Fields left out of the "ended states absorb" and "step is consistent with
#: afterstate + apply_chance" comparisons. ``reward`` is checked on its own;
#: ``rng_key`` may legitimately advance.
_UNCOMPARED = ("reward", "rng_key")


class DomainCheckError(AssertionError):
    """A domain violates the protocol; the message says where and how."""


# -- small helpers ------------------------------------------------------------

def _fail(domain: Domain, message: str) -> None:
    raise DomainCheckError(f"[{getattr(domain, 'name', type(domain).__name__)}]"
                           f" {message}")


def _call(domain: Domain, what: str, fn: Callable[[], Any]) -> Any:
    """Runs ``fn``; turns any exception into a :class:`DomainCheckError`."""
    try:
        return fn()
    except DomainCheckError:
        raise
    except Exception as e:  # pylint: disable=broad-except
        _fail(domain, f"{what} failed: {type(e).__name__}: {e}")


def _path_name(path: Sequence[Any]) -> str:
    """``"observation"``/``"board[0]"`` style name of a pytree key path."""
    return jax.tree_util.keystr(tuple(path)).lstrip(".") or "<root>"


def _leaves(tree: Any) -> List[Tuple[str, Any]]:
    """``[(name, leaf)]`` of a state pytree, in flattening order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(_path_name(p), leaf) for p, leaf in flat]


def _top(name: str) -> str:
    """The top-level field of a leaf name (``"a.b[0]"`` -> ``"a"``)."""
    for sep in (".", "["):
        name = name.split(sep)[0]
    return name


def _describe(x: Any) -> str:
    """``"shape (..) dtype"`` text of an array-like."""
    shape = tuple(getattr(x, "shape", ()))
    dtype = getattr(x, "dtype", type(x).__name__)
    return f"shape {shape} {dtype}"


def _key_data(x: jax.Array) -> jax.Array:
    """Raw data of typed PRNG keys, ``x`` itself otherwise."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(x)
    return x


def _same(a: jax.Array, b: jax.Array, batch_ndim: int,
          exact: bool = True) -> jax.Array:
    """Per-example equality of two leaves: bool ``[batch...]``.

    NaNs compare equal to NaNs; with ``exact=False`` floats use ``isclose``.
    """
    a, b = _key_data(a), _key_data(b)
    if jnp.issubdtype(a.dtype, jnp.inexact):
        eq = jnp.isclose(a, b, rtol=1e-5, atol=1e-6) if not exact else a == b
        eq = eq | (jnp.isnan(a) & jnp.isnan(b))
    else:
        eq = a == b
    return jnp.all(eq, axis=tuple(range(batch_ndim, eq.ndim)))


def _compared_leaves(state: Any) -> List[Tuple[str, Any]]:
    return [(n, x) for n, x in _leaves(state) if _top(n) not in _UNCOMPARED]


# -- static checks (no compilation) ------------------------------------------

def _check_attributes(domain: Domain) -> None:
    for attr in ("num_actions", "observation_shape", "num_players",
                 "max_episode_steps", "reward_range"):
        if not hasattr(domain, attr):
            _fail(domain, f"missing attribute {attr!r}")
    if not (isinstance(domain.num_actions, (int, np.integer))
            and domain.num_actions > 0):
        _fail(domain, f"num_actions: expected a positive int, got "
                      f"{domain.num_actions!r}")
    if domain.num_players not in (1, 2):
        _fail(domain, f"num_players: expected 1 or 2, got "
                      f"{domain.num_players!r}")
    if not (isinstance(domain.max_episode_steps, (int, np.integer))
            and domain.max_episode_steps > 0):
        _fail(domain, f"max_episode_steps: expected a positive int, got "
                      f"{domain.max_episode_steps!r}")
    lo, hi = domain.reward_range
    if not lo <= hi:
        _fail(domain, f"reward_range: expected low <= high, got {(lo, hi)}")
    if isinstance(domain, StochasticDomain):
        c = getattr(domain, "num_chance_outcomes", None)
        if not (isinstance(c, (int, np.integer)) and c > 0):
            _fail(domain, f"num_chance_outcomes: expected a positive int, "
                          f"got {c!r}")
    try:
        hash(domain)
    except TypeError as e:
        _fail(domain, f"the domain must be hashable (it is a static jit "
                      f"argument): {e}")


def _check_fields(domain: Domain, state: Any, where: str) -> None:
    """Presence, shapes and dtypes of the protocol fields of one example."""
    missing = [f for f in STATE_FIELDS if not hasattr(state, f)]
    if missing:
        _fail(domain, f"state returned by {where} is missing field(s) "
                      f"{missing}; every state needs {list(STATE_FIELDS)}")
    expected = dict(_SCALAR_FIELDS)
    expected["observation"] = (tuple(domain.observation_shape), jnp.float32)
    expected["legal_action_mask"] = ((domain.num_actions,), jnp.bool_)
    for field in STATE_FIELDS:
        shape, dtype = expected[field]
        x = getattr(state, field)
        got_shape = tuple(getattr(x, "shape", ()))
        got_dtype = getattr(x, "dtype", None)
        if got_shape != shape or got_dtype != jnp.dtype(dtype):
            source = {"observation": " (domain.observation_shape)",
                      "legal_action_mask": " (domain.num_actions)"}.get(
                          field, "")
            _fail(domain, f"{field} after {where}: expected shape {shape} "
                          f"{jnp.dtype(dtype)}{source}, got {_describe(x)}")


def _check_same_structure(domain: Domain, ref: Any, other: Any,
                          ref_where: str, where: str) -> None:
    """Same pytree structure, leaf shapes and dtypes as ``ref``."""
    ref_def = jax.tree_util.tree_structure(ref)
    other_def = jax.tree_util.tree_structure(other)
    if ref_def != other_def:
        ref_names = [n for n, _ in _leaves(ref)]
        other_names = [n for n, _ in _leaves(other)]
        extra = [n for n in other_names if n not in ref_names]
        lost = [n for n in ref_names if n not in other_names]
        detail = []
        if extra:
            detail.append(f"extra leaves {extra}")
        if lost:
            detail.append(f"missing leaves {lost}")
        if not detail:
            detail.append(f"{ref_where}: {ref_def}; {where}: {other_def}")
        _fail(domain, f"{where} returns a state with a different pytree "
                      f"structure than {ref_where}: {'; '.join(detail)}")
    for (name, a), (_, b) in zip(_leaves(ref), _leaves(other)):
        if a.shape != b.shape or a.dtype != b.dtype:
            _fail(domain, f"field {name}: {ref_where} gives {_describe(a)}, "
                          f"but {where} gives {_describe(b)} (shapes and "
                          f"dtypes must not change)")


def _abstract_eval(fn: Callable, *args: Any) -> Any:
    """``jax.eval_shape(fn, *args)`` with weak types kept on every JAX: the
    output avals of ``fn``'s jaxpr (jax 0.4.30's ``eval_shape`` drops them)."""
    closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shape),
                                        closed.out_avals)


def _static_checks(domain: Domain, key: jax.Array, batch_size: int) -> None:
    action = jax.ShapeDtypeStruct((), jnp.int32)
    s0 = _call(domain, "init under jit (jax.eval_shape on one example)",
               lambda: _abstract_eval(domain.init, key))
    _check_fields(domain, s0, "init")
    s1 = _call(domain, "step under jit (jax.eval_shape on one example)",
               lambda: _abstract_eval(domain.step, s0, action))
    _check_fields(domain, s1, "step")
    _check_same_structure(domain, s0, s1, "init", "step")
    diffs = _weak_type_diffs(s0, s1)
    if diffs:
        _fail(domain, "a jitted step would re-trace on its second call: the "
                      "weak typing of the state differs between init and step "
                      "('~' marks a weakly typed value, e.g. from a Python "
                      "scalar or jnp.asarray(0.0); give explicit dtypes): "
                      + "; ".join(diffs))

    if isinstance(domain, StochasticDomain):
        if not hasattr(s0, "rng_key"):
            _fail(domain, "a StochasticDomain state needs an 'rng_key' field")
        after = _call(domain, "afterstate under jit",
                      lambda: jax.eval_shape(domain.afterstate, s0, action))
        _check_same_structure(domain, s0, after, "init", "afterstate")
        probs = _call(domain, "chance_probs under jit",
                      lambda: jax.eval_shape(domain.chance_probs, after))
        c = domain.num_chance_outcomes
        if (tuple(getattr(probs, "shape", ())) != (c,)
                or not jnp.issubdtype(probs.dtype, jnp.floating)):
            _fail(domain, f"chance_probs: expected shape ({c},) float "
                          f"(num_chance_outcomes), got {_describe(probs)}")
        nxt = _call(domain, "apply_chance under jit",
                    lambda: jax.eval_shape(domain.apply_chance, after, action))
        _check_same_structure(domain, s0, nxt, "init", "apply_chance")

    keys = jax.ShapeDtypeStruct((batch_size,) + key.shape, key.dtype)
    actions = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    sb = _call(domain, "init under jax.vmap",
               lambda: jax.eval_shape(jax.vmap(domain.init), keys))
    _call(domain, "step under jax.vmap",
          lambda: jax.eval_shape(jax.vmap(domain.step), sb, actions))


# -- the rollout --------------------------------------------------------------

def _strong(tree: Any) -> Any:
    """``tree`` with weakly typed leaves converted to strong types."""
    return jax.tree_util.tree_map(
        lambda x: (jax.lax.convert_element_type(x, x.dtype)
                   if getattr(typeof(x), "weak_type", False) else x),
        tree)


def _make_rollout_fn(domain: Domain, counter: Dict[str, int], chunk: int):
    """A jitted function doing ``chunk`` batched random legal steps.

    ``fn(domain, state, key) -> (state, info)`` where every entry of ``info``
    has a leading ``[chunk]`` axis (see :func:`_check_transition`). It counts
    its traces in ``counter["step"]``.
    """
    stochastic = isinstance(domain, StochasticDomain)

    def one_step(dom: Domain, state: Any, key: jax.Array):
        batch = state.reward.shape[0]
        keys = jax.random.split(key, batch)
        logits = jnp.where(state.legal_action_mask, 0.0, -jnp.inf)
        actions = jax.vmap(jax.random.categorical)(keys, logits).astype(
            jnp.int32)
        nxt = _strong(jax.vmap(dom.step)(state, actions))
        info = {
            "action": actions,
            "prev_ended": state.terminated | state.truncated,
            "next_ended": nxt.terminated | nxt.truncated,
            "terminated": nxt.terminated,
            "truncated": nxt.truncated,
            "reward": nxt.reward,
            "prev_player": state.current_player,
            "player": nxt.current_player,
            "prev_step_count": state.step_count,
            "step_count": nxt.step_count,
            "mask_any": jnp.any(nxt.legal_action_mask, axis=-1),
            "mask_all": jnp.all(nxt.legal_action_mask, axis=-1),
            "unchanged": jnp.stack(
                [_same(a, b, 1) for (_, a), (_, b) in
                 zip(_compared_leaves(state), _compared_leaves(nxt))]
                or [jnp.ones((batch,), bool)]),
        }
        if stochastic:
            after = jax.vmap(dom.afterstate)(state, actions)
            probs = jax.vmap(dom.chance_probs)(after)
            outcomes = jnp.arange(dom.num_chance_outcomes, dtype=jnp.int32)
            each = jax.vmap(jax.vmap(dom.apply_chance, (None, 0)), (0, None))(
                after, outcomes)                                 # [B, C, ...]
            match = jnp.ones(probs.shape, bool)
            for (_, a), (_, b) in zip(_compared_leaves(each),
                                      _compared_leaves(nxt)):
                match &= _same(a, b[:, None], 2, exact=False)
            match &= jnp.isclose(each.reward, nxt.reward[:, None],
                                 rtol=1e-5, atol=1e-6)
            info["probs_min"] = jnp.min(probs, axis=-1)
            info["probs_sum"] = jnp.sum(probs, axis=-1)
            info["consistent"] = jnp.any(match & (probs > 0), axis=-1)
        return nxt, info

    def rollout(dom: Domain, state: Any, key: jax.Array):
        counter["step"] += 1
        return jax.lax.scan(lambda s, k: one_step(dom, s, k), _strong(state),
                            jax.random.split(key, chunk))

    return jax.jit(rollout, static_argnums=0)


def _weak_type_diffs(ref: Any, other: Any) -> List[str]:
    """Leaves whose weak-typedness differs between two abstract states."""
    diffs = []
    for (name, a), (_, b) in zip(_leaves(ref), _leaves(other)):
        wa = bool(getattr(a, "weak_type", False))
        wb = bool(getattr(b, "weak_type", False))
        if wa != wb:
            diffs.append(f"{name}: {'~' if wa else ''}{a.dtype} vs "
                         f"{'~' if wb else ''}{b.dtype}")
    return diffs


def _check_transition(domain: Domain, info: Dict[str, np.ndarray],
                      names: List[str], where: Callable[[int], str]) -> None:
    """Host-side checks of one batched transition (see :func:`check_domain`)."""
    lo, hi = domain.reward_range
    prev_ended, next_ended = info["prev_ended"], info["next_ended"]
    live = ~prev_ended

    def first(bad: np.ndarray):
        idx = np.flatnonzero(bad)
        return int(idx[0]) if idx.size else None

    r = info["reward"]
    b = first(live & ~((r >= lo - _TOL) & (r <= hi + _TOL)))
    if b is not None:
        _fail(domain, f"reward {float(r[b])} outside reward_range {(lo, hi)} "
                      f"{where(b)}")
    b = first(prev_ended & ~info["unchanged"].all(axis=0))
    if b is not None:
        fields = [names[i] for i in np.flatnonzero(~info["unchanged"][:, b])]
        _fail(domain, f"ended states must absorb (step returns the same "
                      f"state), but field(s) {fields} changed when stepping "
                      f"an ended state {where(b)}")
    b = first(prev_ended & (r != 0))
    if b is not None:
        _fail(domain, f"ended states must absorb with reward 0, but stepping "
                      f"an ended state gave reward {float(r[b])} {where(b)}")
    b = first(live & (info["step_count"] != info["prev_step_count"] + 1))
    if b is not None:
        _fail(domain, f"step_count: expected {info['prev_step_count'][b] + 1} "
                      f"(previous + 1), got {info['step_count'][b]} "
                      f"{where(b)}")
    p = info["player"]
    b = first((p < 0) | (p >= domain.num_players))
    if b is not None:
        _fail(domain, f"current_player: expected a value in "
                      f"[0, {domain.num_players}), got {p[b]} {where(b)}")
    if domain.num_players == 2:
        pp = info["prev_player"]
        b = first(live & ~next_ended & (p != 1 - pp))
        if b is not None:
            _fail(domain, f"current_player must alternate in a two-player "
                          f"domain: expected {1 - pp[b]} after player "
                          f"{pp[b]} moved, got {p[b]} {where(b)}")
    b = first(~next_ended & ~info["mask_any"])
    if b is not None:
        _fail(domain, f"legal_action_mask is empty (all False) at a state "
                      f"that is neither terminated nor truncated {where(b)}")
    b = first(next_ended & ~info["mask_all"])
    if b is not None:
        _fail(domain, f"legal_action_mask must be all True at an ended state, "
                      f"got some False {where(b)}")
    b = first(info["terminated"] & info["truncated"])
    if b is not None:
        _fail(domain, f"terminated and truncated are both set; truncated "
                      f"must only be set when not terminated {where(b)}")
    b = first(~next_ended & (info["step_count"] >= domain.max_episode_steps))
    if b is not None:
        _fail(domain, f"the episode did not end by max_episode_steps="
                      f"{domain.max_episode_steps}: step_count is "
                      f"{info['step_count'][b]} but neither terminated nor "
                      f"truncated is set {where(b)}")
    if "probs_min" in info:
        b = first(live & (info["probs_min"] < -_TOL))
        if b is not None:
            _fail(domain, f"chance_probs has a negative entry "
                          f"{float(info['probs_min'][b])} {where(b)}")
        b = first(live & (np.abs(info["probs_sum"] - 1.0) > _TOL))
        if b is not None:
            _fail(domain, f"chance_probs: expected a sum of 1, got "
                          f"{float(info['probs_sum'][b]):.6g} {where(b)}")
        b = first(live & ~info["consistent"])
        if b is not None:
            _fail(domain, f"step is inconsistent with afterstate + "
                          f"apply_chance: step(s, a) equals "
                          f"apply_chance(afterstate(s, a), c) for no outcome c "
                          f"with chance_probs > 0 (ignoring rng_key) "
                          f"{where(b)}")


def check_domain(domain: Domain, *, num_episodes: int = 4,
                 batch_size: int = 8, seed: int = 0) -> None:
    """Checks that ``domain`` follows the domain protocol; raises on a bug.

    Static checks (``jax.eval_shape``, nothing is compiled):

    * attributes (``num_actions``, ``observation_shape``, ``num_players``,
      ``max_episode_steps``, ``reward_range``, hashability);
    * ``init`` and ``step`` trace under ``jit`` on one example and under
      ``vmap`` on a batch;
    * every field of :data:`~mctx_planner.domains.base.STATE_FIELDS` exists
      with the documented shape/dtype (``observation``: ``observation_shape``
      float32; ``legal_action_mask``: ``[num_actions]`` bool; ``reward``: ``[]``
      float32; ``terminated``/``truncated``: ``[]`` bool;
      ``current_player``/``step_count``: ``[]`` int32);
    * ``step`` returns the same pytree structure, shapes and dtypes as
      ``init``; for a :class:`StochasticDomain` so do ``afterstate`` and
      ``apply_chance``, ``chance_probs`` is ``[num_chance_outcomes]`` float
      and the state has an ``rng_key``;
    * ``step`` keeps the weak typing of every leaf (a weakly typed leaf in
      ``init``, e.g. ``reward=0.0``, that ``step`` returns strongly typed
      makes a jitted ``step`` compile twice).

    Dynamic checks: ``num_episodes`` rounds of ``batch_size`` parallel
    episodes with uniformly random legal actions, stepping a jitted, vmapped
    ``step`` up to ``max_episode_steps + 2`` times (until every episode has
    ended and its ended state has been stepped once):

    * jitted ``init``/``step`` do not re-trace on later calls with the same
      input shapes (a trace counter; the domain is a static argument);
    * ``init`` gives ``reward = 0``, ``step_count = 0`` and a non-empty mask;
    * rewards within ``reward_range``; ``step_count`` grows by one per move;
      ``current_player`` in ``[0, num_players)`` and alternating in
      two-player domains;
    * the legal mask is never empty before the end and all True at the end;
    * ended states absorb: stepping them changes no field (``rng_key``
      excepted) and gives ``reward = 0``;
    * every episode has ended once ``step_count >= max_episode_steps``;
    * stochastic domains: ``chance_probs`` non-negative and summing to 1,
      and ``step(s, a) == apply_chance(afterstate(s, a), c)`` for some
      outcome ``c`` of positive probability (``rng_key`` excepted);
    * symmetries (:meth:`Domain.symmetries`): only deterministic domains
      list them, each ``action_permutation`` is a permutation of
      ``range(A)``, and random games played in both frames from a symmetric
      initial state agree (transformed observation, permuted legal mask,
      reward, end flags). Initial states that are not symmetric cannot be
      checked this way; if none is, a warning says so.

    Args:
      domain: the domain to check.
      num_episodes: number of batched rounds to roll out.
      batch_size: parallel episodes per round.
      seed: seed of the random keys and actions.

    Raises:
      DomainCheckError: (an ``AssertionError``) naming the first violation.
    """
    _check_attributes(domain)
    key = jax.random.PRNGKey(seed)
    _static_checks(domain, key, batch_size)
    _check_symmetries(domain, key, batch_size)

    counter = {"init": 0, "step": 0}

    def batched_init(dom: Domain, keys: jax.Array):
        counter["init"] += 1
        return jax.vmap(dom.init)(keys)

    init_fn = jax.jit(batched_init, static_argnums=0)
    max_moves = domain.max_episode_steps + 2
    chunk = min(_CHUNK, max_moves)
    rollout_fn = _make_rollout_fn(domain, counter, chunk)
    first_input = None

    for episode in range(max(num_episodes, 2)):
        init_key, key_roll = jax.random.split(jax.random.fold_in(key, episode))
        state = _call(domain, "jitted, vmapped init",
                      lambda: init_fn(domain, jax.random.split(
                          init_key, batch_size)))
        if counter["init"] > 1:
            _fail(domain, "jitted init re-traced on a second call with the "
                          "same input shapes (a static input changed)")
        if episode >= num_episodes:
            break  # One extra init call only to check re-tracing.
        _check_init(domain, state, episode)
        names = [n for n, _ in _compared_leaves(state)]

        done = False
        for c in range((max_moves + chunk - 1) // chunk):
            key_roll, sub = jax.random.split(key_roll)
            previous = state
            first_input = previous if first_input is None else first_input
            state, infos = _call(
                domain, f"jitted, vmapped step (round {episode})",
                lambda: rollout_fn(domain, previous, sub))
            if counter["step"] > 1:
                diffs = [f"{n}: {typeof(a)} vs {typeof(b)}"
                         for (n, a), (_, b) in zip(_leaves(first_input),
                                                   _leaves(previous))
                         if typeof(a) != typeof(b)]
                _fail(domain, "jitted step re-traced on a later call with the "
                              "same input shapes" + (
                                  ": the state's abstract types changed: "
                                  + "; ".join(diffs) if diffs else
                                  " (a static input changed)"))
            infos = jax.device_get(infos)
            for i in range(chunk):
                info = {k: v[i] for k, v in infos.items()}
                t = c * chunk + i

                def where(b: int, ep: int = episode, t: int = t,
                          info=info) -> str:
                    return (f"(round {ep}, episode {b}, move {t + 1}, "
                            f"action {int(info['action'][b])})")

                _check_transition(domain, info, names, where)
                if info["prev_ended"].all():
                    done = True
                    break
            if done:
                break
        if not done:
            unfinished = np.flatnonzero(~info["next_ended"])
            if unfinished.size:
                _fail(domain, f"episodes never end: after {max_moves} moves "
                              f"episode {unfinished[0]} of round {episode} is "
                              f"neither terminated nor truncated "
                              f"(max_episode_steps="
                              f"{domain.max_episode_steps})")


def _check_symmetries(domain: Domain, key: jax.Array, batch_size: int) -> None:
    """Plays random games in the original and each symmetric frame."""
    symmetries = _call(domain, "symmetries()", domain.symmetries)
    if not symmetries:
        return
    if isinstance(domain, StochasticDomain):
        _fail(domain, "symmetries() is supported for deterministic domains only")
    num_actions = domain.num_actions
    for i, sym in enumerate(symmetries):
        perm = np.asarray(sym.action_permutation)
        if perm.shape != (num_actions,) or sorted(perm.tolist()) != list(range(num_actions)):
            _fail(domain, f"symmetries()[{i}].action_permutation is not a permutation "
                          f"of range({num_actions}): {sym.action_permutation!r}")
    init_fn = jax.jit(jax.vmap(domain.init))
    step_fn = jax.jit(jax.vmap(domain.step))
    start = init_fn(jax.random.split(key, batch_size))
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**30)))
    for i, sym in enumerate(symmetries):
        perm = np.asarray(sym.action_permutation)
        transform = jax.jit(jax.vmap(sym.transform))
        same = np.asarray(transform(start.observation) == start.observation)
        checked = same.reshape(batch_size, -1).all(axis=1)
        if not checked.any():
            warnings.warn(f"[{domain.name}] symmetries()[{i}] not checked: no "
                          f"initial state is symmetric under it")
            continue
        a = b = start
        for t in range(domain.max_episode_steps + 1):  # the last state too
            obs_a, obs_b = jax.device_get((transform(a.observation), b.observation))
            mask_a, mask_b = jax.device_get((a.legal_action_mask, b.legal_action_mask))
            for name, x, y in (("observation", obs_a, obs_b),
                               ("legal_action_mask", mask_a, mask_b[:, perm]),
                               ("reward", a.reward, b.reward),
                               ("terminated", a.terminated, b.terminated),
                               ("truncated", a.truncated, b.truncated)):
                x, y = np.asarray(x), np.asarray(y)
                bad = np.flatnonzero(checked & ~(x == y).reshape(batch_size, -1).all(1))
                if bad.size:
                    _fail(domain, f"symmetries()[{i}] does not commute with step: "
                                  f"{name} differs after {t} random moves played in "
                                  f"both frames (episode {int(bad[0])})")
            ended = np.asarray(a.terminated | a.truncated)
            if ended[checked].all():
                break
            actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask_a])
            a = step_fn(a, jnp.asarray(actions, jnp.int32))
            b = step_fn(b, jnp.asarray(perm[actions], jnp.int32))


def _check_init(domain: Domain, state: Any, episode: int) -> None:
    """Values of a batch of initial states (reward, step_count, ...)."""
    info = jax.device_get({
        "reward": state.reward, "step_count": state.step_count,
        "player": state.current_player,
        "ended": state.terminated | state.truncated,
        "mask_any": jnp.any(state.legal_action_mask, axis=-1)})

    def at(bad: np.ndarray) -> str:
        return f"(after init, round {episode}, episode {int(bad[0])})"

    bad = np.flatnonzero(info["reward"] != 0)
    if bad.size:
        _fail(domain, f"reward after init: expected 0, got "
                      f"{float(info['reward'][bad[0]])} {at(bad)}")
    bad = np.flatnonzero(info["step_count"] != 0)
    if bad.size:
        _fail(domain, f"step_count after init: expected 0, got "
                      f"{int(info['step_count'][bad[0]])} {at(bad)}")
    p = info["player"]
    bad = np.flatnonzero((p < 0) | (p >= domain.num_players))
    if bad.size:
        _fail(domain, f"current_player after init: expected a value in "
                      f"[0, {domain.num_players}), got {int(p[bad[0]])} "
                      f"{at(bad)}")
    bad = np.flatnonzero(~info["ended"] & ~info["mask_any"])
    if bad.size:
        _fail(domain, f"legal_action_mask is empty (all False) after init "
                      f"{at(bad)}")
