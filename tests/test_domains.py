"""Tests of the built-in domains and of the conformance checker."""

from __future__ import annotations

import collections
import functools
from types import SimpleNamespace
from typing import List, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mctx_planner import domains
from mctx_planner.domains import (ConnectFour, Domain, Game2048, Maze,
                                  StochasticDomain, TicTacToe)
from mctx_planner.domains.maze import shortest_path_length
from mctx_planner.testing import DomainCheckError, check_domain

TTT = TicTacToe()
C4 = ConnectFour()
MAZE = Maze()
G2048 = Game2048()


@functools.lru_cache(maxsize=None)
def jitted(domain: Domain) -> SimpleNamespace:
    """Jitted functions of ``domain``, shared across tests (one compile)."""
    fns = SimpleNamespace(init=jax.jit(domain.init), step=jax.jit(domain.step),
                          binit=jax.jit(jax.vmap(domain.init)),
                          bstep=jax.jit(jax.vmap(domain.step)))
    if isinstance(domain, StochasticDomain):
        fns.afterstate = jax.jit(domain.afterstate)
        fns.chance_probs = jax.jit(domain.chance_probs)
        fns.apply_chance = jax.jit(domain.apply_chance)
    if isinstance(domain, Maze):
        fns.spl = jax.jit(shortest_path_length)
        fns.bspl = jax.jit(jax.vmap(shortest_path_length))
    return fns


def play(domain: Domain, actions: Sequence[int], key=None) -> List:
    """States after init and after each of ``actions``."""
    fns = jitted(domain)
    state = fns.init(jax.random.PRNGKey(0) if key is None else key)
    states = [state]
    for a in actions:
        state = fns.step(state, jnp.int32(a))
        states.append(state)
    return states


def assert_same_state(a, b) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# -- registry -----------------------------------------------------------------

def test_registry_makes_every_domain():
    assert domains.DOMAINS[:4] == ("tictactoe", "connect4", "maze", "2048")
    assert {"knowledge_graph", "recommendation"} <= set(domains.DOMAINS)
    for name in domains.DOMAINS:
        assert domains.make(name).name == name
    assert domains.make("maze", size=5).observation_shape == (5, 5, 3)
    assert domains.make("2048", size=3).num_chance_outcomes == 18


def test_registry_unknown_name_lists_known():
    with pytest.raises(ValueError, match="chess.*tictactoe.*connect4.*maze"):
        domains.make("chess")


# -- tic-tac-toe --------------------------------------------------------------

_TTT_LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7),
              (2, 5, 8), (0, 4, 8), (2, 4, 6)]


@pytest.mark.parametrize("line", _TTT_LINES)
def test_tictactoe_x_wins_every_line(line):
    others = [c for c in range(9) if c not in line][:2]
    moves = [line[0], others[0], line[1], others[1], line[2]]
    states = play(TTT, moves)
    for s in states[1:-1]:
        assert not bool(s.terminated) and float(s.reward) == 0.0
    last = states[-1]
    assert bool(last.terminated) and not bool(last.truncated)
    assert float(last.reward) == 1.0
    assert int(last.current_player) == 1
    assert bool(jnp.all(last.legal_action_mask))


def test_tictactoe_o_wins_gets_plus_one():
    last = play(TTT, [0, 3, 1, 4, 8, 5])[-1]
    assert bool(last.terminated) and float(last.reward) == 1.0
    assert int(last.current_player) == 0  # O (player 1) made the move.


def test_tictactoe_draw_after_nine_moves():
    states = play(TTT, [0, 1, 2, 4, 3, 5, 7, 6, 8])
    assert not any(bool(s.terminated) for s in states[:-1])
    last = states[-1]
    assert bool(last.terminated) and not bool(last.truncated)
    assert float(last.reward) == 0.0 and int(last.step_count) == 9
    assert TTT.render(last) == "X O X\nX O O\nO X X"


