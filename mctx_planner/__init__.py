"""mctx_planner: planning with learned models in JAX."""
__version__ = "0.1.0"
