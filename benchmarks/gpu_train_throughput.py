import time, jax, json
from mctx_planner.config import preset
from mctx_planner.train import make_agent
print(jax.devices(), flush=True)
rows = {}
for dom, alg in [("tictactoe", None), ("tictactoe", "gumbel_muzero"), ("connect4", None)]:
    cfg = preset(dom, alg)
    a = make_agent(cfg); s = a.init(jax.random.PRNGKey(0))
    t = time.time(); s, m = a.iteration(s); jax.block_until_ready(m); first = time.time() - t
    t = time.time()
    for _ in range(5): s, m = a.iteration(s)
    jax.block_until_ready(m); it = (time.time() - t) / 5
    r = dict(preset=f"{dom}/{cfg.algorithm}", env_steps_per_s=cfg.num_envs*cfg.unroll_length/it, iteration_s=it, first_iteration_s=first, B=cfg.num_envs, S=cfg.num_simulations, updates=cfg.updates_per_iteration, device=jax.devices()[0].device_kind)
    print(json.dumps(r), flush=True)
