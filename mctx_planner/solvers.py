"""Exact and classical players used as yardsticks for the planner.

* :class:`TicTacToeSolver` -- exhaustive, memoised minimax over every
  reachable tic-tac-toe position (pure Python; about 5.5k positions).
* :func:`alphabeta_connect4` -- depth-limited alpha-beta (negamax) for
  Connect Four over bitboards, with a standard open-line heuristic;
  :func:`alphabeta_connect4_batch` runs it over a batch of boards.
* :func:`maze_optimal_return` -- the optimal return of a maze state.

Board conventions follow the domains: tic-tac-toe boards are ``[9]`` row-major
with ``1`` = X (player 0), ``-1`` = O (player 1), ``0`` empty; Connect Four
boards are ``[6, 7]`` (or flat ``[42]`` row-major) with row 0 on TOP and the
same marks. ``player`` is always the player to move (0 or 1).

Everything here is host-side Python/numpy (no tracing); values are from the
point of view of the player to move.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Sequence, Set, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "TicTacToeSolver",
    "alphabeta_connect4",
    "alphabeta_connect4_batch",
    "connect4_move_scores",
    "maze_optimal_return",
    "C4_WIN_SCORE",
]

# ---------------------------------------------------------------------------
# Tic-tac-toe
# ---------------------------------------------------------------------------

_TTT_LINES: Tuple[Tuple[int, int, int], ...] = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8),
    (0, 3, 6), (1, 4, 7), (2, 5, 8),
    (0, 4, 8), (2, 4, 6))

_Board = Tuple[int, ...]


def _ttt_winner(board: _Board) -> int:
    """The mark (``1``/``-1``) owning a complete line, or ``0``."""
    for a, b, c in _TTT_LINES:
        v = board[a]
        if v != 0 and v == board[b] == board[c]:
            return v
    return 0


def _ttt_mark(player: int) -> int:
    return 1 if player == 0 else -1


class TicTacToeSolver:
    """Exact minimax values of tic-tac-toe positions (memoised on the board).

    Values are in ``{-1, 0, 1}`` from the point of view of the player to move:
    ``+1`` the mover can force a win, ``0`` a draw, ``-1`` the opponent can
    force a win. A terminal board (a completed line, or full) has the value of
    its outcome for the player who would move next (``-1`` after the
    opponent's winning move, ``0`` for a full board).

    The table is filled lazily; :meth:`reachable_positions` (and the first
    query of the empty board) explores the whole game, 5478 positions.

    Example::

        solver = TicTacToeSolver()
        solver.value(np.zeros(9), 0)            # 0: the game is a draw
        solver.optimal_actions(np.zeros(9), 0)  # every cell draws
    """

    def __init__(self):
        self._values: Dict[Tuple[_Board, int], int] = {}
        self._reachable: Optional[List[Tuple[_Board, int]]] = None

    # -- input checking -------------------------------------------------------

    @staticmethod
    def _canonical(board9, player) -> Tuple[_Board, int]:
        """Validates and converts ``(board9, player)`` to a hashable key."""
        arr = np.asarray(board9)
        if arr.size != 9:
            raise ValueError(
                f"a tic-tac-toe board must have 9 cells ([9] or [3, 3]), got "
                f"shape {arr.shape}")
        flat = arr.reshape(9)
        if not np.all(np.isin(flat, (-1, 0, 1))):
            raise ValueError(
                f"tic-tac-toe board entries must be in {{-1, 0, 1}}, got {flat}")
        board = tuple(int(v) for v in flat)
        player = int(np.asarray(player))
        if player not in (0, 1):
            raise ValueError(f"player must be 0 (X) or 1 (O), got {player}")
        num_x, num_o = board.count(1), board.count(-1)
        if num_x - num_o != player:
            raise ValueError(
                f"board has {num_x} X and {num_o} O stones, which is not a "
                f"position with player {player} to move (X moves first)")
        return board, player

    # -- solving ------------------------------------------------------------

    def _solve(self, board: _Board, player: int) -> int:
        key = (board, player)
        cached = self._values.get(key)
        if cached is not None:
            return cached
        if _ttt_winner(board) != 0:
            value = -1  # the previous mover completed a line
        elif 0 not in board:
            value = 0
        else:
            value = max(self._child_value(board, player, a)
                        for a in range(9) if board[a] == 0)
        self._values[key] = value
        return value

    def _child_value(self, board: _Board, player: int, action: int) -> int:
        """Value for ``player`` of playing empty cell ``action``."""
        child = board[:action] + (_ttt_mark(player),) + board[action + 1:]
        return -self._solve(child, 1 - player)

    def value(self, board9: chex.Array, player_to_move: int) -> int:
        """Minimax value ``{-1, 0, 1}`` of the position for the player to move.

        Args:
          board9: ``[9]`` (or ``[3, 3]``) board, ``1`` = X, ``-1`` = O, 0 empty.
          player_to_move: 0 (X) or 1 (O); must match the stone counts.

        Raises:
          ValueError: wrong shape, entries, or a player inconsistent with the
            stone counts.
        """
        return self._solve(*self._canonical(board9, player_to_move))

    def action_values(self, board9: chex.Array, player: int) -> np.ndarray:
        """``[9]`` float32 minimax value of each move for the mover.

        Occupied cells (and every cell of a terminal board) are ``nan``.
        """
        board, player = self._canonical(board9, player)
        out = np.full((9,), np.nan, np.float32)
        if _ttt_winner(board) != 0:
            return out
        for a in range(9):
            if board[a] == 0:
                out[a] = self._child_value(board, player, a)
        return out

    def optimal_actions(self, board9: chex.Array, player: int) -> Set[int]:
        """The set of moves achieving the minimax value (empty if terminal).

        An immediate win is always included (its value is ``+1``).
        """
        board, player = self._canonical(board9, player)
        if _ttt_winner(board) != 0 or 0 not in board:
            return set()
        best = self._solve(board, player)
        return {a for a in range(9)
                if board[a] == 0 and self._child_value(board, player, a) == best}

    def is_terminal(self, board9: chex.Array) -> bool:
        """Whether the board has a completed line or is full."""
        flat = tuple(int(v) for v in np.asarray(board9).reshape(9))
        return _ttt_winner(flat) != 0 or 0 not in flat

    def reachable_positions(self) -> List[Tuple[np.ndarray, int]]:
        """Every NON-terminal position reachable from the empty board.

        Returns:
          A list (deterministic order: breadth first, then by board) of
          ``(board [9] int8, player_to_move)`` pairs; 4520 of them (the 5478
          reachable positions minus the 958 terminal ones).
        """
        if self._reachable is None:
            seen = set()
            frontier = [((0,) * 9, 0)]
            ordered = []
            while frontier:
                nxt = set()
                for board, player in frontier:
                    ordered.append((board, player))
                    mark = _ttt_mark(player)
                    for a in range(9):
                        if board[a] != 0:
                            continue
                        child = board[:a] + (mark,) + board[a + 1:]
                        if _ttt_winner(child) != 0 or 0 not in child:
                            continue
                        key = (child, 1 - player)
                        if key not in seen:
                            seen.add(key)
                            nxt.add(key)
                frontier = sorted(nxt)
            self._reachable = ordered
        return [(np.asarray(b, np.int8), p) for b, p in self._reachable]


# ---------------------------------------------------------------------------
# Connect Four (bitboards)
# ---------------------------------------------------------------------------
#
# Layout: 7 bits per column (6 cells + 1 sentinel bit that is always empty),
# bit index ``col * 7 + height`` with height 0 = the bottom cell (board row 5).
# The sentinel keeps shifted lines from wrapping between columns.

_C4_ROWS, _C4_COLS, _C4_H = 6, 7, 7
#: Score of a won position (plus the remaining depth, to prefer quick wins).
C4_WIN_SCORE = 1_000_000
_INF = 10 ** 9
#: Columns, centre first: move ordering and deterministic tie-breaking.
_C4_ORDER = (3, 2, 4, 1, 5, 0, 6)
#: Heuristic weight of an open window holding k stones of one side.
_C4_WINDOW_WEIGHT = (0, 0, 2, 5, 0)
#: Heuristic weight of a stone in the centre column.
_C4_CENTER_WEIGHT = 3


def _c4_bit(col: int, height: int) -> int:
    return 1 << (col * _C4_H + height)


def _c4_windows() -> Tuple[int, ...]:
    windows = []
    for c in range(_C4_COLS):
        for h in range(_C4_ROWS):
            for dc, dh in ((1, 0), (0, 1), (1, 1), (1, -1)):
                cells = [(c + i * dc, h + i * dh) for i in range(4)]
                if all(0 <= x < _C4_COLS and 0 <= y < _C4_ROWS for x, y in cells):
                    mask = 0
                    for x, y in cells:
                        mask |= _c4_bit(x, y)
                    windows.append(mask)
    return tuple(windows)


_C4_WINDOWS = _c4_windows()  # 69 masks
_C4_CENTER = sum(_c4_bit(3, h) for h in range(_C4_ROWS))


def _c4_won(bits: int) -> bool:
    """Whether ``bits`` (one side's stones) contains four in a row."""
    for d in (1, _C4_H, _C4_H - 1, _C4_H + 1):  # vertical, horiz., diagonals
        m = bits & (bits >> d)
        if m & (m >> (2 * d)):
            return True
    return False


def _c4_evaluate(me: int, opp: int) -> int:
    """Heuristic score of a non-terminal position for the side ``me``.

    Sum over the 69 four-cell windows: a window with ``k`` stones of one side
    and none of the other scores ``+2`` (k=2) or ``+5`` (k=3) for that side;
    plus ``3`` per stone in the centre column.
    """
    score = _C4_CENTER_WEIGHT * ((me & _C4_CENTER).bit_count()
                                 - (opp & _C4_CENTER).bit_count())
    weights = _C4_WINDOW_WEIGHT
    for w in _C4_WINDOWS:
        m = me & w
        o = opp & w
        if not o:
            if m:
                score += weights[m.bit_count()]
        elif not m:
            score -= weights[o.bit_count()]
    return score


def _c4_negamax(me: int, opp: int, heights: List[int], depth: int,
                alpha: int, beta: int, empty: int) -> int:
    """Fail-soft alpha-beta value for ``me`` (to move) of a live position."""
    if empty == 0:
        return 0  # full board: draw
    if depth == 0:
        return _c4_evaluate(me, opp)
    for c in _C4_ORDER:  # an immediate win ends the search here
        h = heights[c]
        if h < _C4_ROWS and _c4_won(me | _c4_bit(c, h)):
            return C4_WIN_SCORE + depth
    best = -_INF
    for c in _C4_ORDER:
        h = heights[c]
        if h >= _C4_ROWS:
            continue
        heights[c] = h + 1
        v = -_c4_negamax(opp, me | _c4_bit(c, h), heights, depth - 1,
                         -beta, -alpha, empty - 1)
        heights[c] = h
        if v > best:
            best = v
            if v > alpha:
                alpha = v
                if alpha >= beta:
                    break
    return best


def _c4_parse(board: chex.Array, player: int):
    """Validates a board and returns ``(me, opp, heights, empty)`` bitboards."""
    arr = np.asarray(board)
    if arr.size != _C4_ROWS * _C4_COLS:
        raise ValueError(
            f"a Connect Four board must be [6, 7] or [42], got shape {arr.shape}")
    arr = arr.reshape(_C4_ROWS, _C4_COLS)
    if not np.all(np.isin(arr, (-1, 0, 1))):
        raise ValueError("Connect Four board entries must be in {-1, 0, 1}")
    player = int(np.asarray(player))
    if player not in (0, 1):
        raise ValueError(f"player must be 0 or 1, got {player}")
    mark = 1 if player == 0 else -1
    me = opp = 0
    heights = [0] * _C4_COLS
    for c in range(_C4_COLS):
        col = arr[::-1, c]  # bottom first
        filled = int(np.count_nonzero(col))
        if np.any(col[filled:] != 0):
            raise ValueError(
                f"column {c} has a floating stone (row 0 must be the top row)")
        heights[c] = filled
        for h in range(filled):
            if col[h] == mark:
                me |= _c4_bit(c, h)
            else:
                opp |= _c4_bit(c, h)
    if _c4_won(me) or _c4_won(opp):
        raise ValueError("the Connect Four position is already won")
    empty = _C4_ROWS * _C4_COLS - sum(heights)
    if empty == 0:
        raise ValueError("the Connect Four board is full: no legal move")
    return me, opp, heights, empty


def connect4_move_scores(board: chex.Array, player: int,
                         depth: int) -> np.ndarray:
    """Alpha-beta scores of the root moves (``[7]`` int64; illegal = ``-inf``).

    The scores of the best moves are exact; the others are upper bounds that
    are strictly below the best (enough to identify every tied best move).
    A score ``>= C4_WIN_SCORE`` is a forced win, ``<= -C4_WIN_SCORE`` a forced
    loss, within the horizon.

    Args:
      board: ``[6, 7]`` (or ``[42]``) int board, row 0 on top, ``1`` = player
        0, ``-1`` = player 1.
      player: the player to move (0 or 1).
      depth: plies searched (>= 1); depth 1 scores each move by the heuristic
        of the position it leads to.

    Raises:
      ValueError: bad board / player / depth, or a finished game.
    """
    if not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    depth = int(depth)
    me, opp, heights, empty = _c4_parse(board, player)
    scores = np.full((_C4_COLS,), np.iinfo(np.int64).min, np.int64)
    best = -_INF
    for c in _C4_ORDER:
        h = heights[c]
        if h >= _C4_ROWS:
            continue
        bit = _c4_bit(c, h)
        if _c4_won(me | bit):
            v = C4_WIN_SCORE + depth
        else:
            heights[c] = h + 1
            # Window (best - 1, inf): exact for any move that ties the best.
            v = -_c4_negamax(opp, me | bit, heights, depth - 1,
                             -_INF, -(best - 1), empty - 1)
            heights[c] = h
        scores[c] = v
        best = max(best, v)
    return scores


def alphabeta_connect4(board: chex.Array, player: int, depth: int,
                       rng: Optional[np.random.Generator] = None) -> int:
    """Best Connect Four move by depth-limited alpha-beta (negamax).

    Takes an immediate win, avoids moves that lose within ``depth`` plies, and
    otherwise maximises the open-window heuristic (2- and 3-in-a-rows with the
    rest of the window empty, centre stones). Ties are broken towards the
    centre (columns 3, 2, 4, 1, 5, 0, 6), or uniformly with ``rng``.

    Speed (pure Python, one CPU core, random mid-game positions): about
    1 ms per move at depth 4 (worst seen 3 ms), 2.4 ms at depth 5, 6 ms at
    depth 6; centre-first move ordering keeps the tree near-minimal.

    Args:
      board: ``[6, 7]`` (or ``[42]``) board, row 0 on top, ``1`` = player 0.
      player: the player to move (0 or 1).
      depth: plies searched (>= 1). Depth 2 blocks every immediate threat.
      rng: optional ``numpy.random.Generator`` to vary choices among ties.

    Returns:
      The column (int in ``[0, 7)``).

    Raises:
      ValueError: bad board / player / depth, or a finished game.
    """
    scores = connect4_move_scores(board, player, depth)
    best = scores.max()
    ties = [c for c in _C4_ORDER if scores[c] == best]
    if rng is None or len(ties) == 1:
        return int(ties[0])
    return int(ties[rng.integers(len(ties))])


def alphabeta_connect4_batch(boards: Sequence[chex.Array] | chex.Array,
                             players: Sequence[int] | chex.Array, depth: int,
                             rng: Optional[np.random.Generator] = None
                             ) -> np.ndarray:
    """Runs :func:`alphabeta_connect4` on each board of a batch.

    Args:
      boards: ``[B, 6, 7]`` (or ``[B, 42]``) boards, or a list of boards.
      players: ``[B]`` players to move.
      depth: plies searched (>= 1).
      rng: optional generator for tie-breaking (shared across the batch).

    Returns:
      ``[B]`` int32 columns.
    """
    boards = np.asarray(boards)
    players = np.asarray(players).reshape(-1)
    if boards.ndim < 2 or boards.shape[0] != players.shape[0]:
        raise ValueError(
            f"boards [B, 6, 7] and players [B] must share the batch size, got "
            f"{boards.shape} and {players.shape}")
    return np.asarray([alphabeta_connect4(b, p, depth, rng)
                       for b, p in zip(boards, players)], np.int32)


# ---------------------------------------------------------------------------
# Maze
# ---------------------------------------------------------------------------


def maze_optimal_return(state) -> chex.Array:
    """Optimal (undiscounted) return from a maze state: ``-shortest path``.

    Args:
      state: a :class:`~mctx_planner.domains.maze.MazeState`, unbatched
        (``agent`` shape ``[]``) or batched (``agent`` shape ``[B]``).

    Returns:
      ``[]`` or ``[B]`` float32. ``+1`` (impossible as a return) flags an
      unreachable goal (never produced by ``Maze.init``).
    """
    batched = jnp.ndim(state.agent) > 0
    return _maze_optimal_return_fn(bool(batched))(state)


@functools.lru_cache(maxsize=2)
def _maze_optimal_return_fn(batched: bool):
    from mctx_planner.domains.maze import shortest_path_length  # pylint: disable=g-import-not-at-top

    def fn(state):
        length = (jax.vmap(shortest_path_length) if batched
                  else shortest_path_length)(state)
        return jnp.where(length < 0, 1.0, -length.astype(jnp.float32))
    return jax.jit(fn)
