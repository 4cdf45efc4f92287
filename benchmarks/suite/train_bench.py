"""Self-play steps/s and training updates/s of the training presets.

For a preset (``mctx_planner.config._PRESETS``) on one device this builds the
agent (``train.make_agent``), places its initial state on the device and
compiles (``lower(...).compile()``) three programs:

* ``iteration``: the jitted ``agent.iteration`` with the preset's
  ``updates_per_iteration`` U -- self-play of ``num_envs * unroll_length``
  steps, example construction, replay write and U gradient updates, exactly
  as training runs it;
* ``iteration_more``: the same with ``updates_per_iteration = factor * U``
  (an agent built from the preset with that one override);
* ``self-play``: ``mctx_planner.rollout`` with the agent's own planner
  (``agent.planner.search``), the same ``num_envs``, ``unroll_length`` and
  ``opening_moves`` -- the self-play part of the iteration, jitted on its own.

``train.py`` does not expose the update step by itself, so the update time is
measured by difference: per timed round, ``(iteration_more - iteration) /
((factor - 1) * U)``, the median over rounds (paired, so that load changes
between rounds cancel). Each program gets one warm-up call first (the first
iteration after compilation), then ``iterations`` timed rounds call each once,
the order rotating. Reported:

* ``selfplay_steps_per_s = num_envs * unroll_length / median(self-play)``;
* ``updates_per_s = 1 / update_s`` (None when the difference is not
  positive, i.e. lost in noise) and ``learn_share``, the updates' share of
  the preset's iteration;
* ``iteration_env_steps_per_s`` and ``iteration_updates_per_s``: end to end,
  steps and updates of the preset's iteration over its median time.
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from mctx_planner import config as config_lib
from mctx_planner.selfplay import rollout
from mctx_planner.train import _unshare_buffers, make_agent

#: The suite's presets: each domain's default algorithm plus tic-tac-toe
#: Gumbel MuZero (the learned-model tic-tac-toe preset).
DEFAULT_PRESETS = (
    ("tictactoe", "gumbel_alphazero"),
    ("tictactoe", "gumbel_muzero"),
    ("connect4", "gumbel_alphazero"),
    ("maze", "gumbel_alphazero"),
    ("2048", "stochastic_muzero"),
)


def preset_name(preset: Tuple[str, str]) -> str:
    return "%s/%s" % preset


def all_presets() -> List[Tuple[str, str]]:
    """Every tuned preset in ``config._PRESETS``."""
    return list(config_lib._PRESETS)  # pylint: disable=protected-access


def parse_presets(names: Sequence[str]) -> List[Tuple[str, str]]:
    """``["connect4", "tictactoe/gumbel_muzero", "all"]`` -> preset keys.

    A bare domain means its default algorithm; ``all`` every tuned preset.
    """
    out: List[Tuple[str, str]] = []
    for name in names:
        if name == "all":
            keys = all_presets()
        elif name == "default":
            keys = list(DEFAULT_PRESETS)
        else:
            domain, _, algorithm = name.partition("/")
            algorithm = algorithm or config_lib.DEFAULT_ALGORITHM.get(
                domain, "gumbel_alphazero")
            if (domain, algorithm) not in all_presets():
                raise ValueError("no preset %r; known: %s" % (
                    name, ", ".join(preset_name(k) for k in all_presets())))
            keys = [(domain, algorithm)]
        out += [k for k in keys if k not in out]
    return out


def memory_bytes(compiled) -> Dict[str, Optional[int]]:
    """XLA's buffer estimates of one call: ``mem_bytes`` = temp + output;
    ``peak_bytes`` = arguments + temp + output - the output bytes written into
    donated arguments (``agent.iteration`` donates its state), i.e. what is
    live during the call, the input state included."""
    try:
        mem = compiled.memory_analysis()
        temp, output = int(mem.temp_size_in_bytes), int(mem.output_size_in_bytes)
        args, alias = int(mem.argument_size_in_bytes), int(mem.alias_size_in_bytes)
        return dict(mem_bytes=temp + output, argument_bytes=args, alias_bytes=alias,
                    peak_bytes=args + temp + output - alias)
    except Exception:  # pylint: disable=broad-except
        return dict(mem_bytes=None, argument_bytes=None, alias_bytes=None,
                    peak_bytes=None)


def _compile(jitted, *args):
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t0


def run_preset(preset: Tuple[str, str], device, iterations: int = 3,
               overrides: Sequence[str] = (), factor: int = 4) -> Dict[str, Any]:
    """Measures one preset on ``device`` (see the module docstring).

    Args:
      preset: ``(domain, algorithm)``, a key of ``config._PRESETS``.
      device: the ``jax.Device`` to run on.
      iterations: timed rounds after the warm-up call.
      overrides: ``field=value`` strings applied to the preset.
      factor: ``iteration_more`` runs ``factor`` times the preset's updates.

    Returns:
      One record: the config sizes, compile and first-call times, per-round
      times, medians, the derived rates and XLA's memory estimate of the
      preset's iteration.
    """
    cfg = config_lib.apply_overrides(config_lib.preset(*preset), list(overrides))
    U = cfg.updates_per_iteration
    more = cfg.replace(updates_per_iteration=factor * U)
    agent, agent_more = make_agent(cfg), make_agent(more)
    steps = cfg.num_envs * cfg.unroll_length
    play = jax.jit(functools.partial(rollout, agent.domain, agent.planner.search,
                                     num_steps=cfg.unroll_length,
                                     opening_moves=cfg.opening_moves))
    with jax.default_device(device):
        state = jax.device_put(agent.init(jax.random.PRNGKey(0)), device)
        # agent.iteration donates its input state: each variant gets its own.
        states = dict(iteration=state,
                      iteration_more=jax.tree.map(jnp.copy, state))
        keys = jax.device_put(jax.random.split(jax.random.PRNGKey(1), iterations + 1),
                              device)
        compiled, compile_s = {}, {}
        compiled["iteration"], compile_s["iteration"] = _compile(agent.iteration, state)
        compiled["iteration_more"], compile_s["iteration_more"] = _compile(
            agent_more.iteration, state)
        compiled["selfplay"], compile_s["selfplay"] = _compile(
            play, state.params, state.env_states, keys[0])

        def call(name, i):
            if name == "selfplay":
                s = states["iteration"]
                return _timed(compiled[name], s.params, s.env_states, keys[i])[1]
            # The compiled iteration donates its state, and JAX cannot donate
            # one buffer twice: give shared leaves (``init`` puts the
            # parameters in ``params`` and ``target_params``) their own copy,
            # as ``agent.iteration`` does before each call, outside the timing.
            state = jax.block_until_ready(_unshare_buffers(states[name]))
            (states[name], _), seconds = _timed(compiled[name], state)
            return seconds

        names = list(compiled)
        first = {name: call(name, 0) for name in names}
        times: Dict[str, List[float]] = {name: [] for name in names}
        for i in range(iterations):
            for name in names[i % 3:] + names[:i % 3]:
                times[name].append(call(name, i + 1))
    med = {name: statistics.median(t) for name, t in times.items()}
    update_s = statistics.median(
        (b - a) / ((factor - 1) * U)
        for a, b in zip(times["iteration"], times["iteration_more"]))
    ok = update_s > 0
    return dict(
        preset=preset_name(preset), domain=preset[0], algorithm=preset[1],
        overrides=list(overrides), num_envs=cfg.num_envs,
        unroll_length=cfg.unroll_length, num_simulations=cfg.num_simulations,
        search_algorithm=cfg.search_algorithm, updates_per_iteration=U,
        updates_more=factor * U, batch_size=cfg.batch_size,
        hidden_size=cfg.network.hidden_size, iterations_timed=iterations,
        status="ok",
        iteration_compile_s=compile_s["iteration"],
        iteration_more_compile_s=compile_s["iteration_more"],
        selfplay_compile_s=compile_s["selfplay"],
        first_iteration_s=first["iteration"], first_selfplay_s=first["selfplay"],
        iteration_s=med["iteration"], iteration_more_s=med["iteration_more"],
        selfplay_s=med["selfplay"], update_s=update_s,
        iteration_times_s=times["iteration"],
        iteration_more_times_s=times["iteration_more"],
        selfplay_times_s=times["selfplay"],
        selfplay_steps_per_s=steps / med["selfplay"],
        updates_per_s=1.0 / update_s if ok else None,
        examples_per_s=cfg.batch_size / update_s if ok else None,
        learn_share=U * update_s / med["iteration"] if ok else None,
        iteration_env_steps_per_s=steps / med["iteration"],
        iteration_updates_per_s=U / med["iteration"],
        **memory_bytes(compiled["iteration"]))
