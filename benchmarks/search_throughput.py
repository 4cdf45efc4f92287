"""Search throughput of the planner vs raw mctx, per algorithm, batch and budget.

For every algorithm (muzero, gumbel_muzero, stochastic_muzero), batch size B
and simulation budget S, on every JAX platform present (cpu always; gpu / tpu
when JAX sees one), this measures in one process, interleaving the variants:

* ``planner``: ``make_planner(learned_model(MuZeroNet(...)), config).plan`` --
  the library's public, checked, jitted entry point (backend "mctx");
* ``raw``: ``mctx.<algorithm>_policy`` called directly, under ``jax.jit``, with
  the same network, the same root / recurrent functions, the same root input,
  the same root (prior logits of illegal actions set to the dtype minimum, as
  the planner does) and the same ``search_key`` the planner hands to mctx;
* ``fast`` (when ``SearchConfig(backend="fast")`` works): the planner with the
  library's own batched search backend.

Reported per configuration: median wall time of N timed repeats after warm-up
(``block_until_ready``), simulations per second (``B * S / time``), the
wrapper's overhead ``planner / raw`` (target <= 1.05; both the ratio of the
medians and the median of the per-round ratios), whether planner and raw (and
fast and raw) chose identical actions, and compile time (first call minus the
steady-state median; the planner's first call also runs its input checks).

``--decompose`` adds three variants that split the overhead into its parts:
``search_jit`` (``jax.jit(planner.search)``: the planner's graph without the
Python-side input-signature check of ``plan``), ``raw_split`` (raw plus the
planner's ``jax.random.split`` of the key: the planner's graph minus its output
packaging) and ``raw_unmasked`` (raw without the root-logit masking, i.e.
plain mctx masking from ``invalid_actions`` alone; its actions are compared
too); it also times the signature check of ``plan`` on its own.

The networks are small fixed MLPs (hidden 128, latent 64) with random,
non-zero weights: tic-tac-toe's observation ``[3, 3, 2]`` with 9 actions
(two-player) for muzero / gumbel_muzero, and a 2048-like ``[4, 4, 16]``
observation with 4 actions and 32 chance outcomes for stochastic_muzero.

  python benchmarks/search_throughput.py --quick
  python benchmarks/search_throughput.py              # full grid
  python benchmarks/search_throughput.py --algorithms muzero --batch 1 1024 \\
      --sims 16 128 --platforms cpu --decompose

Results: JSON (``--out``, default
``benchmarks/results/search_throughput_<platform>.json``, rewritten after
every configuration, so an interrupted run keeps what it measured) and a
markdown table (``--markdown``, default: the JSON path with ``.md``), which is
also printed.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform as py_platform
import statistics
import sys
import time
import timeit

_REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import mctx  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from mctx_planner import search as search_lib  # pylint: disable=g-import-not-at-top
from mctx_planner.networks import MuZeroNet, NetworkConfig, init_params  # pylint: disable=g-import-not-at-top
from mctx_planner.search import (RootInput, SearchConfig, learned_model,  # pylint: disable=g-import-not-at-top
                                 make_planner)

ALGORITHMS = ("muzero", "gumbel_muzero", "stochastic_muzero")
FULL_BATCH = (1, 8, 64, 256, 1024)
FULL_SIMS = (16, 32, 64, 128)
QUICK_BATCH = (8, 256)
QUICK_SIMS = (32,)

HIDDEN = 128
LATENT = 64
# muzero / gumbel_muzero: tic-tac-toe shapes, two-player.
TTT_SHAPE, TTT_ACTIONS = (3, 3, 2), 9
# stochastic_muzero: 2048-like shapes (4x4 board, 16 one-hot channels).
G2048_SHAPE, G2048_ACTIONS, G2048_CHANCE = (4, 4, 16), 4, 32

RAW_POLICIES = {
    "muzero": mctx.muzero_policy,
    "gumbel_muzero": mctx.gumbel_muzero_policy,
    "stochastic_muzero": mctx.stochastic_muzero_policy,
}


# --------------------------------------------------------------------------
# Models and inputs.
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def build_model(algorithm):
  """(model, params, observation shape, num actions) for an algorithm."""
  config = NetworkConfig(hidden_size=HIDDEN, latent_size=LATENT)
  if algorithm == "stochastic_muzero":
    net = MuZeroNet(num_actions=G2048_ACTIONS, config=config,
                    num_chance_outcomes=G2048_CHANCE)
    shape, actions = G2048_SHAPE, G2048_ACTIONS
    model = learned_model(net, shape, two_player=False, discount=1.0)
  else:
    net = MuZeroNet(num_actions=TTT_ACTIONS, config=config)
    shape, actions = TTT_SHAPE, TTT_ACTIONS
    model = learned_model(net, shape, two_player=True)
  params = init_params(net, jax.random.PRNGKey(0), shape)
  # The output layers are zero-initialised (uniform prior, value 0); perturb
  # every weight so priors, values and rewards are informative and the
  # identical-actions check is not decided by ties.
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  leaves = [x + 0.1 * jax.random.normal(k, x.shape, x.dtype)
            for x, k in zip(leaves, keys)]
  params = jax.tree_util.tree_unflatten(treedef, leaves)
  return model, params, shape, actions


def make_root_input(shape, num_actions, batch, seed=2):
  k_obs, k_mask = jax.random.split(jax.random.PRNGKey(seed))
  obs = jax.random.uniform(k_obs, (batch,) + tuple(shape))
  legal = jax.random.uniform(k_mask, (batch, num_actions)) < 0.75
  legal = legal.at[:, 0].set(legal[:, 0] | ~legal.any(axis=1))
  return RootInput(observation=obs, legal_action_mask=legal)


def search_config(algorithm, sims, backend="mctx"):
  return SearchConfig(algorithm=algorithm, num_simulations=sims,
                      backend=backend)


def make_raw(model, config, *, split=False, mask=True):
  """Raw mctx on the model's own root / recurrent functions, jitted.

  With ``split=False`` the function takes the ``search_key`` the planner
  hands to mctx; with ``split=True`` it takes the planner's ``rng_key`` and
  splits it as the planner does. ``mask=True`` (the baseline) sets the root
  logits of illegal actions to the dtype minimum, as the planner does, so
  that mctx sees exactly the root the planner gives it. With ``mask=False``
  mctx masks them itself from ``invalid_actions`` -- but only after mixing
  the Dirichlet noise into the softmax over *all* actions (muzero,
  stochastic_muzero), so the searches differ (see --decompose).
  """
  policy = RAW_POLICIES[config.algorithm]
  puct = dict(dirichlet_fraction=config.dirichlet_fraction,
              dirichlet_alpha=config.dirichlet_alpha,
              pb_c_init=config.pb_c_init, pb_c_base=config.pb_c_base,
              temperature=config.temperature)

  def raw(params, key, root_input):
    if split:
      root_key, search_key = jax.random.split(key)
    else:
      root_key = search_key = key  # the learned root_fn ignores its key
    root = model.root_fn(params, root_key, root_input)
    legal = root_input.legal_action_mask
    if mask:
      root = root.replace(prior_logits=jnp.where(
          legal, root.prior_logits, jnp.finfo(root.prior_logits.dtype).min))
    common = dict(params=params, rng_key=search_key, root=root,
                  num_simulations=config.num_simulations,
                  invalid_actions=jnp.logical_not(legal),
                  max_depth=config.max_depth)
    if config.algorithm == "muzero":
      return policy(recurrent_fn=model.recurrent_fn, **common, **puct)
    if config.algorithm == "gumbel_muzero":
      return policy(recurrent_fn=model.recurrent_fn, **common,
                    max_num_considered_actions=config.max_num_considered_actions,
                    gumbel_scale=config.gumbel_scale)
    return policy(decision_recurrent_fn=model.decision_recurrent_fn,
                  chance_recurrent_fn=model.chance_recurrent_fn,
                  **common, **puct)

  return jax.jit(raw)


def fast_backend_status():
  """(available, reason): can SearchConfig(backend='fast') be built at all?

  Each configuration still runs it under try/except: a failure there drops
  the fast variant from that configuration (recorded as ``fast_error``).
  """
  try:
    SearchConfig(backend="fast")
    from mctx_planner import _fast_search  # pylint: disable=g-import-not-at-top,unused-import
    for fn in ("muzero_policy", "gumbel_muzero_policy",
               "stochastic_muzero_policy"):
      getattr(_fast_search, fn)
    return True, "ok"
  except Exception as e:  # pylint: disable=broad-except
    return False, _error(e)


def _error(e):
  text = str(e).strip().splitlines()
  return "%s: %s" % (type(e).__name__, text[0][:300] if text else "")


# --------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------


def measure(variants, reps, min_reps, budget_s, optional=()):
  """Compiles (first call), warms up and times ``variants``, interleaved.

  Args:
    variants: name -> zero-argument callable returning the outputs.
    reps: maximum timed rounds; each round calls every variant once, the
      order rotating from round to round.
    min_reps: rounds always run.
    budget_s: stop after ``min_reps`` rounds once this much time has passed.
    optional: names of variants dropped (not raised) if their first call
      fails.

  Returns:
    (first-call seconds, per-round seconds lists, first outputs, errors of
    dropped optional variants), dicts by name.
  """
  first, outputs, errors = {}, {}, {}
  for name, fn in list(variants.items()):
    t0 = time.perf_counter()
    try:
      outputs[name] = jax.block_until_ready(fn())
    except Exception as e:  # pylint: disable=broad-except
      if name not in optional:
        raise
      errors[name] = _error(e)
      variants = {k: v for k, v in variants.items() if k != name}
      continue
    first[name] = time.perf_counter() - t0
  for fn in variants.values():  # second warm-up call
    jax.block_until_ready(fn())
  names = list(variants)
  times = {name: [] for name in names}
  start = time.perf_counter()
  for r in range(reps):
    shift = r % len(names)
    for name in names[shift:] + names[:shift]:
      t0 = time.perf_counter()
      jax.block_until_ready(variants[name]())
      times[name].append(time.perf_counter() - t0)
    if r + 1 >= min_reps and time.perf_counter() - start > budget_s:
      break
  return first, times, outputs, errors


def signature_check_seconds(params, root_input, number=2000):
  """Per-call cost of plan()'s Python-side input-signature check."""
  sig = getattr(search_lib, "_input_signature", None)
  if sig is None:
    return None
  seen = {sig(params, root_input)}
  fn = lambda: sig(params, root_input) in seen
  return min(timeit.repeat(fn, number=number, repeat=3)) / number


