"""Command-line arguments naming one search cell: policy, actions A, batch B,
simulations S (plus the MLP width and a JSON output file).

Shared by the one-cell scripts `compaction_ab.py`, `exactness_probe.py` and
`mctx_partitioned.py`; `parse_cell` also by the many-cell `single_task_ab.py`
and `command_buffer_ab.py` (`--cells policy,A,B,S ...`).  Imports no JAX, so a script can parse its arguments
before it sets `XLA_FLAGS`.
"""

import argparse
from typing import Iterable, Sequence, Tuple


def add_cell_args(parser: argparse.ArgumentParser, *, required: bool = False,
                  example: str = "muzero 9 64 64") -> None:
    """Adds `--cell POLICY A B S`, `--hidden` and `--out` to `parser`."""
    parser.add_argument("--cell", nargs=4, metavar=("POLICY", "A", "B", "S"),
                        required=required,
                        help="the cell to measure (e.g. %s)" % example)
    parser.add_argument("--hidden", type=int, default=256, help="MLP width H")
    parser.add_argument("--out", help="also write the rows to this JSON file")


def parse_cell(parser: argparse.ArgumentParser, values: Sequence[str],
               policies: Iterable[str]) -> Tuple[str, int, int, int]:
    """`(policy, A, B, S)` from `--cell`'s values; a usage error (exit 2)
    naming the bad value otherwise."""
    policy, *numbers = values
    policies = sorted(policies)
    if policy not in policies:
        parser.error("--cell: POLICY must be one of %s, got %r" % (policies, policy))
    try:
        actions, batch, sims = (int(x) for x in numbers)
    except ValueError:
        parser.error("--cell: A, B and S must be integers, got %s" % " ".join(numbers))
    return policy, actions, batch, sims
