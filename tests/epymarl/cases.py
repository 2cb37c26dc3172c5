"""Constants and pure helpers shared by the EPyMARL adapter's tests (no host import here:
the real-EPyMARL tests use them without PyMARLzoo+)."""

from __future__ import annotations

import copy

import numpy as np
import torch

KEY = "lbforaging:Foraging-8x8-2p-3f-v3"  # obs per agent: 3 foods x (y, x, level), then players
KEY3 = "lbforaging:Foraging-8x8-3p-2f-v3"  # three agents: affinity propagation can split them
SELF_POS = [9, 11]  # the agent's own (y, x): the first player block
POSITIONS = {"key": "obs", "slice": SELF_POS}
#: SHEP on lbforaging's 8x8 grid; Group-HER (on by default) is switched on by the tests about it
SHEP = {
    "grid_low": [0, 0],
    "grid_high": [7, 7],
    "grid_shape": [8, 8],
    "intrinsic_reward": True,
    "group_her": False,
}
HETDPS = {
    "interval": 2,
    "preference": -10.0,
    "cvae": {"epochs": 5},
    "fit_samples": 256,
    "distance_samples": 128,
}
#: on-policy runs: the buffer holds the current rollout (4 episodes, trained on once each
#: iteration); the episode runner keeps the test free of worker processes
ON_POLICY = {name: {"runner": "episode", "batch_size_run": 1, "buffer_size": 4} for name in ("mappo", "ippo")}

#: configurations that must fail before training, and the message they fail with
BAD = [
    (["prioritised"], "unknown hetplug plugin 'prioritised'"),
    ({"plugins": ["per"], "per": {"alpah": 0.5}}, "unknown option hetplug.per.alpah"),
    ({"plugins": ["shep"], "shep": {"grid_shape": "big"}}, "grid_shape"),
    (
        {"plugins": ["shep"], "positions": {"slice": [14, 16]}},
        r"hetplug.positions.slice=\[14, 16\] is out of range: obs has 15",
    ),
    # no silent positions: lbforaging's obs[0:2] is the first food, not the agent
    (["shep"], r"hetplug.positions is required with 'shep': .*extractor: lbforaging\|mpe\|rware\|smaclite"),
]
BAD_IDS = ["plugin", "option", "type", "slice", "positions"]


def shep(**options) -> dict:
    """The ``hetplug`` key for SHEP on lbforaging (positions: each agent's own cell)."""
    return {"plugins": ["shep"], "shep": {**SHEP, **options}, "positions": POSITIONS}


def params_of(learner) -> list[torch.Tensor]:
    """Every trained and target parameter of a host QLearner or PPOLearner."""
    if hasattr(learner, "critic"):  # PPO
        modules = [learner.mac, learner.old_mac, learner.critic, learner.target_critic]
    else:
        modules = [learner.mac, learner.target_mac, learner.mixer, getattr(learner, "target_mixer", None)]
    return [p.detach().clone() for m in modules if m is not None for p in m.parameters()]


def per_agent_rewards(batch, n: int):
    """``batch`` with ``[B, T, N]`` rewards, as EPyMARL's ``common_reward=False`` stores them:
    agent i gets (i + 1) times the team reward, plus a step-dependent offset."""
    out = copy.deepcopy(batch)
    r = out.data.transition_data["reward"]
    steps = torch.arange(r.shape[1], dtype=r.dtype).reshape(1, -1, 1)
    out.data.transition_data["reward"] = r * torch.arange(1, n + 1, dtype=r.dtype) + 0.1 * steps
    return out


def slot_agent_matches_host_agent(host_agent_class, use_rnn: bool) -> None:
    """Oracle: the slot agent with one slot in use computes what the host's own ``rnn``
    agent module (``host_agent_class(input_shape, args)``) computes with slot 0's weights,
    in the recurrent (GRUCell) or the feed-forward (``use_rnn: False``) form."""
    from types import SimpleNamespace

    from hetplug_epymarl.wiring.hetdps import SlotRNNAgent

    torch.manual_seed(0)
    n, i, h, a, bs = 3, 7, 8, 5, 4
    args = SimpleNamespace(hidden_dim=h, n_actions=a, use_rnn=use_rnn, n_agents=n, name="qmix")
    host = host_agent_class(i, args)
    agent = SlotRNNAgent(i, n, h, a, n_slots=3, start="full", use_rnn=use_rnn)
    names = {"fc1.weight": "fc1_w", "fc1.bias": "fc1_b", "rnn.weight_ih": "w_ih", "rnn.weight_hh": "w_hh",
             "rnn.bias_ih": "b_ih", "rnn.bias_hh": "b_hh", "rnn.weight": "rnn_w", "rnn.bias": "rnn_b",
             "fc2.weight": "fc2_w", "fc2.bias": "fc2_b"}  # fmt: skip
    theirs = dict(host.named_parameters())
    assert sorted(names[k] for k in theirs) == sorted(k for k, _ in agent.named_parameters())
    with torch.no_grad():
        for name, value in theirs.items():
            ours = getattr(agent, names[name])[0]  # slot 0: [in, out] weights, [out] biases
            value.copy_(ours.T if ours.dim() == 2 else ours)
    x, hid = torch.randn(bs * n, i), torch.randn(bs, n, h)
    q, h1 = agent(x, hid)
    q_ref, h_ref = host(x, hid)
    torch.testing.assert_close(h1, h_ref)
    torch.testing.assert_close(q, q_ref)
    agent.routing.copy_(torch.tensor([0, 1, 2]))  # agents on their own slots: other weights
    q2, _ = agent(x, hid)
    torch.testing.assert_close(q2.view(bs, n, a)[:, 0], q.view(bs, n, a)[:, 0])
    assert not torch.allclose(q2.view(bs, n, a)[:, 1], q.view(bs, n, a)[:, 1])


