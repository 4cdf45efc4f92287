"""Search overhead of raw mctx vs the batch-first backend on CPU.

For each configuration (policy, MLP hidden size, actions A, batch B,
simulations S) this measures the median wall time of the jitted search, the
time of a network-only baseline (a `lax.scan` of S calls of the same
recurrent network on the same batch, no tree), compile times, XLA's buffer
estimate of peak memory (temporaries + outputs), and whether the fast backend
reproduces raw mctx's outputs bit for bit.

  python benchmarks/search_overhead.py --quick
  python benchmarks/search_overhead.py --policies muzero gumbel \
      --hidden 64 256 --actions 9 64 --batch 64 256 1024 --sims 64 128 256

Ratios are "search time / network-only time", measured in the same process.
`--retain-memory` first keeps freed memory mapped
(`mctx_planner.retain_freed_memory`); the JSON records whether it was.
`--policy-outputs` also times, in the same rounds, the fast search returning
only what self-play keeps (the action, the weights and the root's value,
`policy_outputs`): XLA then drops the unpack of the whole tree.
"""

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import mctx
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from mctx_planner import _cpu_tasks  # pylint: disable=g-import-not-at-top
from mctx_planner import _fast_search  # pylint: disable=g-import-not-at-top
from mctx_planner import native_cpu_kernels  # pylint: disable=g-import-not-at-top
from mctx_planner import retain_freed_memory  # pylint: disable=g-import-not-at-top
from mctx_planner import single_task_compile  # pylint: disable=g-import-not-at-top

EMBED = 32
NUM_CHANCE = 4  # chance outcomes of the stochastic model (needs A >= 4)


def make_params(hidden, num_actions, seed=0):
  ks = jax.random.split(jax.random.PRNGKey(seed), 4)
  scale = lambda n: 1.0 / np.sqrt(n)
  return dict(
      w1=jax.random.normal(ks[0], (EMBED, hidden)) * scale(EMBED),
      action_embed=jax.random.normal(ks[1], (num_actions, hidden)) * 0.5,
      w2=jax.random.normal(ks[2], (hidden, hidden)) * scale(hidden),
      w_out=jax.random.normal(ks[3], (hidden, num_actions + 2 + EMBED)) *
      scale(hidden),
  )


def _mlp(params, embedding, action):
  """The one network of every model here: two hidden layers of width H."""
  h = jax.nn.relu(embedding @ params["w1"] + params["action_embed"][action])
  h = jax.nn.relu(h @ params["w2"])
  return h @ params["w_out"]


def recurrent_fn(params, rng_key, action, embedding):
  """Plain-jnp MLP: (embedding, action) -> (logits, value, reward, next)."""
  del rng_key
  num_actions = params["action_embed"].shape[0]
  out = _mlp(params, embedding, action)
  logits = out[:, :num_actions]
  value = jnp.tanh(out[:, num_actions])
  reward = jnp.tanh(out[:, num_actions + 1])
  next_embedding = jnp.tanh(out[:, num_actions + 2:])
  return mctx.RecurrentFnOutput(
      reward=reward, discount=jnp.full_like(reward, 0.997),
      prior_logits=logits, value=value), next_embedding


def decision_fn(params, rng_key, action, embedding):
  """Stochastic model, decision step: (state, action) -> afterstate, with
  the chance logits over `NUM_CHANCE` outcomes and the afterstate value."""
  del rng_key
  num_actions = params["action_embed"].shape[0]
  out = _mlp(params, embedding, action)
  return mctx.DecisionRecurrentFnOutput(
      chance_logits=out[:, :NUM_CHANCE],
      afterstate_value=jnp.tanh(out[:, num_actions])), jnp.tanh(
          out[:, num_actions + 2:])


def chance_fn(params, rng_key, outcome, afterstate):
  """Stochastic model, chance step: (afterstate, outcome) -> next state (the
  outcome enters as action embedding `(outcome + 1) % A`)."""
  num_actions = params["action_embed"].shape[0]
  out, nxt = recurrent_fn(params, rng_key, (outcome + 1) % num_actions,
                          afterstate)
  return mctx.ChanceRecurrentFnOutput(
      action_logits=out.prior_logits, value=out.value, reward=out.reward,
      discount=out.discount), nxt


