"""Tic-tac-toe: a two-player, zero-sum, deterministic 3x3 board game."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner.domains.base import Domain, Symmetry, select_state

#: The 8 winning lines of the 3x3 board, as row-major cell indices, ``[8, 3]``.
_LINES = np.array(
    [[0, 1, 2], [3, 4, 5], [6, 7, 8],  # rows
     [0, 3, 6], [1, 4, 7], [2, 5, 8],  # columns
     [0, 4, 8], [2, 4, 6]],            # diagonals
    dtype=np.int32)


@chex.dataclass(frozen=True)
class TicTacToeState:
    """State of one tic-tac-toe game (no batch axis).

    Attributes:
      observation: ``[3, 3, 2]`` float32, canonical (see :class:`TicTacToe`).
      legal_action_mask: ``[9]`` bool.
      reward: ``[]`` float32, reward of the last move to its mover.
      terminated: ``[]`` bool.
      truncated: ``[]`` bool.
      current_player: ``[]`` int32, 0 (X) or 1 (O).
      step_count: ``[]`` int32.
      board: ``[9]`` int8, row-major; 0 empty, 1 = X (player 0), -1 = O.
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


class TicTacToe(Domain):
    """Tic-tac-toe. X (player 0) moves first.

    * Actions: ``9``, the row-major index of the cell to mark.
    * Observation: ``[3, 3, 2]`` float32, canonical: channel 0 holds the stones
      of the player to move, channel 1 those of the opponent.
    * Reward: ``+1`` to the mover for completing a line (row, column or
      diagonal), ``0`` otherwise; a full board without a line is a draw.
      ``reward_range = (-1, 1)``.
    * Illegal move (marking an occupied cell): the mover loses immediately,
      i.e. ``reward = -1`` and ``terminated``; the board is unchanged.
    * ``max_episode_steps = 9``: a game always terminates by then, so
      ``truncated`` is never set.
    * After the game ends ``current_player`` still flips to the player who
      would move next, and the observation is canonical for that player.
    """

    name = "tictactoe"
    num_actions = 9
    observation_shape = (3, 3, 2)
    num_players = 2
    max_episode_steps = 9
    reward_range = (-1.0, 1.0)
    discount = 1.0

    # -- protocol -----------------------------------------------------------

    def symmetries(self):
        """The 7 non-identity symmetries of the square (rotations, reflections)."""
        cells = np.arange(9).reshape(3, 3)
        out = []
        for flip in (False, True):
            for turns in range(4):
                if not flip and turns == 0:
                    continue

                def transform(obs, flip=flip, turns=turns):
                    obs = obs[:, ::-1] if flip else obs
                    return jnp.rot90(obs, turns, axes=(0, 1))

                # Cell c moves to where transform puts it: apply the same map
                # to the board of cell indices and read off the inverse.
                moved = np.asarray(transform(jnp.asarray(cells)[..., None]))[..., 0]
                perm = np.empty(9, int)
                perm[moved.reshape(-1)] = np.arange(9)
                out.append(Symmetry(transform=transform,
                                    action_permutation=tuple(int(p) for p in perm)))
        return tuple(out)

    def init(self, key: chex.PRNGKey) -> TicTacToeState:
        """An empty board with X to move. ``key`` is unused (deterministic)."""
        del key
        board = jnp.zeros((9,), jnp.int8)
        player = jnp.int32(0)
        return TicTacToeState(
            observation=self._observation(board, player),
            legal_action_mask=jnp.ones((9,), jnp.bool_),
            reward=jnp.float32(0.0),
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            current_player=player,
            step_count=jnp.int32(0),
            board=board,
        )

    def step(self, state: TicTacToeState,
             action: chex.Array) -> TicTacToeState:
        """Marks cell ``action`` (int32 scalar in ``[0, 9)``) for the mover."""
        action = jnp.asarray(action, jnp.int32)
        ended = state.terminated | state.truncated
        mark = _mark(state.current_player)
        legal = state.board[action] == 0
        board = state.board.at[action].set(
            jnp.where(legal, mark, state.board[action]))
        win = legal & jnp.any(jnp.all(board[_LINES] == mark, axis=-1))
        full = jnp.all(board != 0)
        terminated = win | full | ~legal
        reward = jnp.where(win, 1.0, jnp.where(legal, 0.0, -1.0))
        step_count = state.step_count + 1
        truncated = (step_count >= self.max_episode_steps) & ~terminated
        player = 1 - state.current_player
        done = terminated | truncated
        new = TicTacToeState(
            observation=self._observation(board, player),
            legal_action_mask=jnp.where(done, True, board == 0),
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
        """``[3, 3, 2]`` float32 canonical planes for ``player`` to move."""
        mark = _mark(player)
        planes = jnp.stack([board == mark, board == -mark], axis=-1)
        return planes.astype(jnp.float32).reshape(3, 3, 2)

    @staticmethod
    def board(state: TicTacToeState) -> chex.Array:
        """``[9]`` int8 row-major board: 0 empty, 1 = X (player 0), -1 = O.

        Pure; works on batched states too (returns ``[..., 9]``).
        """
        return state.board

    def render(self, state: TicTacToeState) -> str:
        """Three lines of ``X``/``O``/``.`` for one unbatched state."""
        board = np.asarray(jax.device_get(state.board)).reshape(3, 3)
        chars = {1: "X", -1: "O", 0: "."}
        return "\n".join(" ".join(chars[int(v)] for v in row) for row in board)