def run_config(device, algorithm, batch, sims, args, fast_ok):
  model, params, shape, actions = build_model(algorithm)
  config = search_config(algorithm, sims)
  with jax.default_device(device):
    params_d = jax.device_put(params, device)
    root_input = jax.device_put(make_root_input(shape, actions, batch), device)
    key = jax.device_put(jax.random.PRNGKey(42), device)
    _, search_key = jax.random.split(key)  # what search() gives mctx

    planner = make_planner(model, config)
    raw = make_raw(model, config)
    variants = {
        "planner": lambda: planner.plan(params_d, key, root_input),
        "raw": lambda: raw(params_d, search_key, root_input),
    }
    if fast_ok:
      fast = make_planner(model, search_config(algorithm, sims, "fast"))
      variants["fast"] = lambda: fast.plan(params_d, key, root_input)
    if args.decompose:
      search_jit = jax.jit(planner.search)
      raw_split = make_raw(model, config, split=True)
      raw_unmasked = make_raw(model, config, mask=False)
      variants["search_jit"] = lambda: search_jit(params_d, key, root_input)
      variants["raw_split"] = lambda: raw_split(params_d, key, root_input)
      variants["raw_unmasked"] = (
          lambda: raw_unmasked(params_d, search_key, root_input))

    load_before = os.getloadavg()[0]
    first, times, outs, errors = measure(
        variants, args.repeats, args.min_repeats, args.budget,
        optional=("fast",))
    load_after = os.getloadavg()[0]

  med = {name: statistics.median(ts) for name, ts in times.items()}
  res = dict(platform=device.platform, device=device_name(device),
             algorithm=algorithm, batch=batch, sims=sims,
             rounds=len(times["raw"]), load_before=load_before,
             load_after=load_after)
  if "fast" in errors:
    res["fast_error"] = errors["fast"]
    print("fast backend failed on this configuration: %s" % errors["fast"],
          file=sys.stderr, flush=True)
  for name in times:
    res["%s_s" % name] = med[name]
    res["%s_min_s" % name] = min(times[name])
    res["%s_sims_per_s" % name] = batch * sims / med[name]
    res["%s_first_call_s" % name] = first[name]
    res["%s_compile_s" % name] = max(first[name] - med[name], 0.0)
  res["overhead"] = med["planner"] / med["raw"]
  res["overhead_paired"] = statistics.median(
      p / r for p, r in zip(times["planner"], times["raw"]))
  res["overhead_min"] = min(times["planner"]) / min(times["raw"])
  res["planner_raw_actions_identical"] = bool(np.array_equal(
      np.asarray(outs["planner"].action), np.asarray(outs["raw"].action)))
  res["planner_raw_weights_max_abs_diff"] = float(np.max(np.abs(
      np.asarray(outs["planner"].action_weights)
      - np.asarray(outs["raw"].action_weights))))
  if "fast" in times:
    res["fast_speedup"] = med["raw"] / med["fast"]
    res["fast_raw_actions_identical"] = bool(np.array_equal(
        np.asarray(outs["fast"].action), np.asarray(outs["raw"].action)))
  if args.decompose:
    for name in ("search_jit", "raw_split", "raw_unmasked"):
      res["%s_over_raw" % name] = med[name] / med["raw"]
      res["%s_over_raw_paired" % name] = statistics.median(
          a / b for a, b in zip(times[name], times["raw"]))
    res["planner_over_search_jit"] = med["planner"] / med["search_jit"]
    res["planner_over_search_jit_paired"] = statistics.median(
        a / b for a, b in zip(times["planner"], times["search_jit"]))
    res["search_jit_over_raw_split_paired"] = statistics.median(
        a / b for a, b in zip(times["search_jit"], times["raw_split"]))
    res["raw_unmasked_actions_differ"] = int(np.sum(
        np.asarray(outs["raw_unmasked"].action)
        != np.asarray(outs["raw"].action)))
    res["signature_check_s"] = signature_check_seconds(params_d, root_input)
  return res


