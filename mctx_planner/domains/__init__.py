"""Domains: the protocol and the built-in decision problems.

Use :func:`make` to build a built-in domain by name::

    from mctx_planner import domains
    env = domains.make("maze", size=9)
"""
from typing import Any, Callable, Dict, Tuple

from mctx_planner.domains.base import (Domain, StochasticDomain, STATE_FIELDS, Symmetry,
                                       select_state)
from mctx_planner.domains.connect4 import ConnectFour
from mctx_planner.domains.game2048 import Game2048
from mctx_planner.domains.knowledge_graph import KnowledgeGraphWalk
from mctx_planner.domains.recommendation import Recommendation
from mctx_planner.domains.maze import Maze
from mctx_planner.domains.tictactoe import TicTacToe

_REGISTRY: Dict[str, Callable[..., Domain]] = {
    "tictactoe": TicTacToe,
    "connect4": ConnectFour,
    "maze": Maze,
    "2048": Game2048,
    "knowledge_graph": KnowledgeGraphWalk,
    "recommendation": Recommendation,
}

#: Names accepted by :func:`make`.
DOMAINS: Tuple[str, ...] = tuple(_REGISTRY)


def register(name: str, factory: Callable[..., Domain], *,
             overwrite: bool = False) -> None:
    """Makes a user domain available by name to :func:`make`, ``TrainConfig``
    and the ``mctx-planner`` command (e.g. ``--domain mygame`` after importing
    the module that registers it).

    Args:
      name: the name to register.
      factory: a Domain subclass or a function returning a Domain; it is
        called with the config's ``domain_kwargs``.
      overwrite: replace an existing entry (built-ins included).

    Raises:
      ValueError: ``name`` is taken and ``overwrite`` is False, or empty.
      TypeError: ``factory`` is not callable.
    """
    global DOMAINS
    if not isinstance(name, str) or not name:
        raise ValueError(f"domain name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory for {name!r} must be callable, got {factory!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"domain {name!r} is already registered; pass "
                         "overwrite=True to replace it")
    _REGISTRY[name] = factory
    DOMAINS = tuple(_REGISTRY)


def registered() -> Tuple[str, ...]:
    """Names :func:`make` accepts now (built-ins and registered domains)."""
    return tuple(_REGISTRY)


def make(name: str, **kwargs: Any) -> Domain:
    """Builds the domain registered as ``name`` with constructor ``kwargs``.

    Args:
      name: a built-in (``"tictactoe"``, ``"connect4"``, ``"maze"``,
        ``"2048"``, ``"knowledge_graph"``, ``"recommendation"``) or a name
        given to :func:`register`; :func:`registered` lists them all.
      **kwargs: passed to the domain's constructor (e.g. ``size=3`` for 2048).

    Raises:
      ValueError: if ``name`` is unknown (the message lists the known names).
    """
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown domain {name!r}; known domains: {', '.join(_REGISTRY)}"
        ) from None
    return factory(**kwargs)


__all__ = [
    "Domain",
    "StochasticDomain",
    "STATE_FIELDS",
    "Symmetry",
    "select_state",
    "TicTacToe",
    "ConnectFour",
    "Maze",
    "Game2048",
    "KnowledgeGraphWalk",
    "Recommendation",
    "DOMAINS",
    "make",
    "register",
    "registered",
]