def test_tictactoe_canonical_observation_swaps_channels():
    s0, s1, s2 = play(TTT, [4, 0])
    assert s0.observation.shape == (3, 3, 2) and not bool(s0.observation.any())
    # O to move: X's stone at the centre is the opponent's (channel 1).
    assert float(s1.observation[1, 1, 1]) == 1.0
    assert float(s1.observation[..., 0].sum()) == 0.0
    # X to move: own centre stone in channel 0, O's corner in channel 1.
    assert float(s2.observation[1, 1, 0]) == 1.0
    assert float(s2.observation[0, 0, 1]) == 1.0
    assert float(s2.observation.sum()) == 2.0
    np.testing.assert_array_equal(
        np.asarray(TTT.board(s2)), [-1, 0, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(s2.legal_action_mask),
                                  np.asarray(TTT.board(s2)) == 0)


def test_tictactoe_illegal_move_loses_and_absorbs():
    s1, s2 = play(TTT, [4, 4])[1:]
    assert bool(s2.terminated) and float(s2.reward) == -1.0
    np.testing.assert_array_equal(np.asarray(s2.board), np.asarray(s1.board))
    assert bool(jnp.all(s2.legal_action_mask))
    s3 = jitted(TTT).step(s2, jnp.int32(0))
    assert_same_state(s3, s2.replace(reward=jnp.float32(0.0)))


# -- connect four -------------------------------------------------------------

def _c4_winner(board: np.ndarray) -> int:
    """Numpy reference: the mark (1/-1) with four in a row, else 0."""
    for r in range(6):
        for c in range(7):
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                cells = [(r + i * dr, c + i * dc) for i in range(4)]
                if all(0 <= a < 6 and 0 <= b < 7 for a, b in cells):
                    vals = {int(board[a, b]) for a, b in cells}
                    if len(vals) == 1 and vals != {0}:
                        return vals.pop()
    return 0


@pytest.mark.parametrize("moves", [
    [0, 1, 0, 1, 0, 1, 0],                      # vertical
    [0, 0, 1, 1, 2, 2, 3],                      # horizontal
    [0, 1, 1, 2, 3, 2, 2, 3, 6, 3, 3],          # diagonal /
    [6, 5, 5, 4, 3, 4, 4, 3, 0, 3, 3],          # diagonal \
], ids=["vertical", "horizontal", "diag_up", "diag_down"])
def test_connect4_wins(moves):
    states = play(C4, moves)
    assert not any(bool(s.terminated) for s in states[:-1])
    last = states[-1]
    assert bool(last.terminated) and float(last.reward) == 1.0
    assert _c4_winner(np.asarray(C4.board(last))) == 1  # X made the move.


def test_connect4_full_column_is_illegal_and_loses():
    states = play(C4, [0, 0, 0, 0, 0, 0])
    full = states[-1]
    assert not bool(full.terminated)
    np.testing.assert_array_equal(np.asarray(full.legal_action_mask),
                                  [False] + [True] * 6)
    assert list(np.asarray(C4.board(full))[:, 0]) == [-1, 1, -1, 1, -1, 1]
    lost = jitted(C4).step(full, jnp.int32(0))
    assert bool(lost.terminated) and float(lost.reward) == -1.0
    np.testing.assert_array_equal(np.asarray(lost.board),
                                  np.asarray(full.board))


def test_connect4_draw_when_full():
    moves = [5, 5, 5, 0, 5, 4, 4, 6, 6, 3, 5, 1, 3, 5, 2, 1, 2, 3, 0, 4, 1,
             4, 3, 0, 2, 2, 2, 1, 0, 0, 0, 2, 1, 6, 1, 3, 4, 4, 3, 6, 6, 6]
    states = play(C4, moves)
    assert not any(bool(s.terminated) for s in states[:-1])
    last = states[-1]
    assert bool(last.terminated) and not bool(last.truncated)
    assert float(last.reward) == 0.0 and int(last.step_count) == 42
    assert (np.asarray(last.board) != 0).all()
    assert _c4_winner(np.asarray(last.board)) == 0
    assert last.observation.shape == (6, 7, 2)
    assert C4.render(last).splitlines()[0] == "X X O X O O O"


def test_connect4_random_games_match_numpy_reference():
    fns = jitted(C4)
    batch = 16
    state = fns.binit(jax.random.split(jax.random.PRNGKey(1), batch))
    rng = np.random.default_rng(0)
    for _ in range(42):
        mask = np.asarray(state.legal_action_mask)
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask],
                           np.int32)
        prev = jax.device_get(state)
        state = fns.bstep(state, jnp.asarray(actions))
        now = jax.device_get(state)
        for b in range(batch):
            if prev.terminated[b]:
                continue
            winner = _c4_winner(now.board[b])
            assert now.terminated[b] == (winner != 0 or (now.board[b] != 0).all())
            assert now.reward[b] == (1.0 if winner else 0.0)
    assert bool(jnp.all(state.terminated))


