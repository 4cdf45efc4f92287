"""Peer 'fast' of the peers benchmark (see README.md): mctx_planner._fast_search.muzero_policy /
gumbel_muzero_policy, jitted, one process for the whole grid.

  python benchmarks/peers/peer_fast.py --json out.jsonl --work-dir DIR [grid args]

Run `--help` for the options; run_peers.py starts it with all of them.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax_peer  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  jax_peer.main("fast")