#: tasks whose positions the extractors read (EPyMARL keys; PyMARLzoo+ runs lbforaging and
#: rware), and where the agent's own coordinates are in its full observation (a second,
#: independent witness): lbforaging (row, col) after the foods, rware (x, y) first, MPE's
#: p_pos after its velocity. EPyMARL's PettingZoo wrapper repeats the previous observation
#: once the episode is over, so MPE's last step is left out of that comparison.
EXTRACTOR_TASKS = {
    "lbforaging": ("lbforaging:Foraging-5x5-2p-1f-v3", (3, 5)),
    "rware": ("rware:rware-tiny-2ag-v2", (0, 2)),
    "mpe": ("pz-mpe-simple-spread-v3", (2, 4, -1)),
    "smaclite": ("2s3z", None),
}


def _filled_forward(values: torch.Tensor) -> torch.Tensor:
    """NaN entries (a unit no longer reported) take the previous step's value."""
    out = values.clone()
    for t in range(1, len(out)):
        gone = torch.isnan(out[t])
        out[t][gone] = out[t - 1][gone]
    return out


def check_env_fields(batches: list[dict], truth: list[list[dict]] | None, obs_slice=None) -> dict:
    """Every inserted episode's recorded fields (``batches``: TrajectoryBatch tensors) against
    the environment object's own values after the reset and after each step (``truth``,
    the episode runner's train episodes in order; None when the environments ran in
    worker processes) and against the agent's own coordinates in its observation
    (``obs_slice``). Returns counts of what was checked."""
    assert batches, "no episode reached the plugins"
    seen = {"episodes": 0, "success": [], "dead": 0}
    episode = 0
    for tb in batches:
        for b in range(tb["mask"].shape[0]):
            n = int(tb["mask"][b].sum())
            positions = tb["positions"][b, :n]
            if obs_slice is not None:
                start, stop, *end = obs_slice
                m = n + (end[0] if end else 0)
                torch.testing.assert_close(positions[:m], tb["obs"][b, :m, :, start:stop].float())
            if truth is not None:
                steps = truth[episode]
                episode += 1
                assert len(steps) == n  # one record after the reset and one after each step
                obs = torch.as_tensor(np.stack([s["obs"] for s in steps])).float()
                torch.testing.assert_close(tb["obs"][b, :n].float(), obs)  # the same episode
                for name in ("positions", "opponent_positions"):
                    if name in steps[0]:
                        true = _filled_forward(torch.as_tensor(np.stack([s[name] for s in steps])))
                        torch.testing.assert_close(tb[name][b, :n], true)
                for name in ("alive", "opponent_alive"):
                    if name in steps[0]:
                        true = torch.as_tensor(np.stack([s[name] for s in steps]))
                        assert torch.equal(tb[name][b, :n], true)
                        seen["dead"] += int((~true).sum())
                if "success" in steps[-1]:
                    assert bool(tb["success"][b]) == steps[-1]["success"]
                    seen["success"].append(bool(tb["success"][b]))
                else:
                    assert "success" not in tb
            seen["episodes"] += 1
    return seen


def check_lbforaging_success(batches: list[dict]) -> list[bool]:
    """A second witness of lbforaging's success: at an episode's last step the first
    agent's full observation shows no food left (every food entry is (-1, -1, 0))."""
    found = []
    for tb in batches:
        for b in range(tb["mask"].shape[0]):
            last = int(tb["mask"][b].sum()) - 1
            food = tb["obs"][b, last, 0, :3]
            assert bool(tb["success"][b]) == bool((food == torch.tensor([-1.0, -1.0, 0.0])).all())
            found.append(bool(tb["success"][b]))
    return found