# -- maze ---------------------------------------------------------------------

def _np_bfs_actions(walls: np.ndarray, start: int, goal: int) -> List[int]:
    """Numpy reference BFS: the actions of a shortest path start -> goal."""
    n = walls.shape[0]
    deltas = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    parent = {start: None}
    queue = collections.deque([start])
    while queue:
        x = queue.popleft()
        if x == goal:
            break
        r, c = divmod(x, n)
        for a, (dr, dc) in enumerate(deltas):
            rr, cc = r + dr, c + dc
            y = rr * n + cc
            if 0 <= rr < n and 0 <= cc < n and not walls[rr, cc] \
                    and y not in parent:
                parent[y] = (x, a)
                queue.append(y)
    assert goal in parent, "unreachable goal"
    actions = []
    while parent[goal] is not None:
        goal, a = parent[goal]
        actions.append(a)
    return actions[::-1]


def test_maze_same_key_same_maze():
    fns = jitted(MAZE)
    a = fns.init(jax.random.PRNGKey(7))
    b = fns.init(jax.random.PRNGKey(7))
    assert_same_state(a, b)
    walls = {np.asarray(fns.init(jax.random.PRNGKey(k)).walls).tobytes()
             for k in range(8)}
    assert len(walls) > 1


@pytest.mark.parametrize("density", [0.3, 0.9])
def test_maze_always_solvable(density):
    """64 mazes (4 batches of 16); 0.9 exercises the corridor fallback."""
    maze = MAZE if density == 0.3 else Maze(wall_density=density)
    fns = jitted(maze)
    for batch in range(4):
        states = jax.device_get(fns.binit(jax.random.split(
            jax.random.PRNGKey(batch), 16)))
        assert (states.agent != states.goal).all()
        if maze is MAZE:
            spl = np.asarray(fns.bspl(states))
            assert (spl > 0).all()
        for b in range(16):
            walls = states.walls[b].reshape(-1)
            assert not walls[states.agent[b]] and not walls[states.goal[b]]
            path = _np_bfs_actions(states.walls[b], int(states.agent[b]),
                                   int(states.goal[b]))
            assert len(path) > 0
            if maze is MAZE:
                assert spl[b] == len(path)


def test_maze_optimal_path_reaches_goal_with_optimal_return():
    fns = jitted(MAZE)
    for k in range(6):
        s = fns.init(jax.random.PRNGKey(100 + k))
        actions = _np_bfs_actions(np.asarray(s.walls), int(s.agent),
                                  int(s.goal))
        assert int(fns.spl(s)) == len(actions)
        ret = 0.0
        for i, a in enumerate(actions):
            assert bool(s.legal_action_mask[a])
            s = fns.step(s, jnp.int32(a))
            ret += float(s.reward)
            assert bool(s.terminated) == (i == len(actions) - 1)
        assert ret == -len(actions)
        assert int(s.agent) == int(s.goal) and int(fns.spl(s)) == 0


def test_maze_walls_block_movement():
    fns = jitted(MAZE)
    s = fns.init(jax.random.PRNGKey(0))
    walls = jnp.zeros((7, 7), bool).at[3, 4].set(True)
    s = s.replace(walls=walls, agent=jnp.int32(3 * 7 + 3),
                  goal=jnp.int32(0))
    mask = np.asarray(MAZE._legal_moves(walls, s.agent))
    np.testing.assert_array_equal(mask, [True, True, True, False])
    s1 = fns.step(s, jnp.int32(3))  # right, into the wall: stay in place
    assert int(s1.agent) == 3 * 7 + 3 and float(s1.reward) == -1.0
    assert int(s1.step_count) == 1
    corner = s.replace(agent=jnp.int32(6 * 7 + 6))
    s2 = fns.step(corner, jnp.int32(1))  # down, off the grid
    assert int(s2.agent) == 6 * 7 + 6
    s3 = fns.step(s, jnp.int32(0))  # up is free
    assert int(s3.agent) == 2 * 7 + 3
    assert float(s3.observation[2, 3, 1]) == 1.0
    assert float(s3.observation[3, 4, 0]) == 1.0


