"""Domains: the protocol and the built-in decision problems."""
from mctx_planner.domains.base import Domain, StochasticDomain, STATE_FIELDS
