"""mctx_planner: planning with learned models in JAX.

Batched MuZero / AlphaZero / Gumbel / Stochastic MuZero search over DeepMind's
mctx, a pure-JAX domain protocol with built-in domains, Flax networks, and an
on-device self-play training loop. See README.md and docs/.
"""

from mctx_planner import domains
from mctx_planner._cpu_tasks import single_task_compile
from mctx_planner._memory import retain_freed_memory
from mctx_planner.config import TrainConfig, apply_overrides, preset
from mctx_planner.domains import (Domain, StochasticDomain, Symmetry, make as make_domain,
                                  select_state)
from mctx_planner.evaluate import (ArenaResult, AuditResult, EpisodeStats, Player,
                                   alphabeta_player, arena, audit_tictactoe,
                                   evaluate_single_player, evaluation_config,
                                   greedy_one_step_player, init_batch,
                                   pure_search_player, random_player, search_player,
                                   tictactoe_solver_player)
from mctx_planner.explanation import explain, principal_line, to_dot
from mctx_planner.losses import LossConfig, alphazero_loss, muzero_loss
from mctx_planner.networks import (AlphaZeroNet, MuZeroNet, NetworkConfig,
                                   init_params)
from mctx_planner.plotting import plot_learning_curves, plot_search_tree
from mctx_planner.replay import Replay, ReplayState, make_replay
from mctx_planner.search import (PlanOutput, Planner, RootInput, SearchConfig,
                                 SearchModel, gpu_loop_graphs, learned_model, make_planner,
                                 native_cpu_kernels, network_predict_fn, true_model,
                                 uniform_predict_fn)
from mctx_planner.selfplay import Trajectory, init_states, rollout
from mctx_planner.targets import Example, make_examples, value_targets
from mctx_planner.testing import DomainCheckError, check_domain
from mctx_planner.train import Agent, TrainState, make_agent, search_config, shard_state
from mctx_planner.trainer import (TrainResult, evaluate_agent, load_run, maze_optimality,
                                  network_action_fn, train)
from mctx_planner.topk import top_k
from mctx_planner.transforms import Support, signed_hyperbolic, signed_parabolic

__version__ = "0.1.0"

__all__ = (
    "Agent",
    "AlphaZeroNet",
    "ArenaResult",
    "AuditResult",
    "Domain",
    "DomainCheckError",
    "EpisodeStats",
    "Example",
    "LossConfig",
    "MuZeroNet",
    "NetworkConfig",
    "PlanOutput",
    "Planner",
    "Player",
    "Replay",
    "ReplayState",
    "RootInput",
    "SearchConfig",
    "SearchModel",
    "StochasticDomain",
    "Symmetry",
    "Support",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trajectory",
    "alphabeta_player",
    "alphazero_loss",
    "apply_overrides",
    "arena",
    "audit_tictactoe",
    "check_domain",
    "domains",
    "evaluate_agent",
    "evaluate_single_player",
    "evaluation_config",
    "explain",
    "gpu_loop_graphs",
    "greedy_one_step_player",
    "init_batch",
    "init_params",
    "init_states",
    "learned_model",
    "load_run",
    "make_agent",
    "make_domain",
    "make_examples",
    "make_planner",
    "make_replay",
    "maze_optimality",
    "muzero_loss",
    "native_cpu_kernels",
    "network_action_fn",
    "network_predict_fn",
    "plot_learning_curves",
    "plot_search_tree",
    "preset",
    "principal_line",
    "pure_search_player",
    "random_player",
    "retain_freed_memory",
    "rollout",
    "search_config",
    "search_player",
    "select_state",
    "shard_state",
    "signed_hyperbolic",
    "signed_parabolic",
    "single_task_compile",
    "tictactoe_solver_player",
    "to_dot",
    "top_k",
    "train",
    "true_model",
    "uniform_predict_fn",
    "value_targets",
)