def test_maze_truncates():
    assert MAZE.max_episode_steps == 4 * 7 * 7
    assert Maze(size=5, max_episode_steps=3).max_episode_steps == 3
    fns = jitted(MAZE)
    for k in range(20):
        s = fns.init(jax.random.PRNGKey(k))
        if int(fns.spl(s)) > 1:
            break
    s = s.replace(step_count=jnp.int32(MAZE.max_episode_steps - 1))
    a = int(np.argmax(np.asarray(s.legal_action_mask)))
    s = fns.step(s, jnp.int32(a))
    assert bool(s.truncated) and not bool(s.terminated)
    assert bool(jnp.all(s.legal_action_mask))
    assert "A" in MAZE.render(s) and "G" in MAZE.render(s)


# -- 2048 ---------------------------------------------------------------------

def _ref_slide_left(row):
    tiles = [int(x) for x in row if x]
    out, reward, i = [], 0, 0
    while i < len(tiles):
        if i + 1 < len(tiles) and tiles[i] == tiles[i + 1]:
            out.append(tiles[i] + 1)
            reward += 2 ** (tiles[i] + 1)
            i += 2
        else:
            out.append(tiles[i])
            i += 1
    return out + [0] * (len(row) - len(out)), reward


def _ref_move(board: np.ndarray, action: int):
    """Numpy reference move on exponents; actions up, right, down, left."""
    view = {0: board.T, 1: board[:, ::-1], 2: board.T[:, ::-1], 3: board}
    rows = [_ref_slide_left(r) for r in view[action]]
    slid = np.array([r for r, _ in rows])
    back = {0: slid.T, 1: slid[:, ::-1], 2: slid[:, ::-1].T, 3: slid}
    return back[action], sum(r for _, r in rows)


def _with_board(domain: Game2048, board) -> chex.ArrayTree:
    s = jitted(domain).init(jax.random.PRNGKey(0))
    board = jnp.asarray(board, jnp.int8)
    return s.replace(board=board, observation=domain._observation(board))


def test_2048_merge_examples():
    fns = jitted(G2048)
    s = _with_board(G2048, [[1, 1, 2, 0], [1, 1, 1, 1], [0, 1, 0, 1],
                            [3, 3, 3, 0]])
    after = fns.afterstate(s, jnp.int32(3))  # left
    np.testing.assert_array_equal(
        np.asarray(Game2048.tiles(after)),
        [[4, 4, 0, 0], [4, 4, 0, 0], [4, 0, 0, 0], [16, 8, 0, 0]])
    assert float(after.reward) == 4 + 8 + 4 + 16
    assert int(after.score) == 32 and bool(after.chance_pending)
    scaled = Game2048(reward_scale=0.5)
    after = jax.jit(scaled.afterstate)(
        _with_board(G2048, [[1, 1, 2, 0]] + [[0] * 4] * 3), jnp.int32(3))
    assert float(after.reward) == 2.0  # 0.5 * 4


def test_2048_moves_match_numpy_reference():
    fns = jitted(G2048)
    rng = np.random.default_rng(0)
    for _ in range(12):
        board = rng.integers(0, 4, size=(4, 4)) * (rng.random((4, 4)) < 0.7)
        s = _with_board(G2048, board)
        legal = []
        for a in range(4):
            after = fns.afterstate(s, jnp.int32(a))
            ref, reward = _ref_move(board, a)
            np.testing.assert_array_equal(np.asarray(after.board), ref)
            assert float(after.reward) == reward
            assert bool(after.chance_pending) == (ref != board).any()
            legal.append((ref != board).any())
        if any(legal):
            nxt = fns.apply_chance(s, jnp.int32(0))  # recomputes the mask
            np.testing.assert_array_equal(
                np.asarray(nxt.legal_action_mask), legal)


