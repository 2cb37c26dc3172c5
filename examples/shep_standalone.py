"""hetplug in a plain PyTorch training loop: VDN on an embedded coverage task,
trained with uniform replay, PER and SHEP side by side.

This is also the reference *host*: it shows every call a host makes
(configure -> trajectories_collected -> replay_add -> replay_sample ->
update_priorities) with plain tensors.

    python examples/shep_standalone.py                  # about a minute on 2 CPU cores
    python examples/shep_standalone.py --iterations 600 --methods uniform shep

Writes runs/shep_standalone/results.json and curves.png.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coverage_env import CoverageEnv  # noqa: E402

import hetplug  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--methods", nargs="+", default=["uniform", "per", "shep"], choices=["uniform", "per", "shep"]
    )
    p.add_argument("--iterations", type=int, default=300, help="collect+train iterations per method")
    p.add_argument("--envs", type=int, default=16, help="episodes collected per iteration")
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--grid", type=int, default=8)
    p.add_argument("--capacity", type=int, default=2000, help="replay capacity in episodes")
    p.add_argument("--batch", type=int, default=32, help="episodes per update")
    p.add_argument("--updates", type=int, default=8, help="gradient updates per iteration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="runs/shep_standalone")
    return p.parse_args(argv)


class QNet(nn.Module):
    """Parameter-shared agent network: (obs, one-hot id) -> Q-values."""

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, hidden: int = 64):
        super().__init__()
        self.n_agents = n_agents
        self.net = nn.Sequential(
            nn.Linear(obs_dim + n_agents, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_actions),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        ids = torch.eye(self.n_agents, device=obs.device).expand(*obs.shape[:-1], self.n_agents)
        return self.net(torch.cat([obs, ids], -1))


def collect(env, qnet, epsilon, gen, horizon):
    """One episode per env, as [E, T, ...] tensors (steps after termination are padding)."""
    obs = env.reset(gen)
    e, n = env.e, env.n
    t_obs = torch.zeros(e, horizon + 1, n, env.obs_dim, device=env.device)
    actions = torch.zeros(e, horizon, n, dtype=torch.long, device=env.device)
    reward = torch.zeros(e, horizon, device=env.device)
    done = torch.zeros(e, horizon, dtype=torch.bool, device=env.device)
    mask = torch.zeros(e, horizon, dtype=torch.bool, device=env.device)
    positions = torch.zeros(e, horizon, n, 2, device=env.device)
    alive = torch.ones(e, dtype=torch.bool, device=env.device)
    for t in range(horizon):
        t_obs[:, t] = obs
        positions[:, t] = env.positions()
        with torch.no_grad():
            greedy = qnet(obs).argmax(-1)
        explore = torch.rand(e, n, generator=gen).to(env.device) < epsilon
        random = torch.randint(0, env.n_actions, (e, n), generator=gen).to(env.device)
        a = torch.where(explore, random, greedy)
        obs, r, d = env.step(a)
        actions[:, t], reward[:, t], mask[:, t] = a, r * alive, alive
        done[:, t] = (d | (t == horizon - 1)) & alive
        alive = alive & ~d
    t_obs[:, horizon] = obs
    return dict(obs=t_obs, actions=actions, reward=reward, done=done, mask=mask, positions=positions)


def relabelled_copy(data: dict, copy_batch: hetplug.TrajectoryBatch) -> dict:
    """The host's fields of Group-HER's copies: each copied step's row and step are in
    ``extra["hetplug_row"]`` / ``["hetplug_step"]``; reward, done and mask are the copy's."""
    rows, steps = copy_batch.extra["hetplug_row"], copy_batch.extra["hetplug_step"]  # [K, T]
    out = {k: v[rows, steps] for k, v in data.items() if k != "obs"}
    horizon = steps.shape[1]
    obs_steps = (steps[:, :1] + torch.arange(horizon + 1, device=steps.device)).clamp_max(horizon)
    out["obs"] = data["obs"][rows[:, :1], obs_steps]  # T + 1 observations: the next one too
    out.update(reward=copy_batch.reward, done=copy_batch.done, mask=copy_batch.mask)
    return out


def td_errors(qnet, target, batch, gamma):
    """VDN team TD errors [B, T] with double-Q targets."""
    q = qnet(batch["obs"][:, :-1]).gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1).sum(-1)
    with torch.no_grad():
        next_obs = batch["obs"][:, 1:]
        best = qnet(next_obs).argmax(-1, keepdim=True)
        q_next = target(next_obs).gather(-1, best).squeeze(-1).sum(-1)
        y = batch["reward"] + gamma * (~batch["done"]).float() * q_next
    return q - y


