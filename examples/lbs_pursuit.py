"""Large Batch Sharing on PettingZoo SISL Pursuit, in the LBS paper's setting (its Table 1).

Eight independent DQN pursuers, 30 evaders, a 16x16 grid, **per-agent rewards**
(``shared_reward=False``: each pursuer is paid for its own tags and catches) and the
paper's reward values. Three variants run side by side with the same seed, and their
returns are printed in one table:

- ``independent``: one Q-network and one replay buffer per pursuer; each learner draws
  B transitions from its own buffer (IDQN);
- ``ps``: parameter sharing, one Q-network and one replay buffer collecting every
  pursuer's transitions; the single learner draws B of them per update (the paper's PS);
- ``lbs``: independent networks and buffers; each agent draws B from its buffer, the
  K = 8 * B transitions form a large batch, every learner computes its |TD| on all of it
  and keeps B with p2 proportional to |TD|, weighted 1/(K p2) (hetplug's ``lbs`` plugin);
- ``same_rb`` (not run by default; the paper's fourth curve, "IDQN same RB"): independent
  networks drawing B uniformly from all buffers (LBS with p1 = p2 = uniform).

The default is a reduced scale that runs in a few minutes on a CPU (an MLP instead of the
CNN, 20k environment steps per variant, a smaller buffer). The paper's scale:

    python examples/lbs_pursuit.py --network cnn --frames 800000 --capacity 120000 --train-every 1

Writes runs/lbs_pursuit/results.json and returns.png. Needs ``pip install -c constraints.txt -e ".[pursuit]"`` from the clone
(pettingzoo 1.24.3 and pygame).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import hetplug
from hetplug.lbs import AgentBuffers

N_ACTIONS = 5
OBS_SHAPE = (7, 7, 3)

#: the variants: what each learner's mini-batch is drawn from, and how many Q-networks
METHODS = {
    "independent": "IDQN: own network, own buffer",
    "ps": "parameter sharing: one network, one buffer of every pursuer's transitions",
    "lbs": "LBS: own network, B of the K = M x B large batch by |TD|",
    "same_rb": "IDQN same RB: own network, B uniformly from every buffer",
}
DEFAULT_METHODS = ("independent", "ps", "lbs")

#: PettingZoo pursuit_v4 arguments of the paper's Table 1 (x/y sizes, pursuers, evaders and
#: max cycles come from the command line)
TABLE_1 = {
    "shared_reward": False,
    "surround": True,
    "tag_reward": 0.01,
    "constraint_window": 1.0,
    "obs_range": 7,
    "n_catch": 2,
    "urgency_reward": -0.1,
    "catch_reward": 5.0,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS))
    p.add_argument("--frames", type=int, default=20_000, help="environment steps per variant")
    p.add_argument(
        "--network", choices=["mlp", "cnn"], default="mlp", help="cnn: the paper's [32, 64, 64], kernel 2"
    )
    p.add_argument(
        "--capacity", type=int, default=20_000, help="transitions per agent buffer (paper: 120000)"
    )
    p.add_argument("--batch", type=int, default=32, help="mini-batch B per learner (paper: 32)")
    p.add_argument("--lr", type=float, default=1.6e-4, help="paper: 0.00016")
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--eps-start", type=float, default=0.1, help="paper: 0.1")
    p.add_argument("--eps-end", type=float, default=0.001, help="paper: 0.001")
    p.add_argument(
        "--eps-fraction", type=float, default=0.2, help="share of frames over which epsilon decays"
    )
    p.add_argument(
        "--target-every", type=int, default=1000, help="env steps between target syncs (paper: 1000)"
    )
    p.add_argument("--train-every", type=int, default=4, help="env steps per gradient update")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--max-cycles", type=int, default=500, help="episode length (paper: 500)")
    p.add_argument("--pursuers", type=int, default=8)
    p.add_argument("--evaders", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="runs/lbs_pursuit")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- networks
def make_q_network(kind: str) -> nn.Module:
    if kind == "cnn":  # paper Table 1: CNN layers [32, 64, 64], kernel 2, stride 1
        return nn.Sequential(
            Channels(),
            nn.Conv2d(3, 32, 2),
            nn.ReLU(),
            nn.Conv2d(32, 64, 2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, N_ACTIONS),
        )
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(7 * 7 * 3, 64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, N_ACTIONS),
    )


class Channels(nn.Module):
    def forward(self, x):  # [n, 7, 7, 3] -> [n, 3, 7, 7]
        return x.permute(0, 3, 1, 2)


class IndependentQ:
    """M independent Q-networks evaluated together (stacked parameters, torch.func.vmap).

    Adam over the stacked parameters is elementwise, so it is exactly M separate optimisers.
    """

    def __init__(self, kind: str, n_agents: int, lr: float, device: str | torch.device, seed: int):
        torch.manual_seed(seed)
        models = [make_q_network(kind).to(device) for _ in range(n_agents)]
        params, _ = torch.func.stack_module_state(models)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.target = {k: v.detach().clone() for k, v in self.params.items()}
        self.base = copy.deepcopy(models[0]).to("meta")
        self.optimizer = torch.optim.Adam(self.params.values(), lr=lr)

    def q(self, obs: torch.Tensor, params=None, shared: bool = False) -> torch.Tensor:
        """``obs [M, n, ...]`` (learner i sees row i) or ``[n, ...]`` with ``shared``: ``[M, n, A]``."""

        def one(p, x):
            return torch.func.functional_call(self.base, p, (x,))

        return torch.func.vmap(one, in_dims=(0, None if shared else 0))(params or self.params, obs)

    def sync_target(self) -> None:
        for k, v in self.params.items():
            self.target[k].copy_(v.detach())


def td_errors(net: IndependentQ, items: dict, gamma: float, shared: bool, params=None) -> torch.Tensor:
    """Every learner's TD error ``[M, n]`` on ``items`` (``[n, ...]`` with ``shared``, else ``[M, n, ...]``)."""
    obs, nxt = items["obs"].float(), items["next_obs"].float()
    q = net.q(obs, params, shared)
    action = items["action"].expand(q.shape[:2]) if shared else items["action"]
    q_taken = q.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        q_next = net.q(nxt, net.target, shared).amax(-1)
        target = items["reward"] + gamma * (1.0 - items["done"]) * q_next
    return q_taken - target