def test_2048_chance_probs_on_empty_cells():
    fns = jitted(G2048)
    s = _with_board(G2048, [[1, 1, 2, 3], [2, 3, 4, 5], [5, 4, 3, 2],
                            [1, 2, 3, 0]])
    after = fns.afterstate(s, jnp.int32(3))
    probs = np.asarray(fns.chance_probs(after)).reshape(16, 2)
    empty = np.asarray(after.board).reshape(-1) == 0
    assert empty.sum() == 2
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-6)
    assert (probs[~empty] == 0).all()
    np.testing.assert_allclose(probs[empty], [[0.45, 0.05]] * 2, rtol=1e-6)
    nxt = fns.apply_chance(after, jnp.int32(2 * np.flatnonzero(empty)[0] + 1))
    assert int(nxt.board.reshape(-1)[np.flatnonzero(empty)[0]]) == 2  # a 4


def test_2048_step_equals_afterstate_then_chance():
    fns = jitted(G2048)
    s = fns.init(jax.random.PRNGKey(5))
    for _ in range(20):
        a = jnp.int32(int(np.argmax(np.asarray(s.legal_action_mask))))
        after = fns.afterstate(s, a)
        key, sub = jax.random.split(s.rng_key)
        c = jax.random.categorical(sub, jnp.log(fns.chance_probs(after)))
        expected = fns.apply_chance(after, c.astype(jnp.int32)).replace(
            rng_key=key)
        s = fns.step(s, a)
        assert_same_state(s, expected)
        assert int((np.asarray(s.board) != 0).sum()) >= 2


def test_2048_init_places_two_tiles():
    fns = jitted(G2048)
    states = jax.device_get(fns.binit(jax.random.split(
        jax.random.PRNGKey(0), 16)))
    boards = states.board.reshape(16, -1)
    assert ((boards != 0).sum(-1) == 2).all()
    assert np.isin(boards, [0, 1, 2]).all()
    assert states.observation.shape == (16, 4, 4, 16)
    assert (states.observation.sum(-1) == 1).all()


def test_2048_stuck_board_terminates_and_illegal_move_is_noop():
    fns = jitted(G2048)
    stuck = np.array([[1, 2, 1, 2], [2, 1, 2, 1], [1, 2, 1, 2], [2, 1, 2, 1]])
    s = _with_board(G2048, stuck).replace(chance_pending=jnp.bool_(False))
    end = fns.apply_chance(s, jnp.int32(0))
    assert bool(end.terminated) and not bool(end.truncated)
    assert bool(jnp.all(end.legal_action_mask))
    # Only left/right are legal (a merge in the last row).
    board = stuck.copy()
    board[3] = [3, 3, 2, 1]
    s = fns.apply_chance(_with_board(G2048, board), jnp.int32(0))
    np.testing.assert_array_equal(np.asarray(s.legal_action_mask),
                                  [False, True, False, True])
    # An illegal move (up) changes nothing but the step count.
    up = fns.step(s, jnp.int32(0))
    np.testing.assert_array_equal(np.asarray(up.board), board)
    assert float(up.reward) == 0.0 and int(up.step_count) == 1
    assert "score" in G2048.render(up)


def test_2048_small_variant():
    small = Game2048(size=3, max_episode_steps=50)
    s = play(small, [0, 1, 2, 3] * 3)[-1]
    assert s.observation.shape == (3, 3, 16)
    assert small.num_chance_outcomes == 18


# -- vmap over every domain -----------------------------------------------------

@pytest.mark.parametrize("name", domains.DOMAINS)
def test_vmap_batch_of_16(name):
    domain = domains.make(name)
    fns = jitted(domain)
    states = fns.binit(jax.random.split(jax.random.PRNGKey(0), 16))
    assert states.observation.shape == (16,) + tuple(domain.observation_shape)
    for _ in range(3):
        actions = jnp.argmax(states.legal_action_mask, axis=-1).astype(
            jnp.int32)
        states = fns.bstep(states, actions)
    assert states.legal_action_mask.shape == (16, domain.num_actions)
    assert states.reward.shape == (16,) and states.reward.dtype == jnp.float32
    steps = np.asarray(states.step_count)
    assert ((steps == 3) | np.asarray(states.terminated)).all()


# -- check_domain on the built-ins ------------------------------------------------

@pytest.mark.parametrize("name", domains.DOMAINS)
def test_check_domain_passes_builtins(name):
    check_domain(domains.make(name))


