"""HetDPS in a plain PyTorch loop: the host's own actor and update, hetplug's regrouping.

Four agents move on a line. Agents 0 and 1 move the way their action says; agents 2 and 3
move the opposite way (the "response" heterogeneity of the HetDPS paper, Table 1). The
actor starts fully shared (one slot); every ``--interval`` updates the ``hetdps`` plugin
refits its CVAE on the collected meta-transitions, computes the agents' distances, groups
them (affinity propagation) and applies the plan to the actor's parameters and Adam state
in place. The host's update is a stand-in (imitating the actions taken), unchanged by
hetplug.

    python examples/hetdps_loop.py                      # prints each plan and the final grouping

``main`` returns ``{"routing": [slot per agent], "plans": [str], "types": [0, 0, 1, 1]}``.
"""

from __future__ import annotations

import argparse

import torch

import hetplug
from hetplug.sharing import ParameterSlots, SlotMLP

N_AGENTS, N_ACTIONS, T, B = 4, 3, 25, 16
TYPES = torch.tensor([0, 0, 1, 1])  # agents 2 and 3 respond to actions the opposite way
STEP = torch.tensor([-0.1, 0.0, 0.1])  # the move of each action, for type 0


def collect(actor: SlotMLP, generator: torch.Generator) -> hetplug.TrajectoryBatch:
    """``B`` episodes of ``T`` steps; actions drawn from the actor's softmax."""
    obs = torch.empty(B, T, N_AGENTS, 1)
    actions = torch.empty(B, T, N_AGENTS, dtype=torch.int64)
    x = torch.rand(B, N_AGENTS, 1, generator=generator) * 2 - 1
    sign = 1 - 2 * TYPES.float()  # +1 or -1 per agent
    with torch.no_grad():
        for t in range(T):
            obs[:, t] = x
            probs = torch.softmax(actor(x), dim=-1)  # [B, N, actions]
            a = torch.multinomial(probs.reshape(-1, N_ACTIONS), 1, generator=generator).reshape(B, N_AGENTS)
            actions[:, t] = a
            x = (x + (sign * STEP[a])[..., None]).clamp(-1, 1)
    reward = -obs.abs().mean(dim=(2, 3))  # the team is rewarded for staying near 0
    mask = torch.ones(B, T, dtype=torch.bool)
    return hetplug.TrajectoryBatch(reward=reward, mask=mask, obs=obs, actions=actions)


def train(actor: SlotMLP, opt: torch.optim.Optimizer, batch: hetplug.TrajectoryBatch) -> None:
    """The host's own update (here: imitate the actions taken, one Adam step)."""
    logits = actor(batch.obs)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, N_ACTIONS), batch.actions.reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--interval", type=int, default=10, help="regroup every this many updates")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    interval, n_updates = args.interval, args.updates

    actor = SlotMLP(N_AGENTS, 1, N_ACTIONS, hidden=(32,), start="full")  # one slot per agent, all routed to 0
    opt = torch.optim.Adam(actor.parameters(), lr=1e-3)
    spec = hetplug.HostSpec(n_agents=N_AGENTS, max_steps=T, capacity=B, n_actions=N_ACTIONS)
    pm = hetplug.get_plugin_manager(["hetdps"], {"hetdps": {"interval": interval}})
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
    slots = ParameterSlots(actor.parameters(), opt, routing=actor.routing)
    pm.hook.hetplug_bind(host=hetplug.HostObjects(parameter_slots=slots))

    plans = []
    for update in range(1, n_updates + 1):
        batch = collect(actor, generator)
        pm.hook.hetplug_trajectories_collected(batch=batch)  # obs, actions, reward, mask -> meta-transitions
        train(actor, opt, batch)
        for out in pm.hook.hetplug_after_update(update=update):  # every interval-th: refit, distances, plan
            if "hetdps/plan" in out:  # also hetdps/distance, hetdps/n_groups, hetdps/cvae_loss
                print(f"update {update}: {out['hetdps/plan']}")
                plans.append(str(out["hetdps/plan"]))
    routing = actor.routing.tolist()
    print(f"agent types {TYPES.tolist()} -> slots {routing}")
    return {"routing": routing, "plans": plans, "types": TYPES.tolist()}


if __name__ == "__main__":
    main()
