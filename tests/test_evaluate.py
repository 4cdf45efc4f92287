"""Solvers (tic-tac-toe minimax, Connect Four alpha-beta) and evaluation
(players, arena, one-player episodes, tic-tac-toe audit)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mctx_planner import evaluate as ev
from mctx_planner import solvers
from mctx_planner.domains import ConnectFour, Maze, TicTacToe


def _ttt(x=(), o=()):
    board = np.zeros(9, np.int8)
    board[list(x)] = 1
    board[list(o)] = -1
    return board


def _c4(moves):
    """[6, 7] board after dropping stones in ``moves`` (X first)."""
    board = np.zeros((6, 7), np.int8)
    for i, c in enumerate(moves):
        row = 5 - np.count_nonzero(board[:, c])
        board[row, c] = 1 if i % 2 == 0 else -1
    return board


@pytest.fixture(scope="module")
def ttt():
    return TicTacToe()


@pytest.fixture(scope="module")
def solver():
    return solvers.TicTacToeSolver()


# -- tic-tac-toe solver -------------------------------------------------------


def test_empty_board_is_a_draw(solver):
    assert solver.value(np.zeros(9), 0) == 0
    assert solver.optimal_actions(np.zeros(9), 0) == set(range(9))


def test_reachable_positions(solver):
    positions = solver.reachable_positions()
    assert len(positions) == 4520  # 5478 reachable minus 958 terminal
    assert len({(tuple(b), p) for b, p in positions}) == 4520
    for board, player in positions[:50] + positions[-50:]:
        assert np.count_nonzero(board == 1) - np.count_nonzero(board == -1) == player
        assert not solver.is_terminal(board)


def test_known_positions(solver):
    # Replies to the three kinds of first move that keep the draw.
    assert solver.optimal_actions(_ttt([0]), 1) == {4}
    assert solver.optimal_actions(_ttt([4]), 1) == {0, 2, 6, 8}
    assert solver.optimal_actions(_ttt([1]), 1) == {0, 2, 4, 7}
    # Opposite corners vs centre: O must take an edge.
    assert solver.value(_ttt([0, 8], [4]), 1) == 0
    assert solver.optimal_actions(_ttt([0, 8], [4]), 1) == {1, 3, 5, 7}
    # X forks (3 or 6) and wins.
    assert solver.value(_ttt([0, 4], [8, 1]), 0) == 1
    assert solver.optimal_actions(_ttt([0, 4], [8, 1]), 0) == {3, 6}


def test_optimal_actions_include_immediate_wins(solver):
    assert solver.value(_ttt([0, 1], [3, 4]), 0) == 1
    assert solver.optimal_actions(_ttt([0, 1], [3, 4]), 0) == {2}
    values = solver.action_values(_ttt([0, 1], [3, 4]), 0)
    assert values[2] == 1 and np.isnan(values[0])
    assert 5 in solver.optimal_actions(_ttt([0, 1, 8], [3, 4]), 1)
    # A finished board: the previous mover won.
    assert solver.value(_ttt([0, 1, 2], [3, 4]), 1) == -1
    assert solver.optimal_actions(_ttt([0, 1, 2], [3, 4]), 1) == set()


def test_solver_rejects_bad_input(solver):
    with pytest.raises(ValueError, match="9 cells"):
        solver.value(np.zeros(8), 0)
    with pytest.raises(ValueError, match="entries"):
        solver.value(np.full(9, 2), 0)
    with pytest.raises(ValueError, match="player"):
        solver.value(_ttt([0]), 0)
    with pytest.raises(ValueError, match="player"):
        solver.value(np.zeros(9), 2)


# -- Connect Four alpha-beta ----------------------------------------------


def test_alphabeta_takes_an_immediate_win():
    # X: 0, 1, 2 on the bottom row; O stacked on 0, 1. X to move wins at 3.
    board = _c4([0, 0, 1, 1, 2, 6])
    for depth in (1, 2, 4):
        assert solvers.alphabeta_connect4(board, 0, depth) == 3
    # Vertical: X has three in column 5 (O elsewhere), X to move.
    board = _c4([5, 0, 5, 1, 5, 6])
    assert solvers.alphabeta_connect4(board, 0, 3) == 5
    scores = solvers.connect4_move_scores(board, 0, 3)
    assert scores[5] >= solvers.C4_WIN_SCORE


def test_alphabeta_blocks_an_immediate_loss():
    # X: 0, 1, 2 on the bottom row (O: 6, 6); O to move must block at 3.
    board = _c4([0, 6, 1, 6, 2])
    for depth in (2, 3, 4):
        assert solvers.alphabeta_connect4(board, 1, depth) == 3
    # X: three in column 0 (O: 3, 4); O to move must block on top of it.
    board = _c4([0, 3, 0, 4, 0])
    for depth in (2, 3, 4):
        assert solvers.alphabeta_connect4(board, 1, depth) == 0
    # X: 2, 3, 4 threatens 1 and 5 at once: O is lost and the scores say so.
    board = _c4([2, 6, 3, 6, 4])
    assert solvers.connect4_move_scores(board, 1, 2).max() <= -solvers.C4_WIN_SCORE


def test_alphabeta_bitboards_agree_with_the_domain():
    """Replays random games: the solver rejects exactly the won positions."""
    domain = ConnectFour()
    step = jax.jit(jax.vmap(domain.step))
    states = jax.vmap(domain.init)(jax.random.split(jax.random.PRNGKey(0), 16))
    key = jax.random.PRNGKey(1)
    for _ in range(42):
        key, sub = jax.random.split(key)
        logits = jnp.where(states.legal_action_mask, 0.0, -jnp.inf)
        live = ~np.asarray(states.terminated)
        states = step(states, jax.random.categorical(sub, logits))
        boards = np.asarray(states.board)
        won = np.asarray(states.terminated) & (np.asarray(states.reward) > 0)
        for b, p, w, a in zip(boards, np.asarray(states.current_player), won,
                              live):
            if not a:
                continue
            if w:
                with pytest.raises(ValueError, match="already won"):
                    solvers.alphabeta_connect4(b, p, 1)
            elif np.any(b[0] == 0):
                assert b[0, solvers.alphabeta_connect4(b, p, 1)] == 0


def _brute_negamax(me, opp, heights, depth, empty):
    """Minimax without pruning, same heuristic and win scores."""
    if empty == 0:
        return 0
    if depth == 0:
        return solvers._c4_evaluate(me, opp)  # pylint: disable=protected-access
    best = -10 ** 9
    for c in range(7):
        h = heights[c]
        if h >= 6:
            continue
        bit = solvers._c4_bit(c, h)  # pylint: disable=protected-access
        if solvers._c4_won(me | bit):  # pylint: disable=protected-access
            v = solvers.C4_WIN_SCORE + depth
        else:
            heights[c] += 1
            v = -_brute_negamax(opp, me | bit, heights, depth - 1, empty - 1)
            heights[c] -= 1
        best = max(best, v)
    return best


def test_alphabeta_matches_plain_minimax():
    rng = np.random.default_rng(0)
    for _ in range(12):
        moves = []
        for _ in range(rng.integers(0, 20)):
            board = _c4(moves)
            legal = [c for c in range(7) if board[0, c] == 0]
            moves.append(int(rng.choice(legal)))
        board, player = _c4(moves), len(moves) % 2
        try:
            me, opp, heights, empty = solvers._c4_parse(board, player)  # pylint: disable=protected-access
        except ValueError:  # already won
            continue
        for depth in (1, 2, 3):
            scores = solvers.connect4_move_scores(board, player, depth)
            exact = np.full(7, np.iinfo(np.int64).min, np.int64)
            for c in range(7):
                if heights[c] >= 6:
                    continue
                bit = solvers._c4_bit(c, heights[c])  # pylint: disable=protected-access
                if solvers._c4_won(me | bit):  # pylint: disable=protected-access
                    exact[c] = solvers.C4_WIN_SCORE + depth
                    continue
                heights[c] += 1
                exact[c] = -_brute_negamax(opp, me | bit, heights, depth - 1,
                                           empty - 1)
                heights[c] -= 1
            assert scores.max() == exact.max()
            np.testing.assert_array_equal(scores == scores.max(),
                                          exact == exact.max())


def test_alphabeta_batch_and_input_checks():
    boards = np.stack([_c4([0, 0, 1, 1, 2, 6]), _c4([0, 3, 0, 4, 0])])
    actions = solvers.alphabeta_connect4_batch(boards, [0, 1], depth=2)
    np.testing.assert_array_equal(actions, [3, 0])
    rng = np.random.default_rng(0)
    empty = np.zeros((6, 7), np.int8)
    choices = {solvers.alphabeta_connect4(empty, 0, 1, rng) for _ in range(5)}
    assert choices == {3}  # the centre is strictly best
    with pytest.raises(ValueError, match="depth"):
        solvers.alphabeta_connect4(empty, 0, 0)
    with pytest.raises(ValueError, match="floating"):
        bad = empty.copy()
        bad[0, 0] = 1
        solvers.alphabeta_connect4(bad, 1, 2)
    with pytest.raises(ValueError, match="\\[6, 7\\]"):
        solvers.alphabeta_connect4(np.zeros(10), 0, 2)


# -- arena ----------------------------------------------------------------


def test_arena_random_vs_random_is_symmetric(ttt):
    rand = ev.random_player(ttt)
    result = ev.arena(ttt, rand, rand, num_games=400, key=jax.random.PRNGKey(0))
    assert result.num_games == 400
    for seat in (0, 1):
        assert result.wins[seat] + result.draws[seat] + result.losses[seat] == 200
    assert result.total_wins + result.total_draws + result.total_losses == 400
    assert 0.4 <= result.score <= 0.6
    assert result.ci_low < result.score < result.ci_high
    assert result.wins[0] > result.wins[1]  # the first player's advantage
    assert result.losses[1] > result.losses[0]
    assert 5 <= result.mean_length <= 9
    assert "random vs random" in result.summary()


def test_arena_input_checks(ttt):
    rand = ev.random_player(ttt)
    maze = Maze(size=4)
    with pytest.raises(ValueError, match="two-player"):
        ev.arena(maze, rand, rand, num_games=4, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="even"):
        ev.arena(ttt, rand, rand, num_games=5, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="opening_moves"):
        ev.arena(ttt, rand, rand, num_games=4, key=jax.random.PRNGKey(0),
                 opening_moves=-1)
    with pytest.raises(TypeError, match="Player"):
        ev.arena(ttt, lambda k, s: s, rand, num_games=4, key=jax.random.PRNGKey(0))


def test_arena_host_players(ttt):
    perfect = ev.tictactoe_solver_player()
    rand = ev.random_player(ttt)
    result = ev.arena(ttt, perfect, perfect, num_games=4, key=jax.random.PRNGKey(0),
                      opening_moves=1)
    assert result.total_draws == 4 and result.score == 0.5
    result = ev.arena(ttt, rand, perfect, num_games=20, key=jax.random.PRNGKey(1))
    assert result.total_wins == 0 and result.total_losses >= 10


def _preference_act(params, key, states):
    """Plays the legal move of highest ``params[a]`` (a fixed move order)."""
    del key
    return jnp.argmax(jnp.where(states.legal_action_mask, params, -jnp.inf),
                      axis=-1).astype(jnp.int32)


def test_players_with_params_share_compiled_loops(ttt):
    rand = ev.random_player(ttt)
    center_first = jnp.array([0, 0, 0, 0, 9, 0, 0, 0, 0], jnp.float32)
    corner_first = jnp.array([9, 0, 8, 0, 0, 0, 7, 0, 6], jnp.float32)
    key = jax.random.PRNGKey(3)
    ev.arena(ttt, ev.Player(_preference_act, params=center_first), rand,
             num_games=8, key=key)
    misses = ev._arena_loop_fn.cache_info().misses
    with_params = ev.arena(ttt, ev.Player(_preference_act, params=corner_first), rand,
                           num_games=8, key=key)
    assert ev._arena_loop_fn.cache_info().misses == misses  # no new compile
    # The same games as a player that closes over the same preferences.
    closed = ev.Player(lambda k, s: _preference_act(corner_first, k, s))
    baked = ev.arena(ttt, closed, rand, num_games=8, key=key)
    assert ev._arena_loop_fn.cache_info().misses == misses + 1
    assert (with_params.wins.tolist(), with_params.losses.tolist()) == (
        baked.wins.tolist(), baked.losses.tolist())
    states = ev.init_batch(ttt, 2, key)
    assert ev.Player(_preference_act, params=corner_first)(key, states).tolist() == [0, 0]


def test_pure_search_beats_random(ttt):
    search = ev.pure_search_player(ttt, 64, algorithm="muzero")
    result = ev.arena(ttt, search, ev.random_player(ttt), num_games=20,
                      key=jax.random.PRNGKey(0))
    assert result.score >= 0.8, result.summary()


def test_alphabeta_beats_random_at_connect_four():
    domain = ConnectFour()
    result = ev.arena(domain, ev.alphabeta_player(2), ev.random_player(domain),
                      num_games=6, key=jax.random.PRNGKey(0))
    assert result.score >= 0.8, result.summary()


# -- one-player evaluation ----------------------------------------------------


def test_evaluate_single_player_maze():
    maze = Maze(size=4, max_episode_steps=24)
    key = jax.random.PRNGKey(0)
    init = ev.init_batch(maze, 8, key)
    stats = ev.evaluate_single_player(maze, ev.greedy_one_step_player(maze),
                                      key=key, initial_states=init)
    assert stats.returns.shape == (8,) and stats.lengths.shape == (8,)
    np.testing.assert_allclose(stats.returns, -stats.lengths)  # -1 per move
    assert stats.ci_low <= stats.mean_return <= stats.ci_high
    # Nobody beats the shortest path.
    optimal = np.asarray(solvers.maze_optimal_return(init))
    assert np.all(optimal <= -1)
    assert np.all(stats.returns <= optimal)
    # A host player takes the host loop.
    rand = jax.jit(ev.random_player(maze).act)
    host = ev.Player(act=lambda k, s: np.asarray(rand(k, s)), jittable=False,
                     name="host-random")
    stats = ev.evaluate_single_player(maze, host, num_episodes=8, key=key,
                                      initial_states=init)
    assert np.all(stats.returns <= optimal)
    assert np.all(stats.lengths <= 24)
    assert "host-random" in stats.summary()
    with pytest.raises(ValueError, match="initial_states"):
        ev.evaluate_single_player(maze, host, num_episodes=3, key=key,
                                  initial_states=init)
    with pytest.raises(ValueError, match="one-player"):
        ev.evaluate_single_player(TicTacToe(), host, num_episodes=2, key=key)
    with pytest.raises(ValueError, match="one-player"):
        ev.greedy_one_step_player(TicTacToe())


# -- tic-tac-toe audit --------------------------------------------------------


def test_tictactoe_states_match_the_domain(ttt):
    boards = np.stack([_ttt(), _ttt([4]), _ttt([0, 8], [4])])
    states = ev.tictactoe_states(boards, [0, 1, 1])
    np.testing.assert_array_equal(np.asarray(states.board), boards)
    np.testing.assert_array_equal(np.asarray(states.current_player), [0, 1, 1])
    np.testing.assert_array_equal(np.asarray(states.legal_action_mask), boards == 0)
    np.testing.assert_array_equal(np.asarray(states.step_count), [0, 1, 3])
    direct = ttt.step(ttt.init(jax.random.PRNGKey(0)), 4)
    np.testing.assert_array_equal(np.asarray(states.observation[1]),
                                  np.asarray(direct.observation))
    with pytest.raises(ValueError, match="player"):
        ev.tictactoe_states(boards[:1], [1])


def test_audit_of_the_perfect_policy():
    result = ev.audit_tictactoe(ev.tictactoe_solver_player())
    assert result.num_positions == 4520
    assert result.num_nonoptimal == 0 and result.perfect
    assert not result.forced_loss_as_x and not result.forced_loss_as_o
    assert result.bad_positions == []


def test_audit_of_the_random_policy(ttt):
    result = ev.audit_tictactoe(ev.random_player(ttt))
    assert result.num_nonoptimal > 1000
    assert result.num_blunders > 500
    assert result.forced_loss_as_x and result.forced_loss_as_o
    bad = result.bad_positions[0]
    assert bad.action not in bad.optimal_actions
    assert "non-optimal" in result.summary()


def _replay_line(line):
    board = [0] * 9
    for i, a in enumerate(line):
        assert board[a] == 0
        board[a] = 1 if i % 2 == 0 else -1
    return board


def test_audit_losing_lines_are_real_losses(solver):
    """A deterministic 'first empty cell' policy loses in both seats."""
    def first_empty(states):
        return jnp.argmax(states.board == 0, axis=-1)
    result = ev.audit_tictactoe(jax.jit(first_empty), batch_size=1000)
    assert result.forced_loss_as_x and result.forced_loss_as_o
    for agent, line in ((0, result.losing_line_x), (1, result.losing_line_o)):
        board = _replay_line(line)
        # The agent's moves follow the policy; the opponent made the last move
        # and completed a line.
        for i, a in enumerate(line):
            if i % 2 == agent:
                assert a == _replay_line(line[:i]).index(0)
        assert len(line) % 2 == agent  # the opponent moved last
        assert solver.value(np.asarray(board), len(line) % 2) == -1
        assert solver.is_terminal(np.asarray(board))
    # An illegal move counts as non-optimal and as illegal.
    result = ev.audit_tictactoe(lambda s: np.zeros(s.board.shape[0], np.int32))
    assert result.num_illegal > 0 and result.forced_loss_as_x