def _stochastic(policy):
  """`policy(..., decision_fn, chance_fn, ...)` with the calling convention
  of the other policies here (`recurrent_fn` is replaced by the two steps)."""
  def search(params, rng_key, root, recurrent_fn, num_simulations, **kwargs):
    del recurrent_fn
    return policy(params, rng_key, root, decision_fn, chance_fn,
                  num_simulations, **kwargs)
  return search


# policy -> (raw mctx, fast backend), called as
# `fn(params, key, root, recurrent_fn, num_simulations, **kwargs)`.
POLICIES = {
    "muzero": (mctx.muzero_policy, _fast_search.muzero_policy),
    "gumbel": (mctx.gumbel_muzero_policy, _fast_search.gumbel_muzero_policy),
    "stochastic": (_stochastic(mctx.stochastic_muzero_policy),
                   _stochastic(_fast_search.stochastic_muzero_policy)),
}


def make_root(params, batch, seed=1):
  emb = jax.random.normal(jax.random.PRNGKey(seed), (batch, EMBED))
  out, _ = recurrent_fn(params, None, jnp.zeros([batch], jnp.int32), emb)
  return mctx.RootFnOutput(prior_logits=out.prior_logits, value=out.value,
                           embedding=emb)


def make_inputs(hidden, num_actions, batch):
  """`(params, root, key)` of one configuration: the MLP, the root of `batch`
  examples and the search key (42) that every benchmark here uses."""
  params = make_params(hidden, num_actions)
  return params, make_root(params, batch), jax.random.PRNGKey(42)


def network_only(params, root, num_simulations, policy="muzero"):
  """S calls of the network on the batch, chained through the embedding
  (for `policy="stochastic"`, S decision steps and S chance steps: what a
  stochastic simulation evaluates)."""
  num_actions = params["action_embed"].shape[0]
  batch = root.value.shape[0]

  def step(emb, i):
    action = (jnp.arange(batch) + i) % num_actions
    if policy == "stochastic":
      after_out, after = decision_fn(params, None, action, emb)
      out, nxt = chance_fn(params, None, action % NUM_CHANCE, after)
      return nxt, out.value + after_out.afterstate_value
    out, nxt = recurrent_fn(params, None, action, emb)
    return nxt, out.value

  emb, values = jax.lax.scan(step, root.embedding,
                             jnp.arange(num_simulations))
  return emb, values


def compile_fn(fn, *args, single_task=False, compiler_options=None):
  """``(compiled, seconds, peak bytes)`` of ``jax.jit(fn)`` for ``args``
  (seconds: tracing, lowering and compiling), with XLA's
  ``compiler_options`` if given; ``single_task``: compiled as
  the planner compiles a fast search where ``fast_single_task`` says so
  (``mctx_planner.single_task_compile``); ``"require"``: the same, and
  SystemExit where it cannot take effect here (one CPU, or CPU sets that
  cannot be changed)."""
  t0 = time.perf_counter()
  lowered = jax.jit(fn).lower(*args)
  with (single_task_compile() if single_task else contextlib.nullcontext()) as took:
    compiled = (lowered.compile(compiler_options=compiler_options)
                if compiler_options else lowered.compile())
  if single_task == "require" and not took:
    raise SystemExit("single_task_compile had no effect here (one CPU, or CPU "
                     "sets cannot be changed): nothing to compare")
  seconds = time.perf_counter() - t0
  try:  # XLA's buffer assignment: temporaries + outputs of one call.
    mem = compiled.memory_analysis()
    peak = int(mem.temp_size_in_bytes) + int(mem.output_size_in_bytes)
  except Exception:  # pylint: disable=broad-except
    peak = -1
  return compiled, seconds, peak


def fast_single_task(batch, sims, num_actions, platform=None, backend="fast"):
  """Whether ``make_planner``'s ``plan`` compiles this search with one task
  per XLA:CPU kernel (``_cpu_tasks.prefers_single_task``; the fast backend
  only, so False for any other ``backend``), so that the benchmarks time the
  program a user of the planner gets."""
  if backend != "fast":
    return False
  platform = platform or jax.default_backend()
  return _cpu_tasks.prefers_single_task(platform, batch, sims, num_actions)