# --------------------------------------------------------------------------
# Reporting.
# --------------------------------------------------------------------------


def device_name(device):
  kind = getattr(device, "device_kind", None) or str(device)
  if device.platform == "cpu":
    model = cpu_model()
    if model:
      kind = "%s (%s)" % (kind, model)
  return kind


def cpu_model():
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return py_platform.processor() or None


def versions():
  out = dict(python=py_platform.python_version(), jax=jax.__version__,
             mctx=getattr(mctx, "__version__", "?"))
  try:
    import jaxlib  # pylint: disable=g-import-not-at-top
    out["jaxlib"] = jaxlib.__version__
  except Exception:  # pylint: disable=broad-except
    pass
  try:
    import flax  # pylint: disable=g-import-not-at-top
    out["flax"] = flax.__version__
  except Exception:  # pylint: disable=broad-except
    pass
  try:
    import mctx_planner  # pylint: disable=g-import-not-at-top
    out["mctx_planner"] = mctx_planner.__version__
    # Whether CPU searches ran the native tree kernels (the same results,
    # not the same speed): "in use (...)" or "not in use: <why>".
    out["native_cpu_kernels"] = mctx_planner.native_cpu_kernels()
  except Exception:  # pylint: disable=broad-except
    pass
  return out


def _ms(seconds):
  ms = seconds * 1e3
  return "%.3f" % ms if ms < 1 else "%.2f" % ms if ms < 100 else "%.0f" % ms


