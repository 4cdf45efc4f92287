"""Search throughput, compile time and memory: raw mctx vs the ``fast`` backend.

One configuration = (policy, hidden H, actions A, batch B, simulations S) on
one device. It reuses ``search_overhead.py``'s plain-jnp MLP and helpers:

* ``network_only``: ``lax.scan`` of S calls of the same recurrent network on
  the same batch, no tree -- the floor a search cannot beat;
* ``mctx``: ``mctx.muzero_policy`` / ``mctx.gumbel_muzero_policy``;
* ``fast``: ``mctx_planner._fast_search``'s policies of the same name.

Each is jitted for the device (its inputs are ``jax.device_put`` there), its
compile time taken from ``lower(...).compile()`` and its peak memory from
XLA's ``compiled.memory_analysis()`` (temporaries + outputs); the three are
then timed interleaved (``search_overhead.time_interleaved``: a warm-up call,
then rounds that call each once, median). The result is one record per
backend; a backend the work guard skips gets a ``status="skipped"`` record.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, List, Optional

import jax

import search_overhead  # benchmarks/ is on sys.path (run_suite.py puts it there)

BACKENDS = ("mctx", "fast")
POLICIES = tuple(sorted(search_overhead.POLICIES))  # ("gumbel", "muzero", "stochastic")


@dataclasses.dataclass(frozen=True)
class SearchCase:
    """One cell of the search grid."""

    policy: str
    hidden: int
    actions: int
    batch: int
    sims: int

    @property
    def raw_work(self) -> int:
        """``B * S * S * A``: raw mctx's backup rewrites ``[B, S, A]`` arrays
        for each of the S simulations (``search_overhead.py --raw-max-work``)."""
        return self.batch * self.sims * self.sims * self.actions

    def label(self) -> str:
        return "%s H=%d A=%d B=%d S=%d" % (self.policy, self.hidden, self.actions,
                                           self.batch, self.sims)

    def fields(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def grid(policies, hidden, actions, batch, sims) -> List[SearchCase]:
    """Every combination, small networks and batches first."""
    return [SearchCase(p, h, a, b, s) for p in policies for h in hidden
            for a in actions for b in batch for s in sims]


def _placed_inputs(case: SearchCase, device):
    """Parameters, root and key of ``case``, committed to ``device``."""
    with jax.default_device(device):
        inputs = search_overhead.make_inputs(case.hidden, case.actions, case.batch)
    return jax.device_put(inputs, device)


def _search_fn(policy_fn, sims: int):
    def search(params, key, root):
        return policy_fn(params, key, root, search_overhead.recurrent_fn, sims)
    return search


def fast_cell(policy: str, actions: int, batch: int, sims: int, hidden: int):
    """``(search, (params, key, root))`` of one cell of the fast backend on
    ``search_overhead.py``'s MLP, for the A/B scripts (``single_task_ab.py``,
    ``native_ab.py``)."""
    params, root, key = search_overhead.make_inputs(hidden, actions, batch)
    return (_search_fn(search_overhead.POLICIES[policy][1], sims),
            (params, key, root))


def planner_cell(domain, algorithm: str, batch: int, sims: int):
    """``(planner, (params, key, states), domain)`` of a search through the
    planner over ``domain`` (a ``Domain``) with its true model and an
    untrained ``AlphaZeroNet`` (hidden 64, 2 layers), fast backend, for the
    A/B scripts (``native_ab.py``, ``topk_ab.py``)."""
    import mctx_planner as mp  # pylint: disable=g-import-not-at-top
    states = jax.vmap(domain.init)(jax.random.split(jax.random.PRNGKey(1), batch))
    net = mp.AlphaZeroNet(domain.num_actions,
                          mp.NetworkConfig(hidden_size=64, num_layers=2))
    params = mp.init_params(net, jax.random.PRNGKey(0), domain.observation_shape)
    planner = mp.make_planner(
        mp.true_model(domain, mp.network_predict_fn(net)),
        mp.SearchConfig(algorithm=algorithm, num_simulations=sims,
                        backend="fast"))
    return planner, (params, jax.random.PRNGKey(3), states), domain


def _identical(fast_out, raw_out) -> str:
    exact, close = search_overhead.outputs_identical(fast_out, raw_out)
    return "exact" if exact else "allclose" if close else "differs"


def run_case(case: SearchCase, device, backends=BACKENDS, budget_s: float = 3.0,
             raw_max_work: Optional[float] = None) -> List[Dict[str, Any]]:
    """Measures one configuration on ``device``; one record per backend.

    Args:
      case: the configuration.
      device: a ``jax.Device``; inputs are placed and the searches compiled
        and run there.
      backends: subset of :data:`BACKENDS`.
      budget_s: seconds of timed rounds (at least 3 rounds).
      raw_max_work: skip raw mctx where ``case.raw_work`` exceeds it (None:
        never skip).

    Returns:
      Records with the case's fields, ``backend``, ``status`` and, when
      measured, ``search_s``, ``sims_per_s``, ``net_s``, ``ratio_vs_net``,
      ``compile_s``, ``net_compile_s``, ``mem_bytes`` (XLA temp + output
      bytes) and for ``fast`` ``identical_to_mctx``.
    """
    raw_policy, fast_policy = search_overhead.POLICIES[case.policy]
    policy_fns = {"mctx": raw_policy, "fast": fast_policy}
    params, root, key = _placed_inputs(case, device)
    skipped = {}
    if ("mctx" in backends and raw_max_work is not None
            and case.raw_work > raw_max_work):
        skipped["mctx"] = ("raw work B*S*S*A = %.3g > --raw-max-work %.3g"
                           % (case.raw_work, raw_max_work))
    measured = [b for b in backends if b not in skipped]

    with jax.default_device(device):
        net, net_compile_s, _ = search_overhead.compile_fn(
            functools.partial(search_overhead.network_only,
                              num_simulations=case.sims, policy=case.policy),
            params, root)
        compiled, compile_s, mem = {}, {}, {}
        for backend in measured:
            single_task = search_overhead.fast_single_task(
                case.batch, case.sims, case.actions, device.platform, backend)
            compiled[backend], compile_s[backend], mem[backend] = (
                search_overhead.compile_fn(
                    _search_fn(policy_fns[backend], case.sims), params, key, root,
                    single_task=single_task))
        fns = [(net, (params, root))] + [(compiled[b], (params, key, root))
                                         for b in measured]
        times = search_overhead.time_interleaved(fns, budget_s)
        identical = None
        if "mctx" in compiled and "fast" in compiled:
            identical = _identical(compiled["fast"](params, key, root),
                                   compiled["mctx"](params, key, root))

    net_s = times[0]
    records = []
    for backend in backends:
        rec = dict(case.fields(), backend=backend, net_s=net_s,
                   net_compile_s=net_compile_s)
        if backend in skipped:
            rec.update(status="skipped", reason=skipped[backend])
        else:
            search_s = times[1 + measured.index(backend)]
            rec.update(status="ok", search_s=search_s,
                       sims_per_s=case.batch * case.sims / search_s,
                       ratio_vs_net=search_s / net_s, compile_s=compile_s[backend],
                       mem_bytes=mem[backend] if mem[backend] >= 0 else None)
            if backend == "fast" and identical is not None:
                rec["identical_to_mctx"] = identical
        records.append(rec)
    return records