def time_interleaved(fns, budget_s, min_reps=3, max_reps=15, slow_s=5.0):
  """Median wall time of each `(compiled, args)`, measured in rounds.

  Every round runs each function once, so that load changes on a noisy
  machine hit all of them alike.  Functions slower than `slow_s` run in
  the first 2 rounds only.
  """
  times = [[] for _ in fns]
  for compiled, args in fns:
    jax.block_until_ready(compiled(*args))  # warm-up
  start = time.perf_counter()
  for rep in range(max_reps):
    for i, (compiled, args) in enumerate(fns):
      if rep >= 2 and times[i] and times[i][0] > slow_s:
        continue
      t0 = time.perf_counter()
      jax.block_until_ready(compiled(*args))
      times[i].append(time.perf_counter() - t0)
    if rep + 1 >= min_reps and time.perf_counter() - start > budget_s:
      break
  return [statistics.median(t) for t in times]


def tree_depths(tree):
  """(mean, max) depth of the nodes of a search tree."""
  parents = np.asarray(tree.parents)
  depth = np.zeros(parents.shape, np.int64)
  rows = np.arange(parents.shape[0])
  for i in range(1, parents.shape[1]):
    depth[:, i] = depth[rows, np.maximum(parents[:, i], 0)] + 1
  return float(depth[:, 1:].mean()), int(depth.max())


def outputs_identical(a, b):
  """(exactly equal, equal up to float tolerance)."""
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  exact = all(np.array_equal(np.asarray(x), np.asarray(y))
              for x, y in zip(la, lb))
  close = all(
      np.allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
      for x, y in zip(la, lb))
  return exact, close


def policy_outputs(out):
  """What self-play keeps of a search's output (as `selfplay.rollout` keeps
  the planner's): the action, the weights and the root's value."""
  return (out.action, out.action_weights,
          out.search_tree.node_values[:, out.search_tree.ROOT_INDEX])


def run_config(policy, hidden, num_actions, batch, sims, budget_s,
               skip_raw=False, with_policy_outputs=False):
  """Measures one configuration; returns a dict of results.
  `with_policy_outputs`: the fast search returning `policy_outputs` only
  is timed too (`fast_policy_s`)."""
  raw_policy, fast_policy = POLICIES[policy]
  params, root, key = make_inputs(hidden, num_actions, batch)

  def search(fn, params, key, root):
    return fn(params, key, root, recurrent_fn, sims)

  res = dict(policy=policy, hidden=hidden, actions=num_actions, batch=batch,
             sims=sims)
  net, res["compile_net_s"], _ = compile_fn(
      functools.partial(network_only, num_simulations=sims, policy=policy),
      params, root)
  fast, res["compile_fast_s"], res["mem_bytes_fast"] = compile_fn(
      functools.partial(search, fast_policy), params, key, root,
      single_task=fast_single_task(batch, sims, num_actions))
  fns = [(net, (params, root)), (fast, (params, key, root))]
  if with_policy_outputs:
    fast_policy_only, res["compile_fast_policy_s"], _ = compile_fn(
        lambda *args: policy_outputs(search(fast_policy, *args)), params, key,
        root, single_task=fast_single_task(batch, sims, num_actions))
    fns.append((fast_policy_only, (params, key, root)))
  if not skip_raw:
    raw, res["compile_raw_s"], res["mem_bytes_raw"] = compile_fn(
        functools.partial(search, raw_policy), params, key, root)
    fns.append((raw, (params, key, root)))
  timings = time_interleaved(fns, budget_s)
  res["net_s"], res["fast_s"] = timings[:2]
  res["ratio_fast"] = res["fast_s"] / res["net_s"]
  fast_out = fast(params, key, root)
  res["mean_depth"], res["max_depth"] = tree_depths(fast_out.search_tree)
  if with_policy_outputs:
    res["fast_policy_s"] = timings[2]
    res["ratio_fast_policy"] = res["fast_policy_s"] / res["net_s"]
    res["policy_outputs_identical"], _ = outputs_identical(
        policy_outputs(fast_out), fast_policy_only(params, key, root))
  if not skip_raw:
    res["raw_s"] = timings[-1]
    res["ratio_raw"] = res["raw_s"] / res["net_s"]
    res["speedup"] = res["raw_s"] / res["fast_s"]
    exact, close = outputs_identical(fast_out, raw(params, key, root))
    res["identical"] = exact
    res["allclose"] = close
  res["fast_sims_per_s"] = batch * sims / res["fast_s"]
  return res


