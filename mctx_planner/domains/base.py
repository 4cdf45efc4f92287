"""The domain protocol: a decision problem as two pure JAX functions.

A domain is a small, hashable Python object holding *static* configuration
(sizes, numbers of actions) and two pure functions over a state pytree:

* ``init(key) -> state``: a fresh episode.
* ``step(state, action) -> state``: apply one action.

Both are ``jit``- and ``vmap``-able and operate on ONE example; callers ``vmap``
over a batch. The state is a frozen ``chex.dataclass`` that always carries the
fields of :class:`StateFields` (plus whatever the domain needs internally):

===================  ===========  ==============================================
field                shape/dtype  meaning
===================  ===========  ==============================================
observation          obs_shape,   what a network sees; for two-player games it
                     float32      is *canonical*: from the point of view of the
                                  player to move.
legal_action_mask    [A] bool     legal actions. Never all False before the end.
                                  At an ended state (terminated or truncated)
                                  it is all True so that masking never yields an
                                  empty distribution.
reward               [] float32   reward of the LAST move, received by the player
                                  who MADE that move (0 after ``init``). For
                                  two-player zero-sum games the opponent receives
                                  ``-reward``.
terminated           [] bool      the episode ended by the rules (win, loss,
                                  draw, goal reached, no move left).
truncated            [] bool      the episode was cut by ``max_episode_steps``.
current_player       [] int32     the player to move (always 0 in one-player
                                  domains).
step_count           [] int32     moves made since ``init``.
===================  ===========  ==============================================

Ended states absorb: ``step`` on a terminated or truncated state returns the
same state with ``reward = 0`` (:func:`select_state` writes that in one line).

Two-player sign convention (used by the planner and the learner): a *value* is
always from the point of view of the player to move at that state; a *reward*
is from the point of view of the player who made the move. Hence
``Q(s, a) = r + discount * v(s')`` with ``discount = -1`` between the two players
(and 0 after a terminal state).

Stochastic domains (:class:`StochasticDomain`) split a move into a
deterministic *afterstate* and a *chance outcome* drawn from a known
distribution, which is what Stochastic MuZero (Antonoglou et al., 2022) needs.
Their state also carries an ``rng_key`` used by ``step`` to sample the chance
outcome, so ``step(state, action)`` keeps its two-argument signature.

A deterministic domain may also list its *symmetries* (:class:`Symmetry`: a map
of observations and the matching permutation of actions, e.g. the left-right
mirror of Connect Four). Training can then show each example in a random
symmetric frame (``TrainConfig.augment_symmetries``), which multiplies the
data the network sees at no search cost.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, NamedTuple, Tuple

import chex
import jax
import jax.numpy as jnp

State = Any  # A frozen chex.dataclass with at least the StateFields.

#: Fields every domain state must carry (see module docstring).
STATE_FIELDS: Tuple[str, ...] = (
    "observation",
    "legal_action_mask",
    "reward",
    "terminated",
    "truncated",
    "current_player",
    "step_count",
)


def fresh_rng_keys(key: chex.PRNGKey, like: chex.Array) -> chex.Array:
    """Random keys shaped and typed like ``like`` (raw ``uint32`` key data or
    typed keys, any batch shape), drawn from ``key``.

    Planners use it to give copies of states that carry an ``rng_key`` their
    own futures, independent of the keys the real episode will use.
    """
    if jax.dtypes.issubdtype(like.dtype, jax.dtypes.prng_key):
        data = jax.random.key_data(like)
        bits = jax.random.bits(key, data.shape, data.dtype)
        return jax.random.wrap_key_data(bits, impl=jax.random.key_impl(like))
    return jax.random.bits(key, like.shape, like.dtype)


def select_state(pred: chex.Array, on_true: Any, on_false: Any) -> Any:
    """Leaf-wise ``jnp.where(pred, on_true, on_false)`` over two pytrees of the
    same structure, e.g. two states of a domain.

    ``pred`` is a boolean scalar for one example (or broadcasts against every
    leaf). A domain's ``step`` uses it to make ended states absorb::

        ended = state.terminated | state.truncated
        return select_state(ended, state.replace(reward=jnp.float32(0.0)), new)
    """
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b),
                                  on_true, on_false)


class Symmetry(NamedTuple):
    """One symmetry of a deterministic domain (not the identity).

    If ``g`` maps a state ``s`` to the symmetric state ``g(s)``, then

    * ``transform(observation(s)) == observation(g(s))``;
    * action ``a`` in ``s`` is action ``action_permutation[a]`` in ``g(s)``:
      ``step(g(s), perm[a]) == g(step(s, a))``, with the same reward and end
      flags, and ``legal(g(s))[perm[a]] == legal(s)[a]``.

    :func:`mctx_planner.testing.check_domain` plays random games in both
    frames from ``init`` to verify these properties.

    Attributes:
      transform: pure function of ONE observation ``obs_shape -> obs_shape``.
      action_permutation: ``[A]`` ints, a permutation of ``range(A)``.
    """

    transform: Callable[[chex.Array], chex.Array]
    action_permutation: Tuple[int, ...]


class Domain(abc.ABC):
    """Base class of every domain.

    Subclasses set the class or instance attributes below and implement
    :meth:`init` and :meth:`step` as pure functions of one example.

    Attributes:
      name: short identifier, e.g. ``"tictactoe"``.
      num_actions: size ``A`` of the action space.
      observation_shape: shape of ``state.observation`` (no batch axis).
      num_players: 1 (single agent) or 2 (two-player zero-sum, alternating).
      max_episode_steps: episodes are truncated after this many moves.
      reward_range: ``(low, high)`` bounds of ``state.reward``; checked by
        :func:`mctx_planner.testing.check_domain`.
      discount: per-step discount ``gamma`` of one-player domains. Two-player
        domains ignore it: search and value targets both chain plies with
        ``-1`` (the zero-sum sign flip of the convention below; 0 after a
        terminal state), i.e. two-player games are undiscounted.
    """

    name: str = "domain"
    num_actions: int
    observation_shape: Tuple[int, ...]
    num_players: int = 1
    max_episode_steps: int
    reward_range: Tuple[float, float] = (-1.0, 1.0)
    discount: float = 1.0

    @property
    def is_stochastic(self) -> bool:
        return isinstance(self, StochasticDomain)

    @property
    def two_player(self) -> bool:
        return self.num_players == 2

    @abc.abstractmethod
    def init(self, key: chex.PRNGKey) -> State:
        """Returns the first state of a new episode (one example, no batch)."""

    @abc.abstractmethod
    def step(self, state: State, action: chex.Array) -> State:
        """Applies ``action`` (int32 scalar) to ``state``; pure and jittable."""

    def symmetries(self) -> Tuple[Symmetry, ...]:
        """The domain's symmetries other than the identity (see :class:`Symmetry`).

        Optional; the default is none. Used by
        ``TrainConfig.augment_symmetries`` (deterministic domains only).
        """
        return ()

    def render(self, state: State) -> str:
        """Human-readable text of one (unbatched, host) state. Optional."""
        return repr(jax.device_get(state.observation))

    def __hash__(self):
        return hash((type(self), tuple(sorted(
            (k, repr(v)) for k, v in vars(self).items()))))

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)


class StochasticDomain(Domain):
    """A domain whose moves are (deterministic afterstate, then chance).

    ``step(state, action)`` must equal
    ``apply_chance(afterstate(state, action), c)`` with ``c`` drawn from
    ``chance_probs(afterstate(state, action))`` using (and advancing)
    ``state.rng_key``.

    Attributes:
      num_chance_outcomes: size ``C`` of the chance-outcome space.
    """

    num_chance_outcomes: int

    @abc.abstractmethod
    def afterstate(self, state: State, action: chex.Array) -> State:
        """The state right after ``action``, before chance acts.

        Its ``reward`` holds the reward of the move; its ``observation`` shows
        the afterstate. It has the same pytree structure as a state.
        """

    @abc.abstractmethod
    def chance_probs(self, afterstate: State) -> chex.Array:
        """``[C]`` float32 probabilities of each chance outcome (sum to 1)."""

    @abc.abstractmethod
    def apply_chance(self, afterstate: State, outcome: chex.Array) -> State:
        """The next decision state after chance outcome ``outcome`` (int32)."""
