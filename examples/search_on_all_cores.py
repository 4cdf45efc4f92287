"""Search on every CPU core: one JAX device per core, the batch split over them.

XLA:CPU runs a search's tree steps (descent, backup) on one core: they are
too small to spread over threads. Asking JAX for one CPU device per core
(``jax.config.update("jax_num_cpu_devices", n)``, before JAX starts) and
giving the planner a mesh over them (``make_planner(..., mesh=mesh)``) runs
one independent search per core on its share of the batch, with the same
per-example keys as on one device. This script times Connect Four searches
(a randomly initialised network, so the numbers are about speed only) on one
device and split over all of them, for PUCT (muzero) and Gumbel search, and
checks that the split search chooses the actions of XLA's own partitioning
of the same sharded inputs.

Training uses the same mechanism: ``mctx-planner train --devices N``, or
``mp.train(config, mesh=mesh)`` (docs/concepts.md, "Several devices").

Run (about a minute on a 2-core CPU; ``--tiny`` takes seconds)::

    python examples/search_on_all_cores.py
    python examples/search_on_all_cores.py --tiny
"""

from __future__ import annotations

import os
import time

# Before anything starts JAX: one CPU device per core (at least two, so that
# the split is visible on any machine).
NUM_DEVICES = max(2, os.cpu_count() or 1)
# (JAX older than the `jax_num_cpu_devices` option, e.g. 0.4.30, reads the
# count from this XLA flag instead; it must be set before JAX is imported.)
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           f" --xla_force_host_platform_device_count={NUM_DEVICES}")

import jax  # noqa: E402  pylint: disable=g-import-not-at-top

try:
    jax.config.update("jax_num_cpu_devices", NUM_DEVICES)
except AttributeError:
    pass  # an older JAX: the XLA flag above does it

# pylint: disable=wrong-import-position
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import mctx_planner as mp
from mctx_planner.networks import NetworkConfig

from _common import example_parser


def _median_seconds(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = example_parser(__doc__, config_flags=False,
                            iterations_help="(unused: this example does not train)")
    args = parser.parse_args()
    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("batch",))
    # The batch must divide evenly over the devices.
    per_device, simulations, repeats, hidden = (
        (4, 4, 1, 16) if args.tiny else (max(1, 256 // len(devices)), 64, 5, 256))
    batch = per_device * len(devices)
    print(f"{len(devices)} devices: {devices}")

    domain = mp.make_domain("connect4")
    net = mp.AlphaZeroNet(domain.num_actions,
                          NetworkConfig(hidden_size=hidden, num_layers=2))
    params = mp.init_params(net, jax.random.PRNGKey(args.seed),
                            domain.observation_shape)
    model = mp.true_model(domain, mp.network_predict_fn(net))
    states = mp.init_states(domain, jax.random.PRNGKey(args.seed + 1), batch,
                            opening_moves=4)
    # The split search takes its inputs where they live; placing them on the
    # devices up front, as self-play does, saves a transfer per call.
    split_states = jax.device_put(states, NamedSharding(mesh, PartitionSpec("batch")))
    key = jax.random.PRNGKey(args.seed + 2)

    results = {}
    for algorithm in ("muzero", "gumbel_muzero"):
        config = mp.SearchConfig(algorithm=algorithm, num_simulations=simulations,
                                 backend="fast")
        one = mp.make_planner(model, config)
        split = mp.make_planner(model, config, mesh=mesh)
        t_one = _median_seconds(lambda: one.plan(params, key, states), repeats)
        t_split = _median_seconds(lambda: split.plan(params, key, split_states),
                                  repeats)
        action_split = np.asarray(split.plan(params, key, split_states).action)
        # The same sharded inputs without the mesh: XLA partitions the whole
        # search itself (slowly: its loops then synchronise the devices at
        # every step). The split search computes exactly that.
        action_auto = np.asarray(one.plan(params, key, split_states).action)
        action_one = np.asarray(one.plan(params, key, states).action)
        same_auto = float(np.mean(action_split == action_auto))
        same_one = float(np.mean(action_split == action_one))
        results[algorithm] = (t_one / t_split, same_auto)
        print(f"{algorithm:14s} B={batch} S={simulations}: one device "
              f"{t_one * 1e3:7.1f} ms, split over {len(devices)} "
              f"{t_split * 1e3:7.1f} ms ({t_one / t_split:.2f}x); same actions "
              f"as XLA's partitioning {same_auto:.0%}, as one device {same_one:.0%}")
    print("(One device computes the network on the whole batch, the split search "
          "on each device's share: the last bits of the floats can differ, and an "
          "untrained network's near-ties make such differences change trees.)")

    print("RESULT search_on_all_cores: devices=%d %s" % (len(devices), " ".join(
        f"{a}_speedup={s:.2f}x {a}_same_as_partitioned={same:.0%}"
        for a, (s, same) in results.items())))


if __name__ == "__main__":
    main()
