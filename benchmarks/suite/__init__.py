"""Helpers of ``benchmarks/run_suite.py``, the one-command benchmark suite.

* :mod:`suite.common`: devices, machine description, per-device JSON files;
* :mod:`suite.search_bench`: search throughput, compile time and memory of
  raw mctx and the ``fast`` backend (on ``search_overhead.py``'s MLP);
* :mod:`suite.train_bench`: self-play steps/s and updates/s of the training
  presets;
* :mod:`suite.report`: the merged markdown table and the plots.
"""