def markdown(results):
  head = ("| policy | H | A | B | S | depth mean/max | net ms | fast ms |"
          " raw ms | fast/net | raw/net | speedup | compile fast s |"
          " compile raw s | mem MB fast | mem MB raw | identical |"
          " fast/net, policy outputs only |")
  lines = [head, "|" + "---|" * 18]
  for r in results:
    g = lambda k, fmt: (fmt % r[k]) if k in r else "-"
    lines.append(
        "| %s | %d | %d | %d | %d | %.1f/%d | %.1f | %.1f | %s | %.2f | %s |"
        " %s | %.2f | %s | %.1f | %s | %s | %s |" % (
            r["policy"], r["hidden"], r["actions"], r["batch"], r["sims"],
            r["mean_depth"], r["max_depth"],
            r["net_s"] * 1e3, r["fast_s"] * 1e3,
            "%.1f" % (r["raw_s"] * 1e3) if "raw_s" in r else "skipped",
            r["ratio_fast"], g("ratio_raw", "%.2f"), g("speedup", "%.2fx"),
            r["compile_fast_s"], g("compile_raw_s", "%.2f"),
            r["mem_bytes_fast"] / 2**20,
            ("%.1f" % (r["mem_bytes_raw"] / 2**20)
             if "mem_bytes_raw" in r else "-"),
            ("exact" if r.get("identical") else
             "allclose" if r.get("allclose") else
             "-" if "identical" not in r else "NO"),
            g("ratio_fast_policy", "%.2f")))
  return "\n".join(lines)


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--quick", action="store_true",
                 help="small grid: H 64/256, A 9, B 64/256, S 64")
  p.add_argument("--policies", nargs="+", default=["muzero", "gumbel"],
                 choices=sorted(POLICIES))
  p.add_argument("--hidden", nargs="+", type=int, default=[64, 256])
  p.add_argument("--actions", nargs="+", type=int, default=[9, 64])
  p.add_argument("--batch", nargs="+", type=int, default=[64, 256, 1024])
  p.add_argument("--sims", nargs="+", type=int, default=[64, 128, 256])
  p.add_argument("--budget", type=float, default=3.0,
                 help="seconds of timing per measured function (>=3 reps)")
  p.add_argument("--skip-raw", action="store_true",
                 help="do not run raw mctx (it is slow on big configs)")
  p.add_argument("--raw-max-work", type=float, default=7e8,
                 help="skip raw mctx where B*S*S*A exceeds this (raw mctx's "
                 "backup rewrites [B,S,A] arrays per step: minutes per call)")
  p.add_argument("--backend", default="fast",
                 help="name used in the default output file")
  p.add_argument("--out", default=None)
  p.add_argument("--policy-outputs", action="store_true",
                 help="also time the fast search returning only the action, "
                 "the weights and the root value (what self-play keeps)")
  p.add_argument("--retain-memory", action="store_true",
                 help="first keep freed memory mapped "
                 "(mctx_planner.retain_freed_memory): big searches skip page "
                 "faults, small programs run a few percent slower")
  args = p.parse_args()
  malloc = retain_freed_memory() if args.retain_memory else "not called"
  print("retain_freed_memory:", malloc, flush=True)
  # Without the kernels (no compiler, a failed build) the fast search runs
  # its pure-XLA loops, several times slower: said first, and in the JSON.
  native = native_cpu_kernels()
  print("native CPU kernels:", native, flush=True)
  if args.quick:
    args.hidden, args.actions, args.batch, args.sims = [64, 256], [9], [
        64, 256], [64]
  out = args.out or os.path.join(os.path.dirname(__file__), "results",
                                 "search_overhead_%s.json" % args.backend)

  results = []
  for policy in args.policies:
    for hidden in args.hidden:
      for num_actions in args.actions:
        for batch in args.batch:
          for sims in args.sims:
            skip = (args.skip_raw or
                    batch * sims * sims * num_actions > args.raw_max_work)
            r = run_config(policy, hidden, num_actions, batch, sims,
                           args.budget, skip_raw=skip,
                           with_policy_outputs=args.policy_outputs)
            results.append(r)
            print(json.dumps(r), flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(dict(device=str(jax.devices()[0]), jax=jax.__version__,
                   mctx=mctx.__version__, retain_freed_memory=malloc,
                   native_cpu_kernels=native, results=results), f, indent=1)
  print()
  print(markdown(results))
  print("\nwritten to", out)


if __name__ == "__main__":
  main()
