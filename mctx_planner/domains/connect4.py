"""Connect Four: a two-player, zero-sum, deterministic 6x7 drop game."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner.domains.base import Domain, Symmetry, select_state

ROWS = 6
COLS = 7
_CELLS = ROWS * COLS


def _build_windows():
    """Precomputes the 4-in-a-row windows and, per cell, those through it.

    Returns:
      windows: ``[W + 1, 4]`` int32 flat cell indices of the ``W = 69``
        windows, plus one dummy window made of the padding cell ``42`` (which
        is always empty, so the dummy window never wins).
      cell_windows: ``[42, K]`` int32 window indices through each cell,
        padded with the dummy window ``W`` (``K = 13``, the most of any cell).
    """
    windows = []
    for r in range(ROWS):
        for c in range(COLS):
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                cells = [(r + i * dr, c + i * dc) for i in range(4)]
                if all(0 <= a < ROWS and 0 <= b < COLS for a, b in cells):
                    windows.append([a * COLS + b for a, b in cells])
    dummy = len(windows)
    per_cell = [[w for w, cells in enumerate(windows) if x in cells]
                for x in range(_CELLS)]
    k = max(len(ws) for ws in per_cell)
    cell_windows = np.full((_CELLS, k), dummy, np.int32)
    for x, ws in enumerate(per_cell):
        cell_windows[x, :len(ws)] = ws
    windows.append([_CELLS] * 4)
    return np.asarray(windows, np.int32), cell_windows


_WINDOWS, _CELL_WINDOWS = _build_windows()


@chex.dataclass(frozen=True)
class ConnectFourState:
    """State of one Connect Four game (no batch axis).

    Attributes:
      observation: ``[6, 7, 2]`` float32, canonical (see :class:`ConnectFour`).
      legal_action_mask: ``[7]`` bool.
      reward: ``[]`` float32, reward of the last move to its mover.
      terminated: ``[]`` bool.
      truncated: ``[]`` bool.
      current_player: ``[]`` int32, 0 (X, first) or 1 (O).
      step_count: ``[]`` int32.
      board: ``[6, 7]`` int8; row 0 is the TOP row, stones fall to row 5;
        0 empty, 1 = X (player 0), -1 = O (player 1).
    """

    observation: chex.Array
    legal_action_mask: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    current_player: chex.Array
    step_count: chex.Array
    board: chex.Array


def _mark(player: chex.Array) -> chex.Array:
    """The board mark (int8 ``1`` or ``-1``) of ``player`` (0 or 1)."""
    return jnp.where(player == 0, 1, -1).astype(jnp.int8)


class ConnectFour(Domain):
    """Connect Four on a 6-row, 7-column board. X (player 0) moves first.

    * Actions: ``7``, the column to drop a stone into; the stone lands on the
      lowest empty cell of that column. A full column is illegal.
    * Observation: ``[6, 7, 2]`` float32, canonical: channel 0 holds the stones
      of the player to move, channel 1 those of the opponent; row 0 is the top.
    * Reward: ``+1`` to the mover for four in a row (horizontal, vertical or
      either diagonal), else ``0``; a full board without a line is a draw.
      ``reward_range = (-1, 1)``.
    * Illegal move (a full column): the mover loses immediately, i.e.
      ``reward = -1`` and ``terminated``; the board is unchanged.
    * ``max_episode_steps = 42``: the board is full by then, so ``truncated``
      is never set.
    * Win check: only the (at most 13) precomputed windows through the newly
      placed stone are compared, a fixed-size gather that vectorizes well.
    """

    name = "connect4"
    num_actions = COLS
    observation_shape = (ROWS, COLS, 2)
    num_players = 2
    max_episode_steps = ROWS * COLS
    reward_range = (-1.0, 1.0)
    discount = 1.0

    # -- protocol -----------------------------------------------------------

    def symmetries(self):
        """The left-right mirror: column ``c`` becomes ``COLS - 1 - c``."""
        return (Symmetry(transform=lambda obs: obs[:, ::-1],
                         action_permutation=tuple(range(COLS - 1, -1, -1))),)

    def init(self, key: chex.PRNGKey) -> ConnectFourState:
        """An empty board with X to move. ``key`` is unused (deterministic)."""
        del key
        board = jnp.zeros((ROWS, COLS), jnp.int8)
        player = jnp.int32(0)
        return ConnectFourState(
            observation=self._observation(board, player),
            legal_action_mask=jnp.ones((COLS,), jnp.bool_),
            reward=jnp.float32(0.0),
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            current_player=player,
            step_count=jnp.int32(0),
            board=board,
        )

    def step(self, state: ConnectFourState,
             action: chex.Array) -> ConnectFourState:
        """Drops a stone in column ``action`` (int32 scalar in ``[0, 7)``)."""
        col = jnp.asarray(action, jnp.int32)
        ended = state.terminated | state.truncated
        mark = _mark(state.current_player)
        filled = jnp.sum(state.board[:, col] != 0).astype(jnp.int32)
        legal = filled < ROWS
        row = jnp.clip(ROWS - 1 - filled, 0, ROWS - 1)
        board = state.board.at[row, col].set(
            jnp.where(legal, mark, state.board[row, col]))
        # Win check over the windows through the new stone; cell 42 pads.
        flat = jnp.concatenate([board.reshape(-1), jnp.zeros((1,), jnp.int8)])
        cells = jnp.asarray(_WINDOWS)[jnp.asarray(_CELL_WINDOWS)[row * COLS + col]]
        win = legal & jnp.any(jnp.all(flat[cells] == mark, axis=-1))
        full = jnp.all(board[0] != 0)
        terminated = win | full | ~legal
        reward = jnp.where(win, 1.0, jnp.where(legal, 0.0, -1.0))
        step_count = state.step_count + 1
        truncated = (step_count >= self.max_episode_steps) & ~terminated
        player = 1 - state.current_player
        done = terminated | truncated
        new = ConnectFourState(
            observation=self._observation(board, player),
            legal_action_mask=jnp.where(done, True, board[0] == 0),
            reward=reward.astype(jnp.float32),
            terminated=terminated,
            truncated=truncated,
            current_player=player,
            step_count=step_count,
            board=board,
        )
        return select_state(ended, state.replace(reward=jnp.float32(0.0)), new)

    # -- helpers ------------------------------------------------------------

    @staticmethod
    def _observation(board: chex.Array, player: chex.Array) -> chex.Array:
        """``[6, 7, 2]`` float32 canonical planes for ``player`` to move."""
        mark = _mark(player)
        return jnp.stack([board == mark, board == -mark],
                         axis=-1).astype(jnp.float32)

    @staticmethod
    def board(state: ConnectFourState) -> chex.Array:
        """``[6, 7]`` int8 board (row 0 on top): 0 empty, 1 = X, -1 = O.

        Pure; works on batched states too (returns ``[..., 6, 7]``).
        """
        return state.board

    def render(self, state: ConnectFourState) -> str:
        """Six lines of ``X``/``O``/``.`` (top row first) plus column numbers."""
        board = np.asarray(jax.device_get(state.board)).reshape(ROWS, COLS)
        chars = {1: "X", -1: "O", 0: "."}
        lines = [" ".join(chars[int(v)] for v in row) for row in board]
        lines.append(" ".join(str(c) for c in range(COLS)))
        return "\n".join(lines)
