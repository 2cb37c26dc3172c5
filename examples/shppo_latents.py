"""SHPPO's heterogeneous actor on the embedded coverage task, and its latents over an episode.

A parameter-shared actor with a HeteLayer (weights generated from each agent's latent)
is trained with a plain actor-critic update (advantage = return - centralised value); the
``shppo`` plugin trains the LatentNet and the InferenceNet through
``hetplug_auxiliary_losses``. Afterwards the same model is run, without retraining, on
teams of other sizes (SHPPO's zero-shot scalability), and the latent means of one episode
are drawn as a scatter, one colour per agent (like the paper's Figs. 5-6).

    python examples/shppo_latents.py                 # about a minute on a CPU
    python examples/shppo_latents.py --iterations 600 --eval-agents 2 3 6 8

Writes runs/shppo_latents/results.json and latents.png. Observations hold the agent's own
position and the landmarks only, so their size does not depend on the team size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coverage_env import CoverageEnv  # noqa: E402

import hetplug  # noqa: E402
from hetplug.shppo import LatentNet, SHPPOActor  # noqa: E402
from hetplug.shppo.losses import discounted_returns  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--envs", type=int, default=64)
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--landmarks", type=int, default=4)
    p.add_argument("--grid", type=int, default=6)
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--lr", type=float, default=5e-4, help="actor and critic (Table V)")
    p.add_argument("--gamma", type=float, default=0.95, help="Table V")
    p.add_argument("--entropy-coef", type=float, default=0.01)
    p.add_argument("--eval-agents", type=int, nargs="+", default=[2, 3, 6])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/shppo_latents")
    return p.parse_args(argv)


def local_obs(env: CoverageEnv, obs: torch.Tensor) -> torch.Tensor:
    return obs[..., : 2 + 2 * env.k]  # own position + landmarks: same size for any team


def rollout(env, latent_net, actor, gen, greedy=False):
    """One batch of episodes; returns tensors [E, T, N, ...] and the team reward [E, T]."""
    obs = local_obs(env, env.reset(gen))
    rec = {"obs": [], "latent": [], "mu": [], "action": [], "reward": [], "alive": []}
    alive = torch.ones(env.e, dtype=torch.bool)
    for _ in range(env.horizon):
        with torch.no_grad():
            mu, sigma = latent_net(obs)
            latent = mu if greedy else LatentNet.sample(mu, sigma)
            logits, _ = actor(obs, latent)
            action = logits.argmax(-1) if greedy else torch.distributions.Categorical(logits=logits).sample()
        nxt, reward, done = env.step(action)
        for k, v in zip(rec, (obs, latent, mu, action, reward * alive, alive.clone()), strict=True):
            rec[k].append(v)
        alive = alive & ~done
        obs = local_obs(env, nxt)
    return {k: torch.stack(v, 1) for k, v in rec.items()}


def train(args):
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    env = CoverageEnv(args.envs, args.agents, args.landmarks, args.grid, args.horizon)
    obs_dim = 2 + 2 * args.landmarks
    latent_net = LatentNet(obs_dim)
    actor = SHPPOActor(obs_dim, env.n_actions)
    critic = nn.Sequential(nn.Linear(obs_dim, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=args.lr)
    pm = hetplug.get_plugin_manager(["shppo"], {"shppo": {"gamma": args.gamma}})
    spec = hetplug.HostSpec(n_agents=args.agents, max_steps=args.horizon, capacity=args.envs, n_actions=5)
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
    pm.hook.hetplug_bind(host=hetplug.HostObjects(latent_net=latent_net))
    history = []
    for it in range(args.iterations):
        data = rollout(env, latent_net, actor, gen)
        mask = data["alive"]
        returns = discounted_returns(data["reward"], mask, args.gamma)
        state = data["obs"].mean(-2)  # the critic's and InferenceNet's global view
        value = critic(state).squeeze(-1)
        adv = (returns - value).detach()
        logits, _ = actor(data["obs"], data["latent"].detach())  # eq. (13): latents without gradient
        dist = torch.distributions.Categorical(logits=logits)
        m = mask.float().unsqueeze(-1)
        actor_loss = (
            -(
                (dist.log_prob(data["action"]) * adv.unsqueeze(-1) + args.entropy_coef * dist.entropy()) * m
            ).sum()
            / m.sum()
        )
        critic_loss = ((value - returns).pow(2) * mask).sum() / mask.sum()
        opt.zero_grad()
        (actor_loss + critic_loss).backward()
        opt.step()
        batch = hetplug.TrajectoryBatch(reward=data["reward"], mask=mask, obs=data["obs"], state=state,
                                        extra={"returns": returns})  # fmt: skip
        (aux,) = pm.hook.hetplug_auxiliary_losses(batch=batch, update=it)
        ep_return = float(data["reward"].sum(1).mean())
        history.append({"iteration": it, "return": ep_return, **{k: float(v) for k, v in aux.items()}})
        if it % 25 == 0 or it == args.iterations - 1:
            print(f"it {it:4d} return {ep_return:6.2f} L_I {float(aux['shppo/inference_loss']):.3f} "
                  f"L_d {float(aux['shppo/distance']):.3f}", file=sys.stderr)  # fmt: skip
    return env, latent_net, actor, history


def evaluate(args, latent_net, actor, n_agents, episodes=256):
    env = CoverageEnv(episodes, n_agents, args.landmarks, args.grid, args.horizon)
    data = rollout(env, latent_net, actor, torch.Generator().manual_seed(args.seed + 1000 + n_agents))
    return float(data["reward"].sum(1).mean()), data


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env, latent_net, actor, history = train(args)
    zero_shot = {}
    episode = None
    for n in sorted({args.agents, *args.eval_agents}):
        ret, data = evaluate(args, latent_net, actor, n)
        zero_shot[n] = ret
        if n == args.agents:
            episode = data
    latents = episode["mu"][0]  # [T, N, L]: the first evaluation episode
    results = {
        "args": vars(args),
        "history": history,
        "eval_return_by_team_size": zero_shot,
        "episode_latent_means": latents.tolist(),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot_latents(latents, out / "latents.png")
    print(json.dumps({"final_return": history[-1]["return"], "eval_return_by_team_size": zero_shot}))
    return results


def plot_latents(latents: torch.Tensor, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    T, N, _ = latents.shape
    fig, ax = plt.subplots(figsize=(5, 4))
    for i in range(N):
        pts = latents[:, i]
        ax.plot(pts[:, 0], pts[:, 1], "-", alpha=0.3)
        ax.scatter(pts[:, 0], pts[:, 1], c=torch.arange(T), cmap="viridis", s=18, marker="os^vD<>p*h"[i % 10],
                   label=f"agent {i}")  # fmt: skip
    ax.set_xlabel("latent mean, dim 0")
    ax.set_ylabel("latent mean, dim 1")
    ax.set_title("SHPPO latents over one episode (colour: time step)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