def train(method: str, args) -> dict:
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    device = torch.device(args.device)
    horizon = 20
    env = CoverageEnv(args.envs, n_agents=args.agents, grid=args.grid, horizon=horizon, device=device)
    eval_env = CoverageEnv(64, n_agents=args.agents, grid=args.grid, horizon=horizon, device=device)
    qnet = QNet(env.obs_dim, env.n, env.n_actions).to(device)
    target = copy.deepcopy(qnet)
    opt = torch.optim.Adam(qnet.parameters(), lr=5e-4)

    # --- hetplug: one plugin manager per run, configured once --------------------------
    plugins = [] if method == "uniform" else [method]
    options = {
        "shep": {"grid_low": (0, 0), "grid_high": (1, 1), "grid_shape": (4, 4), "normalize_entropies": True}
    }
    pm = hetplug.get_plugin_manager(plugins, {k: v for k, v in options.items() if k in plugins})
    spec = hetplug.HostSpec(
        n_agents=env.n, max_steps=horizon, capacity=args.capacity, n_actions=env.n_actions, device=device
    )
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})

    storage = None
    size, cursor, her_copies = 0, 0, 0
    curve = []
    start = time.perf_counter()
    for it in range(args.iterations):
        epsilon = max(0.05, 1.0 - it / (0.6 * args.iterations))
        data = collect(env, qnet, epsilon, gen, horizon)
        traj = hetplug.TrajectoryBatch(
            reward=data["reward"],
            mask=data["mask"],
            done=data["done"],
            positions=data["positions"],
            actions=data["actions"],
        )
        # trajectories_collected: SHEP's intrinsic reward and Group-HER's relabelled copies.
        copies = []
        for res in pm.hook.hetplug_trajectories_collected(batch=traj):
            if res.intrinsic_reward is not None:
                data["reward"] = data["reward"] + res.intrinsic_reward
            if res.extra_trajectories is not None:
                copies.append(res.extra_trajectories)
        # replay_add: the prioritiser chooses the ring slots; uniform replay uses its own ring.
        slots = pm.hook.hetplug_replay_add(batch=traj.replace(reward=data["reward"]))
        if slots is None:
            slots = (cursor + torch.arange(args.envs, device=device)) % args.capacity
            cursor = (cursor + args.envs) % args.capacity
        if storage is None:
            storage = {
                k: torch.zeros(args.capacity, *v.shape[1:], dtype=v.dtype, device=device)
                for k, v in data.items()
            }
        for k, v in data.items():
            storage[k][slots] = v
        size = min(args.capacity, size + args.envs)
        for copy_batch in copies:  # each copy: an episode of a collected row, relabelled
            stored = relabelled_copy(data, copy_batch)
            copy_slots = pm.hook.hetplug_replay_add(batch=copy_batch)
            for k, v in stored.items():
                storage[k][copy_slots] = v
            size = min(args.capacity, size + len(copy_slots))
            her_copies += len(copy_slots)

        for _ in range(args.updates):
            sample = pm.hook.hetplug_replay_sample(batch_size=args.batch, generator=gen, td_fn=None)
            if sample is None:
                idx = torch.randint(0, size, (args.batch,), generator=gen).to(device)
                weights = torch.ones(args.batch, device=device)
            else:
                idx, weights = sample.indices, sample.weights.float()
            batch = {k: v[idx] for k, v in storage.items()}
            td = td_errors(qnet, target, batch, gamma=0.95)
            m = batch["mask"].float()
            per_traj = (td.pow(2) * m).sum(-1) / m.sum(-1).clamp_min(1)
            loss = (weights * per_traj).mean()  # IS weights per trajectory (eq. 7)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(qnet.parameters(), 10.0)
            opt.step()
            pm.hook.hetplug_update_priorities(indices=idx, td_error=td.detach(), mask=batch["mask"])
        if it % 10 == 0:
            target.load_state_dict(qnet.state_dict())
        if it % 25 == 0 or it == args.iterations - 1:
            ret = evaluate(eval_env, qnet, args.seed + 1000, horizon)
            curve.append({"iteration": it, "episodes": (it + 1) * args.envs, "eval_return": ret})
            print(
                f"  [{method:7s}] iter {it:4d}  episodes {(it + 1) * args.envs:6d}  eval return {ret:6.3f}",
                flush=True,
            )
    return {
        "method": method,
        "curve": curve,
        "final_eval_return": curve[-1]["eval_return"],
        "her_copies": her_copies,  # Group-HER's relabelled episodes stored beside the originals
        "seconds": time.perf_counter() - start,
    }


def evaluate(env, qnet, seed, horizon):
    gen = torch.Generator().manual_seed(seed)
    data = collect(env, qnet, 0.0, gen, horizon)
    return data["reward"].sum(-1).mean().item()


def main(argv=None):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"hetplug {hetplug.__version__}: VDN on coverage ({args.agents} agents, {args.grid}x{args.grid}), device {args.device}"
    )
    results = [train(m, args) for m in args.methods]
    summary = {"config": vars(args), "results": results}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for r in results:
            ax.plot(
                [c["episodes"] for c in r["curve"]], [c["eval_return"] for c in r["curve"]], label=r["method"]
            )
        ax.set_xlabel("training episodes")
        ax.set_ylabel("greedy evaluation return")
        ax.set_title("VDN on coverage: uniform vs PER vs SHEP replay")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "curves.png", dpi=120)
        print(f"wrote {out / 'curves.png'}")
    except ImportError:
        print(
            "matplotlib not installed: skipping curves.png (pip install -c constraints.txt -e '.[examples]' from the clone)"
        )
    for r in results:
        print(f"{r['method']:8s} final eval return {r['final_eval_return']:.3f}  ({r['seconds']:.0f} s)")
    print(f"wrote {out / 'results.json'}")
    return summary


if __name__ == "__main__":
    main()
