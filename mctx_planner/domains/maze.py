"""Maze: a one-player grid world procedurally generated from the init key."""

from __future__ import annotations

from typing import Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mctx_planner.domains.base import Domain, select_state

#: Row/column offsets of the actions up, down, left, right; ``[4, 2]``.
_DELTAS = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], np.int32)
#: Action names, indexed by action.
ACTION_NAMES = ("up", "down", "left", "right")
#: Wall regenerations tried before an L-shaped corridor is carved.
_MAX_TRIES = 8


@chex.dataclass(frozen=True)
class MazeState:
    """State of one maze episode (no batch axis); ``N`` is the maze size.

    Attributes:
      observation: ``[N, N, 3]`` float32 planes: walls, agent, goal.
      legal_action_mask: ``[4]`` bool, moves not into a wall / off the grid.
      reward: ``[]`` float32, ``-1`` after every move, 0 after ``init``.
      terminated: ``[]`` bool, the agent stands on the goal.
      truncated: ``[]`` bool.
      current_player: ``[]`` int32, always 0.
      step_count: ``[]`` int32.
      walls: ``[N, N]`` bool.
      agent: ``[]`` int32 row-major cell index of the agent.
      goal: ``[]`` int32 row-major cell index of the goal.
    """

    observation: chex.Array
    legal_action_mask: chex.Array
    reward: chex.Array
    terminated: chex.Array
    truncated: chex.Array
    current_player: chex.Array
    step_count: chex.Array
    walls: chex.Array
    agent: chex.Array
    goal: chex.Array


def distance_map(walls: chex.Array, target: chex.Array) -> chex.Array:
    """BFS distances (4-neighbourhood) from every cell to ``target``.

    A synchronous flood fill in a ``lax.while_loop`` (at most ``N * N``
    sweeps, fewer when it converges); jittable and vmappable.

    Args:
      walls: ``[N, N]`` bool.
      target: ``[]`` int32 row-major cell index.

    Returns:
      ``[N, N]`` int32 distances; ``N * N`` marks walls and cells that cannot
      reach ``target``.
    """
    n = walls.shape[0]
    inf = n * n
    dist0 = jnp.full((n * n,), inf, jnp.int32).at[target].set(0).reshape(n, n)

    def sweep(carry):
        dist, _, it = carry
        padded = jnp.pad(dist, 1, constant_values=inf)
        neighbours = jnp.minimum(
            jnp.minimum(padded[:-2, 1:-1], padded[2:, 1:-1]),
            jnp.minimum(padded[1:-1, :-2], padded[1:-1, 2:]))
        new = jnp.minimum(dist, jnp.minimum(neighbours + 1, inf))
        new = jnp.where(walls, inf, new)
        return new, jnp.any(new != dist), it + 1

    def not_done(carry):
        _, changed, it = carry
        return changed & (it < n * n)

    dist, _, _ = jax.lax.while_loop(
        not_done, sweep, (dist0, jnp.bool_(True), jnp.int32(0)))
    return dist


def shortest_path_length(state: MazeState) -> chex.Array:
    """``[]`` int32 BFS distance from the agent to the goal of ``state``.

    The optimal return from ``state`` is ``-shortest_path_length(state)``.
    Returns ``-1`` if the goal is unreachable (never the case for mazes made by
    :meth:`Maze.init`). Pure and jittable; vmap it for batched states.
    """
    n = state.walls.shape[0]
    dist = distance_map(state.walls, state.goal).reshape(-1)[state.agent]
    return jnp.where(dist >= n * n, -1, dist).astype(jnp.int32)


