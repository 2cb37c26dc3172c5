"""HetDPS case study (section 4.3, Fig. 3): which heterogeneity does each distance see?

A small multi-agent spread task: two groups of two agents move in the plane among two
landmarks. Six versions change what differs between the groups:

    v1  observation: group B sees its observation vector in a shuffled order
    v2  response transition: group B's maximum speed is 3x group A's
    v3  effect transition: group A attracts nearby agents, group B repels them
    v4  objective: the groups are rewarded for reaching different landmarks
    v5  v1 + v4
    v6  v1 + v2 + v3 + v4

Random-policy trajectories fill the samples. Like the paper, Obs-, Response-, Effect- and
Objective-Het are measured model-based: every agent's function is evaluated at the same
x (an ego-centric state and action that occurred; y: the observation, the next local
state, the push on the other agents, the reward). Meta-Het is model-free, from each
agent's meta-transition (local state, action -> next local state, next observation,
replicated reward). The distance matrices are drawn as heatmaps
(one row per version) and the Meta-Het matrix is grouped by affinity propagation.

    python examples/hetdps_case_study.py            # about a minute on a CPU
    python examples/hetdps_case_study.py --versions v2 v6 --episodes 64

Writes runs/hetdps_case_study/distances.png and results.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from hetplug.distance import DistanceEstimator, build_features
from hetplug.sharing import cluster_agents

GROUP = torch.tensor([0, 0, 1, 1])  # agents 0, 1 form group A; agents 2, 3 group B
VERSIONS = {
    "v1": {"observation"},
    "v2": {"response"},
    "v3": {"effect"},
    "v4": {"objective"},
    "v5": {"observation", "objective"},
    "v6": {"observation", "response", "effect", "objective"},
}
KINDS = ("observation", "response", "effect", "objective", "meta")
TITLES = {
    "observation": "Obs-Het",
    "response": "Response-Het",
    "effect": "Effect-Het",
    "objective": "Objective-Het",
    "meta": "Meta-Het",
}


OTHERS = torch.tensor([[j for j in range(4) if j != i] for i in range(4)])  # [N, 3]


class SpreadTask:
    """Batched spread dynamics for E environments, N = 4 agents, 2 landmarks (pure torch).

    Every agent function reads the agent's *ego state* ``[..., 20]`` (own position and
    velocity, the others' relative positions and velocities, the landmarks' relative
    positions) and the agent's type parameters, so the same function can be evaluated for
    any agent at any x: that is what the model-based distances need.
    """

    dt = 0.1

    def __init__(self, differs: set[str]) -> None:
        b = GROUP.float()
        self.speed = 1.0 + 2.0 * b * ("response" in differs)  # [N]
        self.force = 0.5 * (1 - 2 * b) if "effect" in differs else torch.full((4,), 0.5)  # > 0 pulls
        self.target = GROUP.clone() if "objective" in differs else torch.zeros(4, dtype=torch.int64)
        shuffled = torch.randperm(14, generator=torch.Generator().manual_seed(1))
        self.obs_order = torch.stack([torch.arange(14), shuffled])[
            GROUP if "observation" in differs else 0 * GROUP
        ]

    # -- the four functions of Table 1, for agent types given per agent (broadcast over [..., N]) --
    def observe(self, ego: torch.Tensor) -> torch.Tensor:
        own, others, marks = ego[..., :4], ego[..., 4:16].unflatten(-1, (3, 4)), ego[..., 16:]
        obs = torch.cat([own, marks, others[..., :2].flatten(-2)], -1)  # [..., N, 14]
        return torch.gather(obs, -1, self.obs_order.expand(*obs.shape[:-2], -1, -1))

    def respond(self, ego: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        vel = act * self.speed[:, None]
        return torch.cat([ego[..., :2] + vel * self.dt, vel], -1)  # own next (pos, vel)

    def effect(self, ego: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        rel = ego[..., 4:16].unflatten(-1, (3, 4))[..., :2]  # others relative to me
        dist = rel.norm(dim=-1, keepdim=True).clamp_min(1e-3)
        push = -self.force[:, None, None] * rel / dist * torch.exp(-2 * dist) * self.dt
        return push.flatten(-2)  # [..., N, 6]: how I move each other agent

    def objective(self, ego: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        marks = ego[..., 16:].unflatten(-1, (2, 2))
        idx = self.target[:, None, None].expand(*marks.shape[:-3], 4, 1, 2)
        goal = marks.gather(-2, idx).squeeze(-2)  # [..., N, 2]: each agent's own landmark
        return -(goal - act * self.speed[:, None] * self.dt).norm(dim=-1, keepdim=True)

    # -- the world --
    def reset(self, envs: int, gen: torch.Generator) -> None:
        self.pos = torch.rand(envs, 4, 2, generator=gen) * 2 - 1
        self.vel = torch.zeros(envs, 4, 2)
        self.landmarks = torch.rand(envs, 2, 2, generator=gen) * 2 - 1

    def local_state(self) -> torch.Tensor:
        return torch.cat([self.pos, self.vel], -1)  # [E, N, 4]

    def ego(self) -> torch.Tensor:
        local = self.local_state()
        others = local[:, OTHERS] - torch.cat([self.pos, torch.zeros_like(self.vel)], -1)[:, :, None]
        marks = self.landmarks[:, None] - self.pos[:, :, None]
        return torch.cat([local, others.flatten(2), marks.flatten(2)], -1)  # [E, N, 20]

    def step(self, act: torch.Tensor) -> torch.Tensor:
        ego = self.ego()
        reward = self.objective(ego, act).squeeze(-1)
        nxt = self.respond(ego, act)
        push = self.effect(ego, act).unflatten(-1, (3, 2))  # [E, j, 3, 2]: j's push on OTHERS[j]
        received = torch.zeros_like(self.pos).index_add_(1, OTHERS.flatten(), push.flatten(1, 2))
        self.pos, self.vel = nxt[..., :2] + received, nxt[..., 2:]
        return reward


def collect(task: SpreadTask, episodes: int, steps: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    task.reset(episodes, gen)
    rec: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("ego", "local", "action", "reward", "next_local", "next_obs")
    }
    for _ in range(steps):
        ego = task.ego()
        rec["ego"].append(ego)
        rec["local"].append(task.local_state())
        action = torch.rand(episodes, 4, 2, generator=gen) * 2 - 1
        rec["action"].append(action)
        rec["reward"].append(task.step(action))
        rec["next_local"].append(task.local_state())
        rec["next_obs"].append(task.observe(task.ego()))
    return {k: torch.cat(v) for k, v in rec.items()}  # [S = episodes * steps, N, ...]


def samples(kind: str, task: SpreadTask, d: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "meta":  # model-free, from what each agent lived through
        fields = {
            "local_state": d["local"],
            "action": d["action"],
            "next_local_state": d["next_local"],
            "next_obs": d["next_obs"],
            "reward": d["reward"].unsqueeze(-1),
        }
        return build_features("meta", fields, 4)
    # Model-based: every agent's function at the same x (the ego states and actions that
    # occurred, whoever had them), so d_ij compares F_i(.|x) with F_j(.|x) as in eq. (3).
    s = d["ego"].shape[0] * 4
    ego = d["ego"].reshape(s, 1, -1).expand(-1, 4, -1)
    act = d["action"].reshape(s, 1, -1).expand(-1, 4, -1)
    if kind == "observation":
        return ego, task.observe(ego)
    y = {"response": task.respond, "effect": task.effect, "objective": task.objective}[kind](ego, act)
    return torch.cat([ego, act], -1), y


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--versions", nargs="+", default=list(VERSIONS), choices=list(VERSIONS))
    p.add_argument("--episodes", type=int, default=32)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--epochs", type=int, default=10, help="CVAE epochs (MADPS default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/hetdps_case_study")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    results: dict = {"versions": {}}
    for version in args.versions:
        task = SpreadTask(VERSIONS[version])
        data = collect(task, args.episodes, args.steps, torch.Generator().manual_seed(args.seed))
        row = {}
        for kind in KINDS:
            x, y = samples(kind, task, data)
            mode = "model_free" if kind == "meta" else "model_based"
            est = DistanceEstimator(
                4, x.shape[-1], y.shape[-1], mode, {"epochs": args.epochs}, seed=args.seed
            )
            est.add(x, y)
            est.fit()
            row[kind] = est.distance_matrix().tolist()
        meta = torch.tensor(row["meta"], dtype=torch.float64)
        groups = cluster_agents(meta.numpy()).labels.tolist()
        results["versions"][version] = {"distances": row, "meta_groups": groups}
        within = float(meta[0, 1] + meta[2, 3]) / 2
        between = float(meta[:2, 2:].mean())
        print(
            f"{version} ({', '.join(sorted(VERSIONS[version]))}): Meta-Het within {within:.3f}, between {between:.3f}, groups {groups}"
        )
    os.makedirs(args.out, exist_ok=True)
    Path(args.out, "results.json").write_text(json.dumps(results, indent=1))
    draw(results, Path(args.out, "distances.png"))
    return results


def draw(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions = list(results["versions"])
    fig, axes = plt.subplots(
        len(versions), len(KINDS), figsize=(2.2 * len(KINDS), 2.2 * len(versions)), squeeze=False
    )
    for r, version in enumerate(versions):
        for c, kind in enumerate(KINDS):
            ax = axes[r][c]
            m = torch.tensor(results["versions"][version]["distances"][kind])
            im = ax.imshow(m, cmap="viridis", vmin=0, vmax=max(float(m.max()), 1e-6))
            ax.set_xticks(range(4))
            ax.set_yticks(range(4))
            ax.tick_params(labelsize=6)
            bar = fig.colorbar(im, ax=ax, fraction=0.046)
            bar.ax.tick_params(labelsize=6)
            bar.set_label("distance", fontsize=6)
            ax.set_xlabel("agent", fontsize=6)
            if r == 0:
                ax.set_title(TITLES[kind], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{version}: {'+'.join(sorted(VERSIONS[version]))}\nagent", fontsize=6)
            else:
                ax.set_ylabel("agent", fontsize=6)
    fig.suptitle("Distances between the agents per heterogeneity type (columns), per environment version (rows)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