def _rate(x):
  return "%.3g M" % (x / 1e6) if x >= 1e6 else "%.3g k" % (x / 1e3)


def markdown(results, fast_ok):
  head = ["platform", "algorithm", "B", "S", "planner ms", "raw ms",
          "overhead (medians)", "overhead (paired)", "planner sims/s",
          "raw sims/s", "same actions"]
  if fast_ok:
    head += ["fast ms", "fast sims/s", "fast speedup vs raw",
             "fast same actions"]
  head += ["compile s planner", "compile s raw"]
  if fast_ok:
    head += ["compile s fast"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in results:
    row = [r["platform"], r["algorithm"], str(r["batch"]), str(r["sims"]),
           _ms(r["planner_s"]), _ms(r["raw_s"]), "%.3f" % r["overhead"],
           "%.3f" % r["overhead_paired"], _rate(r["planner_sims_per_s"]),
           _rate(r["raw_sims_per_s"]),
           "yes" if r["planner_raw_actions_identical"] else "NO"]
    if fast_ok and "fast_s" in r:
      row += [_ms(r["fast_s"]), _rate(r["fast_sims_per_s"]),
              "%.2fx" % r["fast_speedup"],
              "yes" if r["fast_raw_actions_identical"] else "NO"]
    elif fast_ok:
      row += ["failed", "-", "-", "-"]
    row += ["%.1f" % r["planner_compile_s"], "%.1f" % r["raw_compile_s"]]
    if fast_ok:
      row += ["%.1f" % r["fast_compile_s"] if "fast_s" in r else "-"]
    lines.append("| " + " | ".join(row) + " |")
  if any("search_jit_s" in r for r in results):
    lines += ["", "Overhead decomposition (paired median ratios; raw+split = "
              "the planner's graph minus its output packaging; search_jit = "
              "jax.jit(planner.search), the planner's graph without plan()'s "
              "Python input check; signature = that check alone, per call; "
              "unmasked = plain mctx masking, rows whose action differs):",
              "",
              "| platform | algorithm | B | S | raw ms | planner/raw |"
              " raw+split/raw | search_jit/raw+split | planner/search_jit |"
              " planner - search_jit us | signature us | unmasked/raw |"
              " unmasked rows differ |", "|" + "---|" * 13]
    for r in results:
      if "search_jit_s" not in r:
        continue
      sig = r.get("signature_check_s")
      lines.append("| %s | %s | %d | %d | %s | %.3f | %.3f | %.3f | %.3f |"
                   " %.1f | %s | %.3f | %d/%d |" % (
                       r["platform"], r["algorithm"], r["batch"], r["sims"],
                       _ms(r["raw_s"]), r["overhead_paired"],
                       r["raw_split_over_raw_paired"],
                       r["search_jit_over_raw_split_paired"],
                       r["planner_over_search_jit_paired"],
                       (r["planner_s"] - r["search_jit_s"]) * 1e6,
                       "-" if sig is None else "%.1f" % (sig * 1e6),
                       r["raw_unmasked_over_raw_paired"],
                       r["raw_unmasked_actions_differ"], r["batch"]))
  return "\n".join(lines)


def write(out, md_path, meta, results, fast_ok):
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(dict(meta, results=results), f, indent=1)
  table = markdown(results, fast_ok) if results else "(no results)"
  os.makedirs(os.path.dirname(os.path.abspath(md_path)), exist_ok=True)
  with open(md_path, "w") as f:
    f.write("# Search throughput (%s)\n\n" % ", ".join(meta["platforms"]))
    f.write("Command: `%s`  \n" % meta["command"])
    f.write("Devices: %s  \n" % "; ".join(
        "%s: %s" % kv for kv in meta["devices"].items()))
    f.write("Versions: %s  \n" % ", ".join(
        "%s %s" % kv for kv in meta["versions"].items()))
    f.write("CPUs: %s; load average at start %s, at end %s; %s\n\n" % (
        meta["cpu_count"], meta["load_start"], meta.get("load_end", "-"),
        meta["date"]))
    f.write(table + "\n")
  return table


def main(argv=None):
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--quick", action="store_true",
                 help="small grid: every algorithm, B %s, S %s (~2 min on 2 "
                 "CPU cores)" % (list(QUICK_BATCH), list(QUICK_SIMS)))
  p.add_argument("--algorithms", nargs="+", choices=ALGORITHMS,
                 default=list(ALGORITHMS))
  p.add_argument("--batch", nargs="+", type=int, default=None,
                 help="batch sizes (default %s)" % list(FULL_BATCH))
  p.add_argument("--sims", nargs="+", type=int, default=None,
                 help="simulations per search (default %s)" % list(FULL_SIMS))
  p.add_argument("--platforms", nargs="+", default=None,
                 help="JAX platforms to run on (default: every platform "
                 "present: cpu plus the default backend)")
  p.add_argument("--repeats", type=int, default=31,
                 help="max timed rounds per configuration (default 31; "
                 "each round times every variant once)")
  p.add_argument("--min-repeats", type=int, default=5,
                 help="timed rounds always run (default 5)")
  p.add_argument("--budget", type=float, default=3.0,
                 help="seconds of timed rounds per configuration after "
                 "which no new round starts once --min-repeats are done "
                 "(default 3)")
  p.add_argument("--no-fast", action="store_true",
                 help="skip the 'fast' backend even if it works")
  p.add_argument("--decompose", action="store_true",
                 help="also time search_jit, raw+split, raw+split+mask and "
                 "plan()'s signature check, to attribute the overhead")
  p.add_argument("--max-minutes", type=float, default=None,
                 help="start no new configuration after this many minutes")
  p.add_argument("--out", default=None,
                 help="JSON path (default benchmarks/results/"
                 "search_throughput_<platform>.json)")
  p.add_argument("--markdown", default=None,
                 help="markdown path (default: --out with .md)")
  args = p.parse_args(argv)

  batches = args.batch or (QUICK_BATCH if args.quick else FULL_BATCH)
  sims_list = args.sims or (QUICK_SIMS if args.quick else FULL_SIMS)
  if args.quick:
    args.repeats = min(args.repeats, 21)
    args.min_repeats = min(args.min_repeats, 3)
    args.budget = min(args.budget, 1.5)

  default_platform = jax.default_backend()
  platforms = args.platforms or sorted({"cpu", default_platform},
                                       key=lambda x: (x == "cpu", x))
  devices = {}
  for plat in platforms:
    try:
      devices[plat] = jax.devices(plat)[0]
    except RuntimeError as e:
      print("platform %r unavailable: %s" % (plat, e), file=sys.stderr)
  if not devices:
    p.error("none of the platforms %s is available" % platforms)

  out = args.out or os.path.join(
      _REPO, "benchmarks", "results",
      "search_throughput_%s.json" % next(iter(devices)))
  md_path = args.markdown or os.path.splitext(out)[0] + ".md"

  fast_ok, fast_reason = False, "skipped (--no-fast)"
  if not args.no_fast:
    fast_ok, fast_reason = fast_backend_status()
  print("fast backend: %s" % ("available" if fast_ok else
                              "unavailable (%s)" % fast_reason), flush=True)

  meta = dict(
      command="python " + " ".join([os.path.relpath(__file__, _REPO)]
                                   + (sys.argv[1:] if argv is None
                                      else list(argv))),
      date=datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      platforms=list(devices),
      devices={plat: device_name(d) for plat, d in devices.items()},
      versions=versions(), cpu_count=os.cpu_count(),
      cpu_model=cpu_model(), host=py_platform.node(),
      load_start=[round(x, 2) for x in os.getloadavg()],
      network=dict(hidden_size=HIDDEN, latent_size=LATENT, torso="mlp",
                   muzero_gumbel=dict(observation_shape=TTT_SHAPE,
                                      num_actions=TTT_ACTIONS,
                                      two_player=True),
                   stochastic=dict(observation_shape=G2048_SHAPE,
                                   num_actions=G2048_ACTIONS,
                                   num_chance_outcomes=G2048_CHANCE)),
      timing=dict(max_rounds=args.repeats, min_rounds=args.min_repeats,
                  budget_s=args.budget, statistic="median",
                  compile="first call minus steady-state median"),
      fast_backend=dict(available=fast_ok, reason=fast_reason))

  results = []
  start = time.perf_counter()
  stopped_early = False
  for plat, device in devices.items():
    for algorithm in args.algorithms:
      for batch in batches:
        for sims in sims_list:
          if (args.max_minutes is not None
              and time.perf_counter() - start > 60 * args.max_minutes):
            stopped_early = True
            break
          try:
            r = run_config(device, algorithm, batch, sims, args, fast_ok)
          except Exception as e:  # pylint: disable=broad-except
            r = None
            print("FAILED %s %s B=%d S=%d: %s: %s" % (
                plat, algorithm, batch, sims, type(e).__name__, e),
                  file=sys.stderr, flush=True)
          if r is not None:
            results.append(r)
            print("%-4s %-17s B=%-5d S=%-4d planner %9s ms  raw %9s ms  "
                  "overhead %.3f (paired %.3f)  same actions %s%s  "
                  "load %.1f" % (
                      plat, algorithm, batch, sims, _ms(r["planner_s"]),
                      _ms(r["raw_s"]), r["overhead"], r["overhead_paired"],
                      r["planner_raw_actions_identical"],
                      ("  fast %s ms" % _ms(r["fast_s"]))
                      if "fast_s" in r else "",
                      r["load_before"]), flush=True)
            meta["load_end"] = [round(x, 2) for x in os.getloadavg()]
            meta["elapsed_s"] = round(time.perf_counter() - start, 1)
            write(out, md_path, meta, results, fast_ok)
  meta["load_end"] = [round(x, 2) for x in os.getloadavg()]
  meta["elapsed_s"] = round(time.perf_counter() - start, 1)
  meta["stopped_early"] = stopped_early
  table = write(out, md_path, meta, results, fast_ok)
  print()
  print(table)
  print("\nload average at start %s, at end %s; %.0f s" % (
      meta["load_start"], meta["load_end"], meta["elapsed_s"]))
  print("written to %s and %s" % (out, md_path))
  if not results:
    sys.exit(1)


if __name__ == "__main__":
  main()