class Maze(Domain):
    """A one-player grid maze generated in pure JAX from the ``init`` key.

    Generation (deterministic given the key): start and goal are two distinct
    cells drawn uniformly; every other cell is a wall with probability
    ``wall_density``. If the goal is unreachable (checked with a BFS flood
    fill), the walls are redrawn, up to 8 times in a ``lax.while_loop``;
    after that an L-shaped corridor (along the start's row, then the goal's
    column) is carved, so every maze is solvable. Shapes stay static.

    * Actions: ``4`` = up, down, left, right.
    * Legal moves: moves that stay on the grid and do not enter a wall (the
      mask is never empty before the end because the start has a path to the
      goal). Taking a masked move is well defined: the agent stays in place,
      and it still costs ``-1`` and counts a step.
    * Reward: ``-1`` per move; ``terminated`` when the agent reaches the goal.
      ``reward_range = (-1, 0)``, ``discount = 1``. The optimal return from
      ``init`` is ``-shortest_path_length(state)``.
    * Observation: ``[size, size, 3]`` float32 planes: walls, agent, goal.
    * ``max_episode_steps`` defaults to ``4 * size * size``.

    Args:
      size: side ``N`` of the square grid (>= 2).
      wall_density: probability that a cell (other than start/goal) is a wall.
      max_episode_steps: truncation horizon; ``None`` means ``4 * size**2``.
    """

    name = "maze"
    num_actions = 4
    num_players = 1
    reward_range = (-1.0, 0.0)
    discount = 1.0

    def __init__(self, size: int = 7, wall_density: float = 0.3,
                 max_episode_steps: Optional[int] = None):
        if size < 2:
            raise ValueError(f"Maze size must be >= 2, got {size}")
        if not 0.0 <= wall_density < 1.0:
            raise ValueError(
                f"wall_density must be in [0, 1), got {wall_density}")
        self.size = int(size)
        self.wall_density = float(wall_density)
        self.max_episode_steps = int(
            4 * size * size if max_episode_steps is None else max_episode_steps)
        self.observation_shape = (self.size, self.size, 3)

    # -- protocol -----------------------------------------------------------

    def init(self, key: chex.PRNGKey) -> MazeState:
        """A fresh solvable maze; the same ``key`` always gives the same maze."""
        n = self.size
        k_start, k_offset, k_walls = jax.random.split(key, 3)
        start = jax.random.randint(k_start, (), 0, n * n, jnp.int32)
        offset = jax.random.randint(k_offset, (), 1, n * n, jnp.int32)
        goal = (start + offset) % (n * n)

        def draw(k):
            walls = jax.random.uniform(k, (n * n,)) < self.wall_density
            walls = walls.at[start].set(False).at[goal].set(False)
            walls = walls.reshape(n, n)
            solvable = distance_map(walls, goal).reshape(-1)[start] < n * n
            return walls, solvable

        def retry(carry):
            k, _, _, tries = carry
            k, sub = jax.random.split(k)
            walls, solvable = draw(sub)
            return k, walls, solvable, tries + 1

        def unsolved(carry):
            _, _, solvable, tries = carry
            return ~solvable & (tries < _MAX_TRIES)

        _, walls, solvable, _ = jax.lax.while_loop(
            unsolved, retry, (k_walls, jnp.zeros((n, n), bool),
                              jnp.bool_(False), jnp.int32(0)))
        walls = jnp.where(solvable, walls, walls & ~_corridor(n, start, goal))

        return MazeState(
            observation=self._observation(walls, start, goal),
            legal_action_mask=self._legal_moves(walls, start),
            reward=jnp.float32(0.0),
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            current_player=jnp.int32(0),
            step_count=jnp.int32(0),
            walls=walls,
            agent=start,
            goal=goal,
        )

    def step(self, state: MazeState, action: chex.Array) -> MazeState:
        """Moves the agent by ``action`` (int32 scalar in ``[0, 4)``)."""
        action = jnp.asarray(action, jnp.int32)
        ended = state.terminated | state.truncated
        target, ok = self._neighbour(state.walls, state.agent, action)
        agent = jnp.where(ok, target, state.agent)
        terminated = agent == state.goal
        step_count = state.step_count + 1
        truncated = (step_count >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        new = state.replace(
            observation=self._observation(state.walls, agent, state.goal),
            legal_action_mask=jnp.where(
                done, True, self._legal_moves(state.walls, agent)),
            reward=jnp.float32(-1.0),
            terminated=terminated,
            truncated=truncated,
            step_count=step_count,
            agent=agent,
        )
        return select_state(ended, state.replace(reward=jnp.float32(0.0)), new)

    # -- helpers ------------------------------------------------------------

    def _neighbour(self, walls: chex.Array, cell: chex.Array,
                   action: chex.Array):
        """The cell reached by ``action`` from ``cell`` and whether it is free.

        Returns ``([] int32 cell, [] bool ok)``; vectorizes over ``action``.
        """
        n = self.size
        deltas = jnp.asarray(_DELTAS)[action]
        r = cell // n + deltas[..., 0]
        c = cell % n + deltas[..., 1]
        inside = (r >= 0) & (r < n) & (c >= 0) & (c < n)
        target = jnp.clip(r, 0, n - 1) * n + jnp.clip(c, 0, n - 1)
        free = ~walls.reshape(-1)[target]
        return target, inside & free

    def _legal_moves(self, walls: chex.Array, cell: chex.Array) -> chex.Array:
        """``[4]`` bool moves from ``cell`` that stay on free cells.

        Falls back to all True if no move is possible (never the case in a
        generated maze) so that the mask is never empty.
        """
        _, ok = self._neighbour(walls, cell, jnp.arange(4, dtype=jnp.int32))
        return jnp.where(jnp.any(ok), ok, True)

    def _observation(self, walls: chex.Array, agent: chex.Array,
                     goal: chex.Array) -> chex.Array:
        """``[N, N, 3]`` float32 planes: walls, agent one-hot, goal one-hot."""
        n = self.size
        cells = jnp.arange(n * n, dtype=jnp.int32).reshape(n, n)
        return jnp.stack([walls, cells == agent, cells == goal],
                         axis=-1).astype(jnp.float32)

    def shortest_path_length(self, state: MazeState) -> chex.Array:
        """Same as the module-level :func:`shortest_path_length`."""
        return shortest_path_length(state)

    def render(self, state: MazeState) -> str:
        """``size`` lines: ``#`` wall, ``A`` agent, ``G`` goal, ``.`` free."""
        state = jax.device_get(state)
        walls = np.asarray(state.walls)
        n = walls.shape[0]
        agent, goal = int(state.agent), int(state.goal)
        lines = []
        for r in range(n):
            row = []
            for c in range(n):
                x = r * n + c
                row.append("A" if x == agent else "G" if x == goal
                           else "#" if walls[r, c] else ".")
            lines.append("".join(row))
        return "\n".join(lines)


def _corridor(n: int, start: chex.Array, goal: chex.Array) -> chex.Array:
    """``[N, N]`` bool L-shaped path: along the start's row to the goal's
    column, then along that column to the goal."""
    rows = jnp.arange(n, dtype=jnp.int32)[:, None]
    cols = jnp.arange(n, dtype=jnp.int32)[None, :]
    rs, cs = start // n, start % n
    rg, cg = goal // n, goal % n
    horizontal = (rows == rs) & (cols >= jnp.minimum(cs, cg)) & (
        cols <= jnp.maximum(cs, cg))
    vertical = (cols == cg) & (rows >= jnp.minimum(rs, rg)) & (
        rows <= jnp.maximum(rs, rg))
    return horizontal | vertical
