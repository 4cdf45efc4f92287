"""Typed training configuration, presets per domain, and command-line overrides.

One frozen :class:`TrainConfig` describes a run completely (it is saved with
every checkpoint). :func:`preset` returns the tuned defaults for a domain and
algorithm; :func:`apply_overrides` applies ``key=value`` strings from the
command line, rejecting unknown keys and invalid values with a message that
names the field.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Dict, Optional, Sequence, Tuple

from mctx_planner.networks import NetworkConfig
from mctx_planner.transforms import Support

ALGORITHMS = ("alphazero", "gumbel_alphazero", "muzero", "gumbel_muzero",
              "stochastic_muzero")
#: algorithm -> (search algorithm, learned model?)
ALGORITHM_SEARCH = {
    "alphazero": ("muzero", False),
    "gumbel_alphazero": ("gumbel_muzero", False),
    "muzero": ("muzero", True),
    "gumbel_muzero": ("gumbel_muzero", True),
    "stochastic_muzero": ("stochastic_muzero", True),
}


def _as_train_config_message(error: Exception) -> str:
    """A :class:`~mctx_planner.search.SearchConfig` error's message, naming the
    :class:`TrainConfig` fields that set those values."""
    message = str(error).replace("SearchConfig.backend", "TrainConfig.search_backend")
    return message.replace("SearchConfig.", "TrainConfig.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run.

    Attributes:
      domain: a registered domain name: a built-in (``tictactoe``,
        ``connect4``, ``maze``, ``2048``, ``knowledge_graph``,
        ``recommendation``) or one added with
        :func:`mctx_planner.domains.register`.
      domain_kwargs: constructor arguments of the domain, as ``((name, value), ...)``.
      algorithm: one of ``alphazero`` (true model, PUCT), ``gumbel_alphazero``
        (true model, Gumbel), ``muzero`` (learned model, PUCT),
        ``gumbel_muzero`` (learned model, Gumbel), ``stochastic_muzero``
        (learned model with chance nodes; stochastic domains).
      seed: master seed; every key of the run derives from it.
      iterations: compiled iterations to run (self-play chunk + updates each).
      num_envs: ``B``, parallel self-play episodes.
      unroll_length: ``T``, self-play steps per iteration.
      num_simulations: search simulations per move in self-play.
      max_num_considered_actions: Gumbel root width.
      dirichlet_alpha, dirichlet_fraction, temperature: PUCT exploration.
      pb_c_init, pb_c_base: PUCT constants (MuZero, Appendix B).
      gumbel_scale: scale of the Gumbel root noise in self-play (evaluation
        always uses 0).
      qtransform: Q-transform of the search (see
        :class:`~mctx_planner.search.SearchConfig`): ``"default"``,
        ``"parent_and_siblings"``, ``"completed_by_mix_value"`` or
        ``"min_max"`` (with values bounded in ``[-1, 1]``).
      value_scale, maxvisit_init: completed-Q constants (Gumbel MuZero, eq. 8).
      max_depth: maximum search-tree depth (None = unbounded).
      search_backend: ``"auto"`` (default: ``"fast"`` on CPU and GPU and
        with ``mesh``, ``"mctx"`` on other platforms such as TPU, where the
        fast backend is not measured), ``"fast"`` (the library's batched
        backend, same results as mctx; 1.2x to 47x quicker than mctx on CPU;
        1.08x to 4.5x on an H200) or
        ``"mctx"`` (the reference). See ``SearchConfig.backend`` and
        docs/benchmarks.md.
      opening_moves: self-play episodes start after a random number (0..k)
        of random legal moves, to cover positions self-play rarely reaches.
      eval_simulations: simulations per move in evaluation (temperature 0,
        no noise).
      eval_search_algorithm: the search that evaluation, ``mctx-planner
        eval`` and ``play`` use: None (the training algorithm's search),
        ``"muzero"`` (PUCT) or ``"gumbel_muzero"``. Both read the same
        network, so a net trained with Gumbel's few-simulation policy
        improvement can play with PUCT at many simulations (measured on
        Connect Four in docs/benchmarks.md). ``stochastic_muzero`` runs
        evaluate with their own search only.
      num_unroll_steps: ``K`` of the MuZero unroll (ignored by AlphaZero).
      td_steps: ``n`` of the n-step value target; None = Monte Carlo.
      discount: one-player discount; None = the domain's.
      replay_capacity: examples the replay holds (``B * L``).
      prioritized: prioritized replay.
      augment_symmetries: show each sampled example in a random symmetric
        frame of the domain (:meth:`~mctx_planner.domains.Domain.symmetries`;
        deterministic domains that list symmetries only).
      batch_size: examples per gradient update.
      updates_per_iteration: gradient updates per iteration.
      learning_rate, warmup_steps, weight_decay, max_grad_norm: optax
        adamw with linear warmup then cosine decay to 10%, global-norm clipping.
      value_weight, reward_weight: loss weights.
      reanalyze_fraction: share of every batch whose first policy target is
        recomputed by a fresh search with the target network (MuZero
        Reanalyse). Learned models search from the stored observation; true
        models (AlphaZero) from the stored domain state, which the replay
        then keeps for every example. 0 = off.
      target_update_interval: gradient updates between refreshes of the
        target network (0 = the target network is the online network).
      network: :class:`~mctx_planner.networks.NetworkConfig`.
      eval_every: iterations between evaluations (0 = only at the end).
      eval_games: games (or episodes) per evaluation.
      checkpoint_every: iterations between checkpoints (0 = only at the end).
    """

    domain: str = "tictactoe"
    domain_kwargs: Tuple[Tuple[str, Any], ...] = ()
    algorithm: str = "gumbel_alphazero"
    seed: int = 0
    iterations: int = 60
    num_envs: int = 128
    unroll_length: int = 16
    num_simulations: int = 16
    max_num_considered_actions: int = 16
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.25
    temperature: float = 1.0
    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    gumbel_scale: float = 1.0
    qtransform: str = "default"
    value_scale: float = 0.1
    maxvisit_init: float = 50.0
    max_depth: Optional[int] = None
    search_backend: str = "auto"
    opening_moves: int = 0
    eval_simulations: int = 16
    eval_search_algorithm: Optional[str] = None
    num_unroll_steps: int = 5
    td_steps: Optional[int] = None
    discount: Optional[float] = None
    replay_capacity: int = 32768
    prioritized: bool = False
    augment_symmetries: bool = False
    batch_size: int = 256
    updates_per_iteration: int = 8
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    value_weight: float = 1.0
    reward_weight: float = 1.0
    reanalyze_fraction: float = 0.0
    target_update_interval: int = 0
    network: NetworkConfig = NetworkConfig()
    eval_every: int = 0
    eval_games: int = 200
    checkpoint_every: int = 10

    def __post_init__(self):
        def bad(field, expected):
            raise ValueError(f"TrainConfig.{field} must be {expected}, got "
                             f"{getattr(self, field)!r}")
        from mctx_planner.domains import registered  # pylint: disable=g-import-not-at-top
        if self.domain not in registered():
            bad("domain", f"a registered domain, one of {registered()}")
        if self.algorithm not in ALGORITHMS:
            bad("algorithm", f"one of {ALGORITHMS}")
        for field in ("iterations", "num_envs", "unroll_length", "num_simulations",
                      "max_num_considered_actions", "eval_simulations",
                      "replay_capacity", "batch_size", "updates_per_iteration",
                      "eval_games"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(field, "an int >= 1")
        for field in ("num_unroll_steps", "warmup_steps", "eval_every",
                      "checkpoint_every", "opening_moves", "target_update_interval"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                bad(field, "an int >= 0")
        if self.td_steps is not None and (not isinstance(self.td_steps, int)
                                          or self.td_steps < 1):
            bad("td_steps", "None (Monte Carlo) or an int >= 1")
        if self.discount is not None and not 0 < self.discount <= 1:
            bad("discount", "None or in (0, 1]")
        if not 0 <= self.reanalyze_fraction <= 1:
            bad("reanalyze_fraction", "in [0, 1]")
        if not self.learning_rate > 0:
            bad("learning_rate", "> 0")
        if not self.weight_decay >= 0:
            bad("weight_decay", ">= 0")
        if not self.max_grad_norm > 0:
            bad("max_grad_norm", "> 0")
        if not 0 <= self.dirichlet_fraction <= 1:
            bad("dirichlet_fraction", "in [0, 1]")
        if not self.dirichlet_alpha > 0:
            bad("dirichlet_alpha", "> 0")
        if not self.temperature >= 0:
            bad("temperature", ">= 0")
        if self.replay_capacity < self.num_envs * self.unroll_length:
            bad("replay_capacity",
                f">= num_envs * unroll_length = {self.num_envs * self.unroll_length}")
        if self.algorithm in ("muzero", "gumbel_muzero", "stochastic_muzero") \
                and self.num_unroll_steps < 1:
            bad("num_unroll_steps", ">= 1 for MuZero algorithms")
        if not isinstance(self.network, NetworkConfig):
            bad("network", "a NetworkConfig")
        if self.eval_search_algorithm is not None:
            allowed = (("stochastic_muzero",) if self.algorithm == "stochastic_muzero"
                       else ("muzero", "gumbel_muzero"))
            if self.eval_search_algorithm not in allowed:
                bad("eval_search_algorithm",
                    f"None or one of {allowed} for algorithm {self.algorithm!r}")
        # The search fields are checked by SearchConfig; report them as ours.
        from mctx_planner.search import SearchConfig  # pylint: disable=g-import-not-at-top
        try:
            SearchConfig(**self.search_fields())
        except ValueError as e:
            raise ValueError(_as_train_config_message(e)) from None

    def search_fields(self) -> Dict[str, Any]:
        """The :class:`~mctx_planner.search.SearchConfig` fields shared by
        self-play and evaluation (``backend`` from ``search_backend``)."""
        return dict(
            algorithm=self.search_algorithm,
            max_num_considered_actions=self.max_num_considered_actions,
            pb_c_init=self.pb_c_init, pb_c_base=self.pb_c_base,
            qtransform=self.qtransform, value_scale=self.value_scale,
            maxvisit_init=self.maxvisit_init, max_depth=self.max_depth,
            backend=self.search_backend)

    @property
    def search_algorithm(self) -> str:
        return ALGORITHM_SEARCH[self.algorithm][0]

    @property
    def eval_search(self) -> str:
        """The search algorithm of evaluation (``eval_search_algorithm`` or
        the training algorithm's)."""
        return self.eval_search_algorithm or self.search_algorithm

    @property
    def learned_model(self) -> bool:
        return ALGORITHM_SEARCH[self.algorithm][1]

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["domain_kwargs"] = dict(self.domain_kwargs)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        net = dict(d.get("network", {}))
        for name in ("value_support", "reward_support"):
            if isinstance(net.get(name), dict):
                net[name] = Support(**net[name])
        d["network"] = NetworkConfig(**net)
        d["domain_kwargs"] = tuple(sorted(dict(d.get("domain_kwargs", {})).items()))
        return cls(**d)


def _net(**kw) -> NetworkConfig:
    return NetworkConfig(**kw)


# Tuned defaults. Each entry: (domain, algorithm) -> overrides of TrainConfig.
_PRESETS: Dict[Tuple[str, str], Dict[str, Any]] = {
    ("tictactoe", "gumbel_alphazero"): dict(
        iterations=60, num_envs=256, unroll_length=16, num_simulations=32,
        eval_simulations=32, batch_size=256, updates_per_iteration=32,
        learning_rate=3e-3, replay_capacity=32768, opening_moves=5,
        network=_net(hidden_size=64, num_layers=2,
                     value_support=Support(size=1, transform=False))),
    ("tictactoe", "alphazero"): dict(
        iterations=60, num_envs=128, unroll_length=16, num_simulations=32,
        eval_simulations=32, batch_size=256, updates_per_iteration=8,
        replay_capacity=16384,
        network=_net(hidden_size=64, num_layers=2,
                     value_support=Support(size=1, transform=False))),
    ("tictactoe", "muzero"): dict(
        iterations=120, num_envs=256, unroll_length=16, num_simulations=32,
        eval_simulations=96, num_unroll_steps=3, batch_size=256,
        updates_per_iteration=32, replay_capacity=65536, opening_moves=5,
        dirichlet_fraction=0.25, temperature=1.0,
        network=_net(hidden_size=128, num_layers=2, latent_size=64,
                     value_support=Support(size=1, transform=False),
                     reward_support=Support(size=1, transform=False))),
    ("tictactoe", "gumbel_muzero"): dict(
        iterations=120, num_envs=256, unroll_length=16, num_simulations=32,
        eval_simulations=64, num_unroll_steps=5, batch_size=256,
        updates_per_iteration=32, replay_capacity=65536, opening_moves=5,
        network=_net(hidden_size=128, num_layers=2, latent_size=64,
                     value_support=Support(size=1, transform=False),
                     reward_support=Support(size=1, transform=False))),
    # MLP torso: on CPU the ResNet torso is ~80x slower per iteration
    # (measured: 95 s vs 1.2 s for 256 envs x 16 steps x 32 simulations).
    # 4-step targets from the improved value, mirror augmentation, 64 updates
    # per iteration (each example sampled ~4 times): 26 min on a 2-core CPU.
    # Self-play searches with Gumbel at 32 simulations; evaluation with PUCT
    # at 1024, which was stronger and steadier across seeds than Gumbel at
    # 256 to 1024 (docs/benchmarks.md).
    ("connect4", "gumbel_alphazero"): dict(
        iterations=1800, num_envs=256, unroll_length=32, num_simulations=32,
        eval_simulations=1024, eval_search_algorithm="muzero",
        td_steps=4, augment_symmetries=True,
        batch_size=512, updates_per_iteration=64,
        replay_capacity=262144, learning_rate=2e-3, opening_moves=2,
        network=_net(hidden_size=256, num_layers=3,
                     value_support=Support(size=1, transform=False))),
    ("maze", "muzero"): dict(
        iterations=200, num_envs=128, unroll_length=32, num_simulations=32,
        eval_simulations=32, num_unroll_steps=5, td_steps=10,
        batch_size=256, updates_per_iteration=16, replay_capacity=65536,
        network=_net(hidden_size=128, latent_size=64,
                     value_support=Support(size=20), reward_support=Support(size=2))),
    # One-step targets bootstrapped from the improved policy's value: longer
    # n-step returns carry the exploring self-play policy's detours into the
    # value (td 10 / 3 / 1 at 700 iterations: 93-94% / 95.6% / 96.6% optimal).
    # This preset: 99.2% optimal on 500 held-out 7x7 mazes (16 min on 2 cores).
    ("maze", "gumbel_alphazero"): dict(
        iterations=1800, num_envs=128, unroll_length=32, num_simulations=32,
        eval_simulations=64, td_steps=1, batch_size=256,
        updates_per_iteration=16, replay_capacity=65536,
        network=_net(hidden_size=256, num_layers=3, value_support=Support(size=20))),
    ("2048", "stochastic_muzero"): dict(
        domain_kwargs=(("size", 3),), iterations=150, num_envs=128,
        unroll_length=32, num_simulations=16, eval_simulations=16,
        num_unroll_steps=3, td_steps=10, discount=0.997, batch_size=256,
        updates_per_iteration=16, replay_capacity=65536,
        network=_net(hidden_size=128, latent_size=64,
                     value_support=Support(size=30), reward_support=Support(size=10))),
}

DEFAULT_ALGORITHM = {"tictactoe": "gumbel_alphazero", "connect4": "gumbel_alphazero",
                     "maze": "gumbel_alphazero", "2048": "stochastic_muzero"}


def preset(domain: str = "tictactoe", algorithm: Optional[str] = None) -> TrainConfig:
    """The tuned config for ``domain`` and ``algorithm`` (default per domain).

    Combinations without a tuned entry start from the nearest entry of the
    same domain with the algorithm replaced.
    """
    algorithm = algorithm or DEFAULT_ALGORITHM.get(domain, "gumbel_alphazero")
    overrides = _PRESETS.get((domain, algorithm))
    if overrides is None:
        same_domain = [v for (d, _), v in _PRESETS.items() if d == domain]
        overrides = dict(same_domain[0]) if same_domain else {}
    return TrainConfig(domain=domain, algorithm=algorithm, **overrides)


def _accepts_none(cls, name: str) -> bool:
    """Whether dataclass field ``cls.name`` is declared ``Optional[...]``."""
    return type(None) in typing.get_args(typing.get_type_hints(cls).get(name))


def _parse_value(text: str, current: Any, field: str, optional: bool = False) -> Any:
    if optional or current is None or (isinstance(current, (int, float))
                                       and not isinstance(current, bool)):
        if text.lower() == "none":
            return None
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"{field} must be true or false, got {text!r}")
    try:
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
    except ValueError:
        raise ValueError(f"{field} must be a {type(current).__name__}, got {text!r}") from None
    if current is None:
        for cast in (int, float):
            try:
                return cast(text)
            except ValueError:
                pass
    return text


def apply_overrides(config: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """Applies ``["field=value", "network.hidden_size=128", ...]`` to a config."""
    top: Dict[str, Any] = {}
    net: Dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like field=value")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key.startswith("network."):
            name = key.split(".", 1)[1]
            if name not in {f.name for f in dataclasses.fields(NetworkConfig)}:
                raise ValueError(f"unknown field network.{name}")
            net[name] = _parse_value(text, getattr(config.network, name),
                                     f"network.{name}",
                                     _accepts_none(NetworkConfig, name))
        elif key.startswith("domain."):
            kwargs = dict(config.domain_kwargs)
            name = key.split(".", 1)[1]
            kwargs[name] = _parse_value(text, kwargs.get(name), key)
            top["domain_kwargs"] = tuple(sorted(kwargs.items()))
            config = config.replace(domain_kwargs=top["domain_kwargs"])
        else:
            fields = {f.name for f in dataclasses.fields(TrainConfig)}
            if key not in fields:
                raise ValueError(f"unknown TrainConfig field {key!r}; known: "
                                 f"{sorted(fields)}")
            top[key] = _parse_value(text, getattr(config, key), key,
                                    _accepts_none(TrainConfig, key))
    if net:
        top["network"] = dataclasses.replace(config.network, **net)
    return config.replace(**top)