# -- check_domain on broken domains ------------------------------------------------

@chex.dataclass(frozen=True)
class ToyState:
    observation: chex.Array
    legal_action_mask: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    current_player: chex.Array
    step_count: chex.Array
    pos: chex.Array


@chex.dataclass(frozen=True)
class ToyStateExtra(ToyState):
    extra: chex.Array


class Toy(Domain):
    """A correct tiny domain: walk right (action 2) to position 3; 6 steps."""

    name = "toy"
    num_actions = 3
    observation_shape = (4,)
    max_episode_steps = 6
    reward_range = (-1.0, 1.0)

    def _state(self, pos, reward, step_count, terminated, player):
        truncated = (step_count >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        return ToyState(
            observation=jax.nn.one_hot(pos, 4, dtype=jnp.float32),
            legal_action_mask=jnp.ones((3,), bool) | done,
            reward=jnp.asarray(reward, jnp.float32),
            terminated=terminated, truncated=truncated,
            current_player=jnp.asarray(player, jnp.int32),
            step_count=step_count, pos=pos)

    def init(self, key):
        return self._state(jnp.int32(0), 0.0, jnp.int32(0),
                           jnp.bool_(False), 0)

    def _move(self, state, action):
        pos = jnp.minimum(state.pos + (action == 2), 3).astype(jnp.int32)
        terminated = pos == 3
        return self._state(pos, jnp.where(terminated, 1.0, 0.0),
                           state.step_count + 1, terminated,
                           self._next_player(state))

    def _next_player(self, state):
        return state.current_player

    def step(self, state, action):
        ended = state.terminated | state.truncated
        new = self._move(state, action)
        return domains.select_state(ended, state.replace(reward=jnp.float32(0.0)), new)


class WrongObservationShape(Toy):
    observation_shape = (5,)


class EmptyMaskMidEpisode(Toy):
    def _move(self, state, action):
        new = super()._move(state, action)
        empty = (new.step_count == 2) & ~new.terminated
        return new.replace(legal_action_mask=new.legal_action_mask & ~empty)


class NonAbsorbing(Toy):
    def step(self, state, action):
        return self._move(state, action)


class DifferentStructure(Toy):
    def step(self, state, action):
        s = super().step(state, action)
        return ToyStateExtra(**{k: getattr(s, k) for k in s.keys()},
                             extra=jnp.zeros(()))


class RewardOutOfRange(Toy):
    def _move(self, state, action):
        return super()._move(state, action).replace(reward=jnp.float32(2.0))


class PythonScalarInit(Toy):
    def init(self, key):
        # A Python float leaf is weakly typed; step returns a strong float32: a
        # jitted step would compile twice.
        return super().init(key).replace(reward=0.0)


class WeaklyTypedInit(Toy):
    def init(self, key):
        return super().init(key).replace(reward=jnp.asarray(0.0))


class NeverEnds(Toy):
    def _state(self, pos, reward, step_count, terminated, player):
        s = super()._state(pos, reward, step_count, terminated, player)
        return s.replace(terminated=jnp.bool_(False),
                         truncated=jnp.bool_(False),
                         reward=jnp.float32(0.0))


class NotAlternating(Toy):
    num_players = 2


@chex.dataclass(frozen=True)
class ToyStateNoStepCount:
    observation: chex.Array
    legal_action_mask: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    current_player: chex.Array
    pos: chex.Array


class MissingField(Toy):
    def init(self, key):
        s = super().init(key)
        return ToyStateNoStepCount(
            **{k: v for k, v in s.items() if k != "step_count"})


class PythonBranching(Toy):
    def step(self, state, action):
        if state.terminated:  # Not jittable.
            return state
        return super().step(state, action)


@chex.dataclass(frozen=True)
class CoinState(ToyState):
    rng_key: chex.Array


class CoinWalk(StochasticDomain):
    """A correct stochastic toy: a coin flip moves right after action 1."""

    name = "coin"
    num_actions = 2
    num_chance_outcomes = 2
    observation_shape = (4,)
    max_episode_steps = 8
    reward_range = (0.0, 1.0)

    def init(self, key):
        return CoinState(
            observation=jnp.zeros((4,), jnp.float32).at[0].set(1.0),
            legal_action_mask=jnp.ones((2,), bool), reward=jnp.float32(0.0),
            terminated=jnp.bool_(False), truncated=jnp.bool_(False),
            current_player=jnp.int32(0), step_count=jnp.int32(0),
            pos=jnp.int32(0), rng_key=key)

    def afterstate(self, state, action):
        ended = state.terminated | state.truncated
        new = state.replace(step_count=state.step_count + 1,
                            reward=jnp.float32(0.0))
        return domains.select_state(ended, state.replace(reward=jnp.float32(0.0)), new)

    def chance_probs(self, afterstate):
        return jnp.array([0.5, 0.5], jnp.float32)

    def apply_chance(self, afterstate, outcome):
        ended = afterstate.terminated | afterstate.truncated
        pos = jnp.minimum(afterstate.pos + outcome, 3).astype(jnp.int32)
        terminated = pos == 3
        truncated = (afterstate.step_count >= self.max_episode_steps) & \
            ~terminated
        new = afterstate.replace(
            pos=pos, observation=jax.nn.one_hot(pos, 4, dtype=jnp.float32),
            reward=jnp.where(terminated, 1.0, 0.0).astype(jnp.float32),
            terminated=terminated, truncated=truncated)
        return domains.select_state(ended, afterstate, new)

    def step(self, state, action):
        key, sub = jax.random.split(state.rng_key)
        after = self.afterstate(state, action)
        c = jax.random.categorical(sub, jnp.log(self.chance_probs(after)))
        return self.apply_chance(after, c).replace(rng_key=key)


class BadChanceProbs(CoinWalk):
    def chance_probs(self, afterstate):
        return jnp.array([0.6, 0.6], jnp.float32)


class InconsistentStep(CoinWalk):
    def step(self, state, action):
        s = super().step(state, action)
        ended = state.terminated | state.truncated
        return s.replace(pos=jnp.where(ended, s.pos, s.pos + 5))


def test_check_domain_passes_correct_toys():
    check_domain(Toy(), num_episodes=1, batch_size=4)
    check_domain(CoinWalk(), num_episodes=1, batch_size=4)


@pytest.mark.parametrize("domain, match", [
    (WrongObservationShape(),
     r"observation after init: expected shape \(5,\) float32 "
     r"\(domain.observation_shape\), got shape \(4,\)"),
    (EmptyMaskMidEpisode(), "legal_action_mask is empty"),
    (NonAbsorbing(),
     r"ended states must absorb.*field\(s\) \['step_count'\] changed"),
    (DifferentStructure(), r"different pytree structure.*extra leaves \['extra'\]"),
    (RewardOutOfRange(), r"reward 2\.0 outside reward_range \(-1\.0, 1\.0\)"),
    (PythonScalarInit(), r"re-trace.*reward: ~float32 vs float32"),
    (WeaklyTypedInit(), r"re-trace.*reward: ~float32 vs float32"),
    (NeverEnds(), "did not end by max_episode_steps=6"),
    (NotAlternating(), "current_player must alternate"),
    (MissingField(), r"missing field\(s\) \['step_count'\]"),
    (PythonBranching(), "step under jit.*failed"),
    (BadChanceProbs(), "chance_probs: expected a sum of 1, got 1.2"),
    (InconsistentStep(), "step is inconsistent with afterstate"),
], ids=lambda x: type(x).__name__ if isinstance(x, Domain) else "")
def test_check_domain_catches_broken(domain, match):
    with pytest.raises(DomainCheckError, match=match):
        check_domain(domain, num_episodes=1, batch_size=4)


def test_register_user_domain():
    from mctx_planner import domains as domains_lib
    from mctx_planner.config import TrainConfig

    class MyGame(TicTacToe):
        name = "my_game_for_test"

    domains_lib.register("my_game_for_test", MyGame)
    assert "my_game_for_test" in domains_lib.registered()
    assert isinstance(domains_lib.make("my_game_for_test"), MyGame)
    assert TrainConfig(domain="my_game_for_test").domain == "my_game_for_test"
    with pytest.raises(ValueError, match="already registered"):
        domains_lib.register("my_game_for_test", MyGame)
    with pytest.raises(ValueError, match="registered domain"):
        TrainConfig(domain="no_such_domain")
