"""2048: a one-player stochastic sliding-tile game (afterstate + chance)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner.domains.base import StochasticDomain, select_state

#: Action names, indexed by action.
ACTION_NAMES = ("up", "right", "down", "left")
#: Channels of the one-hot observation: exponents 0 (empty) .. 15 (32768+).
NUM_CHANNELS = 16
#: Probability that a spawned tile is a 2 (else a 4).
P_TWO = 0.9


@chex.dataclass(frozen=True)
class Game2048State:
    """State (or afterstate) of one 2048 game; ``S`` is the board size.

    Attributes:
      observation: ``[S, S, 16]`` float32 one-hot of the tile exponents.
      legal_action_mask: ``[4]`` bool, moves that change the board (all True
        at ended states and at afterstates).
      reward: ``[]`` float32, ``reward_scale`` times the merged tile values
        of the last move.
      terminated: ``[]`` bool, no move changes the board.
      truncated: ``[]`` bool.
      current_player: ``[]`` int32, always 0.
      step_count: ``[]`` int32.
      board: ``[S, S]`` int8 tile exponents: 0 empty, ``k`` = tile ``2**k``.
      score: ``[]`` int32 sum of all merged tile values so far (unscaled).
      chance_pending: ``[]`` bool, True only at an afterstate whose move
        changed the board (a tile will spawn).
      rng_key: PRNG key used (and advanced) by ``step`` to sample the spawn.
    """

    observation: chex.Array
    legal_action_mask: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    current_player: chex.Array
    step_count: chex.Array
    board: chex.Array
    score: chex.Array
    chance_pending: chex.Array
    rng_key: chex.PRNGKey


def _compress(row: chex.Array) -> chex.Array:
    """Moves the non-zero entries of ``row`` ``[S]`` to the front, in order."""
    nonzero = row != 0
    pos = jnp.cumsum(nonzero) - 1                                   # [S]
    # One-hot "tile i goes to slot j" ([S, S]); a reduction, no scatter.
    slots = jnp.arange(row.shape[0])
    moves = nonzero[:, None] & (pos[:, None] == slots[None, :])
    return jnp.sum(jnp.where(moves, row[:, None], 0), axis=0).astype(row.dtype)


def slide_row_left(row: chex.Array):
    """Slides and merges one row of exponents ``[S]`` towards index 0.

    Each tile merges at most once per move, and merges happen from the
    front: ``[2, 2, 2, 2] -> [4, 4, 0, 0]``, ``[2, 2, 4, 0] -> [4, 4, 0, 0]``
    (written as tile values; the arrays hold exponents).

    Returns:
      ``([S] int32 new exponents, [] int32 sum of merged tile values)``.
    """
    c = _compress(row.astype(jnp.int32))
    eq = (c[:-1] == c[1:]) & (c[:-1] != 0)                     # [S-1]
    idx = jnp.arange(eq.shape[0], dtype=jnp.int32)
    # Within a run of equal neighbours, merge pairs 1st+2nd, 3rd+4th, ...
    # last_break[i] = the last j <= i with eq[j] False (or -1), as a masked
    # max over a tiny [S-1, S-1] matrix.
    breaks = (idx[None, :] <= idx[:, None]) & ~eq[None, :]
    last_break = jnp.max(jnp.where(breaks, idx[None, :], -1), axis=1)
    merge = eq & ((idx - last_break) % 2 == 1)
    merge_here = jnp.concatenate([merge, jnp.zeros((1,), bool)])
    absorbed = jnp.concatenate([jnp.zeros((1,), bool), merge])
    merged = jnp.where(merge_here, c + 1, jnp.where(absorbed, 0, c))
    reward = jnp.sum(jnp.where(merge, jnp.left_shift(1, c[:-1] + 1), 0))
    return _compress(merged), reward.astype(jnp.int32)


def all_moves(board: chex.Array):
    """Applies each of the 4 moves (up, right, down, left) to ``board``.

    Args:
      board: ``[S, S]`` integer exponents.

    Returns:
      ``([4, S, S] int8 boards, [4] int32 merge rewards, [4] bool changed)``.
    """
    b = board.astype(jnp.int32)
    views = jnp.stack([b.T, b[:, ::-1], b.T[:, ::-1], b])  # as left-slides
    slid, rewards = jax.vmap(jax.vmap(slide_row_left))(views)
    boards = jnp.stack([slid[0].T, slid[1][:, ::-1], slid[2][:, ::-1].T,
                        slid[3]]).astype(jnp.int8)
    changed = jnp.any(boards != board.astype(jnp.int8)[None], axis=(1, 2))
    return boards, rewards.sum(axis=-1), changed


def _spawn_probs(flat_board: chex.Array, pending: chex.Array) -> chex.Array:
    """``[2 * S * S]`` chance distribution of a spawn on ``flat_board``.

    Outcome ``c = 2 * cell + k`` puts a ``2`` (``k = 0``, prob 0.9) or a ``4``
    (``k = 1``, prob 0.1) on ``cell``, uniformly over the empty cells. If
    ``pending`` is False or no cell is empty, all mass is on outcome 0.
    """
    empty = (flat_board == 0).astype(jnp.float32)
    count = jnp.sum(empty)
    per_cell = empty / jnp.maximum(count, 1.0)
    probs = jnp.stack([P_TWO * per_cell, (1.0 - P_TWO) * per_cell],
                      axis=-1).reshape(-1)
    point = jnp.zeros_like(probs).at[0].set(1.0)
    return jnp.where(pending & (count > 0), probs, point).astype(jnp.float32)


def _place(flat_board: chex.Array, outcome: chex.Array,
           pending: chex.Array) -> chex.Array:
    """Puts the tile of chance ``outcome`` on ``flat_board`` ``[S*S]`` int8.

    A no-op when ``pending`` is False or the outcome's cell is occupied.
    """
    outcome = jnp.asarray(outcome, jnp.int32)
    cell = outcome // 2
    exponent = (1 + outcome % 2).astype(jnp.int8)
    place = pending & (flat_board[cell] == 0)
    return flat_board.at[cell].set(
        jnp.where(place, exponent, flat_board[cell]))


class Game2048(StochasticDomain):
    """The 2048 sliding-tile game on a ``size x size`` board.

    * Actions: ``4`` = up, right, down, left. All tiles slide that way; two
      equal tiles that meet merge once into their sum.
    * Legal moves: those that change the board. ``terminated`` when no legal
      move remains. An illegal move is well defined: nothing changes, the
      reward is 0, no tile spawns, but it counts a step.
    * Chance (``num_chance_outcomes = 2 * size**2``): after a move that
      changed the board a tile spawns; outcome ``c = 2 * cell + k`` puts a
      ``2`` (``k = 0``, probability 0.9) or a ``4`` (``k = 1``, 0.1) on
      ``cell``, uniformly over the empty cells of the afterstate. After a move
      that did not change the board (or with no empty cell) all mass is on
      outcome 0 and ``apply_chance`` places nothing.
    * Reward: ``reward_scale`` times the sum of the tile values created by
      merges in the move (e.g. merging two 4s gives 8). ``reward_range`` is
      ``(0, reward_scale * bound)`` with ``bound`` the largest possible merge
      sum of one move, ``size * (size // 2) * 2 ** (size**2 + 1)``. The
      unscaled running total is kept in ``state.score``.
    * Observation: ``[size, size, 16]`` float32 one-hot of the tile
      exponents (channel 0 = empty, channel ``k`` = tile ``2**k``; exponents
      above 15 are clipped to 15).
    * ``init`` places two random tiles (each a 2 w.p. 0.9, else a 4).
    * ``step`` samples the chance outcome with ``state.rng_key`` and advances
      it; ended states absorb, keeping their key.

    Args:
      size: side of the board (4 is the classic game; 3 is a small, fast
        variant).
      max_episode_steps: truncation horizon.
      reward_scale: multiplies the reward (e.g. ``1/64`` to keep value targets
        small for learning).
    """

    name = "2048"
    num_actions = 4
    num_players = 1
    discount = 1.0

    def __init__(self, size: int = 4, max_episode_steps: int = 1000,
                 reward_scale: float = 1.0):
        if size < 2:
            raise ValueError(f"2048 size must be >= 2, got {size}")
        self.size = int(size)
        self.max_episode_steps = int(max_episode_steps)
        self.reward_scale = float(reward_scale)
        self.observation_shape = (self.size, self.size, NUM_CHANNELS)
        self.num_chance_outcomes = 2 * self.size * self.size
        bound = self.size * (self.size // 2) * 2 ** (self.size ** 2 + 1)
        self.reward_range = (0.0, self.reward_scale * float(bound))

    # -- protocol -----------------------------------------------------------

    def init(self, key: chex.PRNGKey) -> Game2048State:
        """An empty board with two random tiles; ``key`` seeds ``rng_key``."""
        s = self.size
        key, k1, k2 = jax.random.split(key, 3)
        flat = jnp.zeros((s * s,), jnp.int8)
        for k in (k1, k2):  # two spawns, a static unroll
            logits = jnp.log(_spawn_probs(flat, jnp.bool_(True)))
            flat = _place(flat, jax.random.categorical(k, logits),
                          jnp.bool_(True))
        board = flat.reshape(s, s)
        _, _, legal = all_moves(board)
        return Game2048State(
            observation=self._observation(board),
            legal_action_mask=jnp.where(jnp.any(legal), legal, True),
            reward=jnp.float32(0.0),
            terminated=~jnp.any(legal),
            truncated=jnp.bool_(False),
            current_player=jnp.int32(0),
            step_count=jnp.int32(0),
            board=board,
            score=jnp.int32(0),
            chance_pending=jnp.bool_(False),
            rng_key=key,
        )

    def step(self, state: Game2048State,
             action: chex.Array) -> Game2048State:
        """``apply_chance(afterstate(state, action), c)``, ``c`` sampled with
        ``state.rng_key`` from ``chance_probs``; the key is advanced."""
        ended = state.terminated | state.truncated
        after = self.afterstate(state, action)
        key, sub = jax.random.split(state.rng_key)
        logits = jnp.log(self.chance_probs(after))
        outcome = jax.random.categorical(sub, logits).astype(jnp.int32)
        new = self.apply_chance(after, outcome)
        return new.replace(rng_key=jnp.where(ended, state.rng_key, key))

    def afterstate(self, state: Game2048State,
                   action: chex.Array) -> Game2048State:
        """The board after sliding by ``action`` (int32), before the spawn.

        Carries the move's reward, ``step_count + 1`` and
        ``chance_pending = (board changed)``; its legal mask is all True.
        """
        action = jnp.asarray(action, jnp.int32)
        ended = state.terminated | state.truncated
        boards, rewards, changed = all_moves(state.board)
        board = boards[action]
        merged = rewards[action]
        new = state.replace(
            observation=self._observation(board),
            legal_action_mask=jnp.ones((4,), jnp.bool_),
            reward=(merged.astype(jnp.float32) * self.reward_scale
                    ).astype(jnp.float32),
            step_count=state.step_count + 1,
            board=board,
            score=state.score + merged,
            chance_pending=changed[action],
        )
        absorbed = state.replace(reward=jnp.float32(0.0),
                                 chance_pending=jnp.bool_(False))
        return select_state(ended, absorbed, new)

    def chance_probs(self, afterstate: Game2048State) -> chex.Array:
        """``[2 * size**2]`` float32 spawn probabilities (see class doc)."""
        return _spawn_probs(afterstate.board.reshape(-1),
                            afterstate.chance_pending)

    def apply_chance(self, afterstate: Game2048State,
                     outcome: chex.Array) -> Game2048State:
        """Spawns the tile of ``outcome`` (int32) and recomputes the legal
        moves, ``terminated`` and ``truncated``. Identity on ended states."""
        s = self.size
        ended = afterstate.terminated | afterstate.truncated
        flat = _place(afterstate.board.reshape(-1), outcome,
                      afterstate.chance_pending)
        board = flat.reshape(s, s)
        _, _, legal = all_moves(board)
        terminated = ~jnp.any(legal)
        truncated = (afterstate.step_count >= self.max_episode_steps
                     ) & ~terminated
        new = afterstate.replace(
            observation=self._observation(board),
            legal_action_mask=jnp.where(terminated | truncated, True, legal),
            terminated=terminated,
            truncated=truncated,
            board=board,
            chance_pending=jnp.bool_(False),
        )
        return select_state(ended, afterstate, new)

    # -- helpers ------------------------------------------------------------

    @staticmethod
    def _observation(board: chex.Array) -> chex.Array:
        """``[S, S, 16]`` float32 one-hot of the clipped exponents."""
        exps = jnp.clip(board.astype(jnp.int32), 0, NUM_CHANNELS - 1)
        return jax.nn.one_hot(exps, NUM_CHANNELS, dtype=jnp.float32)

    @staticmethod
    def tiles(state: Game2048State) -> chex.Array:
        """``[..., S, S]`` int32 tile values (0 for empty). Pure."""
        b = state.board.astype(jnp.int32)
        return jnp.where(b > 0, jnp.left_shift(1, b), 0)

    @staticmethod
    def max_tile(state: Game2048State) -> chex.Array:
        """``[...]`` int32 largest tile value on the board. Pure."""
        return jnp.max(Game2048.tiles(state), axis=(-2, -1))

    @staticmethod
    def score(state: Game2048State) -> chex.Array:
        """``[...]`` int32 game score: unscaled sum of all merges so far."""
        return state.score

    def render(self, state: Game2048State) -> str:
        """One line per row of tile values, ``.`` for empty, plus the score."""
        tiles = np.asarray(jax.device_get(self.tiles(state)))
        width = max(4, len(str(int(tiles.max()))))
        lines = [" ".join(str(int(v)).rjust(width) if v else ".".rjust(width)
                          for v in row) for row in tiles]
        lines.append(f"score {int(jax.device_get(state.score))}")
        return "\n".join(lines)