def dqn_update(net: IndependentQ, items: dict, weights: torch.Tensor, gamma: float) -> torch.Tensor:
    """One SGD step of every learner on its own ``[M, B]`` items, loss sum_i mean_b w * td^2 / 2."""
    td = td_errors(net, items, gamma, shared=False)
    loss = (weights * 0.5 * td.pow(2)).mean(1).sum()
    net.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    net.optimizer.step()
    return td.detach()


def large_batch_td(net: IndependentQ, buffers: AgentBuffers, gamma: float):
    """The ``td_fn`` LBS asks for: every learner's TD error on every candidate ``[M, K]``."""

    @torch.no_grad()
    def td_fn(sources: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        return td_errors(net, buffers.gather(sources, slots), gamma, shared=True)

    return td_fn


# ----------------------------------------------------------------------------- training
def make_env(args):
    from pettingzoo.sisl import pursuit_v4  # the pursuit extra

    return pursuit_v4.parallel_env(
        n_pursuers=args.pursuers, n_evaders=args.evaders, max_cycles=args.max_cycles, x_size=16, y_size=16,
        **TABLE_1,
    )  # fmt: skip


def run_method(method: str, args, progress) -> dict:
    device = torch.device(args.device)
    env = make_env(args)
    obs_d, _ = env.reset(seed=args.seed)
    agents = list(env.agents)
    M, B = len(agents), args.batch
    shared_net = method == "ps"  # one Q-network (and one buffer: every pursuer's transitions)
    net = IndependentQ(args.network, 1 if shared_net else M, args.lr, device, args.seed)
    buffers = AgentBuffers(M, args.capacity, device=device)
    plugins = ["lbs"] if method in ("lbs", "same_rb") else []
    options = {"lbs": {"priority": "uniform" if method == "same_rb" else "td"}} if plugins else {}
    pm = hetplug.get_plugin_manager(plugins, options)
    pm.hook.hetplug_configure.call_historic(
        kwargs={"spec": hetplug.HostSpec(n_agents=M, max_steps=1, capacity=args.capacity, device=device)}
    )
    gen = torch.Generator(device).manual_seed(args.seed)
    explore = torch.Generator().manual_seed(args.seed + 1)
    td_fn = large_batch_td(net, buffers, args.gamma)

    def stack(d):
        return torch.as_tensor(np.stack([d[a] for a in agents]), device=device)

    obs = stack(obs_d)
    agent_return = torch.zeros(M)
    returns, agent_returns, frames_at, shared_fraction = [], [], [], []
    start = time.perf_counter()
    for frame in range(1, args.frames + 1):
        eps = max(
            args.eps_end,
            args.eps_start - (args.eps_start - args.eps_end) * frame / (args.eps_fraction * args.frames),
        )
        with torch.no_grad():  # [M, 1, A] from M networks, or [1, M, A] from the shared one
            q = net.q(obs.unsqueeze(0)) if shared_net else net.q(obs.unsqueeze(1))
            greedy = q.reshape(M, N_ACTIONS).argmax(-1).cpu()
        random_a = torch.randint(0, N_ACTIONS, (M,), generator=explore)
        action = torch.where(torch.rand(M, generator=explore) < eps, random_a, greedy)
        nxt_d, rew_d, term_d, trunc_d, _ = env.step({a: int(action[i]) for i, a in enumerate(agents)})
        nxt = stack(nxt_d)
        reward = torch.tensor([rew_d[a] for a in agents], dtype=torch.float32, device=device)
        terminated = torch.tensor([float(term_d[a]) for a in agents], device=device)
        transition = {
            "obs": obs.half().unsqueeze(0),
            "action": action.to(device).unsqueeze(0),
            "reward": reward.unsqueeze(0),
            "next_obs": nxt.half().unsqueeze(0),
            "done": terminated.unsqueeze(0),
        }
        buffers.add(transition)
        if plugins:  # the lbs plugin tracks the same ring slots
            pm.hook.hetplug_replay_add(
                batch=hetplug.TrajectoryBatch(
                    reward=reward.view(1, 1, M), mask=torch.ones(1, 1, dtype=torch.bool, device=device)
                )
            )
        agent_return += reward.cpu()  # per-agent rewards: each pursuer's own
        obs = nxt
        if all(term_d.values()) or all(trunc_d.values()) or not env.agents:
            returns.append(float(agent_return.sum()))
            agent_returns.append(agent_return.tolist())
            frames_at.append(frame)
            agent_return = torch.zeros(M)
            obs = stack(env.reset(seed=args.seed + len(returns))[0])
        if frame >= args.learning_starts and frame % args.train_every == 0:
            if plugins:
                sample = pm.hook.hetplug_replay_sample(batch_size=B, generator=gen, td_fn=td_fn)
                sources, slots, weights = sample.sources, sample.indices, sample.weights
            elif shared_net:  # the one learner: B of every pursuer's transitions
                slots = torch.randint(len(buffers), (1, B), generator=gen, device=device)
                sources = torch.randint(M, (1, B), generator=gen, device=device)
                weights = torch.ones(1, B, device=device)
            else:
                slots = torch.randint(len(buffers), (M, B), generator=gen, device=device)
                sources = torch.arange(M, device=device).unsqueeze(1).expand(M, B)
                weights = torch.ones(M, B, device=device)
            dqn_update(net, buffers.gather(sources, slots), weights, args.gamma)
            if plugins:
                metrics = pm.hook.hetplug_after_update(update=frame)
                shared_fraction.append(float(metrics[0]["lbs/shared_fraction"]))
        if frame % args.target_every == 0:
            net.sync_target()
        progress(method, frame, returns)
    env.close()
    last = returns[-5:]
    return {
        "episode_returns": returns,
        "agent_returns": agent_returns,
        "episode_end_frames": frames_at,
        "final_mean_return": sum(last) / max(1, len(last)),
        "final_mean_agent_return": sum(last) / max(1, len(last)) / M,
        "networks": 1 if shared_net else M,
        "shared_fraction": sum(shared_fraction) / max(1, len(shared_fraction)),
        "seconds": time.perf_counter() - start,
    }


def table(results: dict, pursuers: int) -> str:
    """The variants' returns side by side (mean of the last 5 episodes)."""
    lines = [
        f"| variant | networks | episodes | return (sum of {pursuers} pursuers) | per pursuer | shared | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, r in results.items():
        lines.append(
            f"| {method} | {r['networks']} | {len(r['episode_returns'])} | {r['final_mean_return']:.2f} | "
            f"{r['final_mean_agent_return']:.2f} | {r['shared_fraction']:.2f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        from tqdm import tqdm
    except ImportError:  # progress bars are optional
        tqdm = None
    results = {}
    for method in args.methods:
        bar = tqdm(total=args.frames, desc=method, unit="frame") if tqdm else None

        def progress(m, frame, returns, bar=bar):
            if bar is not None and frame % 100 == 0:
                bar.update(100)
                if returns:
                    bar.set_postfix(ret=f"{returns[-1]:.1f}")

        results[method] = run_method(method, args, progress)
        if bar is not None:
            bar.close()
    summary = {"args": vars(args), "table_1": TABLE_1, "results": results}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    plot(results, out / "returns.png", args)
    print(table(results, args.pursuers))
    return summary


def plot(results: dict, path: Path, args) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, r in results.items():
        y = torch.tensor(r["episode_returns"])
        if len(y) == 0:
            continue
        k = min(5, len(y))
        smooth = torch.nn.functional.avg_pool1d(y.view(1, 1, -1), k, 1).flatten() if k > 1 else y
        ax.plot(r["episode_end_frames"][k - 1 :], smooth.tolist(), label=method)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"episode return (sum over {args.pursuers} pursuers, mean of 5)")
    ax.set_title(f"Pursuit, per-agent rewards, DQN ({args.network}), seed {args.seed}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
