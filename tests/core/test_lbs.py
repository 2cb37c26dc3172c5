"""Large Batch Sharing: buffers, equivalence to shared replay, unbiasedness, p2, budget, plugin."""

from __future__ import annotations

import pytest
import scipy.stats
import torch

import hetplug
from hetplug.lbs import AgentBuffers, LargeBatchSharing, LBSConfig, check_homogeneous_agents
from hetplug.replay import large_batch_select


def filled(M=4, n=10, capacity=16, obs_dim=3, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    buffers = AgentBuffers(M, capacity, device=device)
    lbs = LargeBatchSharing(M, capacity, device=device)
    for _ in range(2):  # two adds, wrapping the ring when 2n > capacity
        data = {
            "obs": torch.randn(n, M, obs_dim, generator=g),
            "action": torch.randint(0, 5, (n, M), generator=g),
        }
        slots = buffers.add(data)
        assert torch.equal(lbs.add(n), slots)
    return buffers, lbs


def linear_td(buffers, theta):
    """td_fn for M linear 'Q-functions' theta [M, D]: td[i, j] = theta_i . obs_j - action_j."""

    def td_fn(sources, slots):
        items = buffers.gather(sources, slots)
        return theta.to(items["obs"].dtype) @ items["obs"].T - items["action"].to(items["obs"].dtype)

    return td_fn


# ---------------------------------------------------------------------------------- buffers
def test_buffers_store_per_agent_rings_and_gather_any_mix():
    buffers = AgentBuffers(3, capacity=5)
    first = torch.arange(4 * 3).reshape(4, 3).float()  # value = 3 * step + agent
    assert buffers.add({"x": first}).tolist() == [0, 1, 2, 3]
    second = 100 + torch.arange(3 * 3).reshape(3, 3).float()
    assert buffers.add({"x": second}).tolist() == [4, 0, 1]  # ring of 5
    assert len(buffers) == 5
    got = buffers.gather(torch.tensor([0, 2, 1]), torch.tensor([4, 0, 3]))["x"]
    assert got.tolist() == [100.0, 105.0, 10.0]  # slot 4 <- second[0]; slot 0 <- second[1]
    assert buffers.storage("x").shape == (3, 5)
    assert buffers.fields == {"x": ((), torch.float32)}


def test_buffers_accept_per_agent_lists():
    buffers = AgentBuffers(2, capacity=4)
    buffers.add({"obs": [torch.zeros(3, 6), torch.ones(3, 6)]})
    assert torch.equal(buffers.gather(torch.tensor([1]), torch.tensor([2]))["obs"], torch.ones(1, 6))


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"obs": [torch.zeros(3, 6), torch.zeros(3, 7)]}, r"homogeneous agents.*obs of agent 1"),
        ({"obs": torch.zeros(3, 5, 6)}, r"obs must be \[n, M=2"),
        ({"obs": torch.zeros(3, 2, 7)}, r"obs: items of shape \(7,\)"),
        ({"obs": torch.zeros(3, 2, 6, dtype=torch.float64)}, "dtype"),
        ({"obs": torch.zeros(3, 2, 6), "extra": torch.zeros(3, 2)}, "differ from the stored"),
        ({"obs": torch.zeros(0, 2, 6)}, r"at least one transition \(n >= 1\), got n=0"),
        ({"obs": torch.zeros(9, 2, 6)}, "capacity=8"),
        ({}, "at least one field"),
    ],
)
def test_buffers_reject_bad_input_without_changing(bad, match):
    buffers = AgentBuffers(2, capacity=8)
    buffers.add({"obs": torch.rand(5, 2, 6)})
    before = buffers.state_dict()
    with pytest.raises(ValueError, match=match):
        buffers.add(bad)
    after = buffers.state_dict()
    assert after["size"] == before["size"] and after["cursor"] == before["cursor"]
    assert torch.equal(after["storage"]["obs"], before["storage"]["obs"])


def test_heterogeneous_agent_specs_are_refused():
    check_homogeneous_agents("observation_spec", [(7, 7, 3), (7, 7, 3)])
    with pytest.raises(
        ValueError, match=r"observation_spec of agent 2 is \(5,\) but agent 0 has \(7, 7, 3\)"
    ):
        check_homogeneous_agents("observation_spec", [(7, 7, 3), (7, 7, 3), (5,)])


# ---------------------------------------------------------------- equivalence to shared replay
@pytest.mark.parametrize("n", [6, 12])  # 12: the rings wrapped
def test_uniform_p1_p2_is_exactly_the_shared_buffer_baseline(n):
    M, B = 4, 32
    buffers, lbs = filled(M=M, n=n, capacity=16)
    lbs.config = LBSConfig(priority="uniform")
    size = len(buffers)
    # The baseline: one shared buffer holding every agent's transitions, agent-major,
    # sampled uniformly for each of the M learners.
    shared_obs = buffers.storage("obs").reshape(M * size, -1)
    baseline = shared_obs[torch.randint(M * size, (M, B), generator=torch.Generator().manual_seed(5))]
    res = lbs.sample(B, td_fn=None, generator=torch.Generator().manual_seed(5))
    assert res.indices.shape == res.sources.shape == res.weights.shape == (M, B)
    assert torch.equal(buffers.gather(res.sources, res.indices)["obs"], baseline)
    assert torch.equal(res.weights, torch.ones(M, B))


def test_two_stage_path_with_uniform_priorities_is_uniform_over_the_union():
    """The general path (p1 drawn, TD computed, p2 applied) with flat priorities gives every
    (agent, slot) of the union the same frequency, like the shortcut above (chi-square)."""
    M, B = 3, 16
    buffers, lbs = filled(M=M, n=5, capacity=5)  # 15 items in the union
    lbs.config = LBSConfig(p1="prioritized", p1_alpha=0.0, p1_beta=0.0, priority="uniform")
    td_fn = linear_td(buffers, torch.randn(M, 3))
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(M * 5)
    for _ in range(400):
        res = lbs.sample(B, td_fn, gen)
        counts += torch.bincount((res.sources * 5 + res.indices).flatten(), minlength=M * 5)
    assert scipy.stats.chisquare(counts.numpy()).pvalue > 1e-3


# ----------------------------------------------------------------------------- unbiasedness
@pytest.mark.parametrize("budget", [None, 6])
def test_weighted_gradient_is_unbiased(budget):
    """E[(1/B) sum_b w_b g_i(item_b)] over both stages equals learner i's mean gradient over
    the union of the buffers (no budget), or, with a budget b, the mix
    (B * own-buffer mean + b * other-buffers mean) / (B + b) that the budget implies.
    Per-item gradients of the L2 loss of linear Q-functions are exact (g = td * obs); the
    tolerance is five standard errors from the sample variance over independent updates."""
    M, B, D, size = 3, 4, 3, 6
    buffers, lbs = filled(M=M, n=size, capacity=size, obs_dim=D, seed=3)
    lbs.config = LBSConfig(budget=budget, eps=1e-3)
    theta = torch.randn(M, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    td_fn = linear_td(buffers, theta)
    obs = buffers.storage("obs").double()  # [M, size, D]
    act = buffers.storage("action").double()
    td_all = torch.einsum("id,ksd->iks", theta, obs) - act  # learner i on agent k's item s
    grad_all = td_all.unsqueeze(-1) * obs.unsqueeze(0)  # [i, k, s, D]
    own_mean = torch.stack([grad_all[i, i].mean(0) for i in range(M)])
    other_mean = torch.stack([grad_all[i, [k for k in range(M) if k != i]].mean((0, 1)) for i in range(M)])
    if budget is None:
        target = grad_all.mean((1, 2))
    else:
        target = (B * own_mean + budget * other_mean) / (B + budget)
    gen = torch.Generator().manual_seed(2)
    R = 3000
    est = torch.empty(R, M, D, dtype=torch.float64)
    for r in range(R):
        res = lbs.sample(B, td_fn, gen)
        g = grad_all[torch.arange(M)[:, None], res.sources, res.indices]  # [M, B, D]
        est[r] = (res.weights.double().unsqueeze(-1) * g).mean(1)
    stderr = est.std(0) / R**0.5
    assert ((est.mean(0) - target).abs() < 5 * stderr + 1e-12).all()


def test_autograd_on_weighted_loss_matches_the_estimate():
    M, B, D = 2, 8, 3
    buffers, lbs = filled(M=M, n=6, capacity=6, obs_dim=D)
    theta = torch.randn(M, D)
    res = lbs.sample(B, linear_td(buffers, theta), torch.Generator().manual_seed(0))
    items = buffers.gather(res.sources, res.indices)  # [M, B, ...]
    th = theta.clone().requires_grad_(True)
    td = (th.unsqueeze(1) * items["obs"]).sum(-1) - items["action"]
    (res.weights * 0.5 * td.pow(2)).mean(1).sum().backward()
    expected = (res.weights.unsqueeze(-1) * td.detach().unsqueeze(-1) * items["obs"]).mean(1)
    assert torch.allclose(th.grad, expected, atol=1e-6)


# ---------------------------------------------------------------------------------- p2
def test_selection_follows_p2_chi_square():
    """One slot per agent: the large batch is B copies of each agent's single transition, so
    learner i picks agent k's with probability P_ik / sum_k P_ik."""
    M, B = 3, 64
    buffers = AgentBuffers(M, 1)
    buffers.add({"obs": torch.tensor([[[1.0], [2.0], [4.0]]]), "action": torch.zeros(1, M, dtype=torch.long)})
    lbs = LargeBatchSharing(M, 1, LBSConfig(eps=0.0))
    lbs.add(1)
    theta = torch.tensor([[1.0], [0.5], [-3.0]])
    td_fn = linear_td(buffers, theta)
    counts = torch.zeros(M, M)
    gen = torch.Generator().manual_seed(4)
    for _ in range(200):
        res = lbs.sample(B, td_fn, gen)
        counts += torch.nn.functional.one_hot(res.sources, M).sum(1)
    pri = (theta @ torch.tensor([[1.0, 2.0, 4.0]])).abs()
    for i in range(M):
        expected = (pri[i] / pri[i].sum() * counts[i].sum()).numpy()
        assert scipy.stats.chisquare(counts[i].numpy(), expected).pvalue > 1e-3


@pytest.mark.parametrize("priority", ["td", "clipped"])
def test_priorities_and_weights(priority):
    M, B = 2, 5
    buffers, lbs = filled(M=M, n=4, capacity=4)
    lbs.config = LBSConfig(priority=priority, eps=0.01)
    td_fn = linear_td(buffers, 3 * torch.randn(M, 3))
    seen = {}

    def spy(sources, slots):
        seen["td"] = td_fn(sources, slots)
        seen["src"], seen["slot"] = sources, slots
        return seen["td"]

    res = lbs.sample(B, spy, torch.Generator().manual_seed(0))
    a = seen["td"].abs().double()
    pri = (a if priority == "td" else a.clamp_max(1.0)) + 0.01
    # Recover which candidate was chosen and check w = 1 / (K p2).
    for i in range(M):
        for b in range(B):
            cand = ((seen["src"] == res.sources[i, b]) & (seen["slot"] == res.indices[i, b])).nonzero()[0, 0]
            p2 = pri[i, cand] / pri[i].sum()
            assert torch.isclose(res.weights[i, b].double(), 1.0 / (M * B * p2), rtol=1e-5)
            assert torch.isclose(res.probabilities[i, b].double(), p2, rtol=1e-5)


# ---------------------------------------------------------------------------------- budget
def test_budget_limits_the_foreign_candidates():
    M, B, budget = 4, 8, 3
    buffers, lbs = filled(M=M, n=16, capacity=16)
    lbs.config = LBSConfig(budget=budget)

    def td_fn(sources, slots):  # foreign items have huge TD: every allowed one is wanted
        return torch.where(sources.unsqueeze(0) == torch.arange(M)[:, None], 1e-3, 1e3).float()

    for seed in range(5):
        res = lbs.sample(B, td_fn, torch.Generator().manual_seed(seed))
        for i in range(M):
            foreign = res.sources[i] != i
            distinct = {
                (int(s), int(t))
                for s, t in zip(res.sources[i][foreign], res.indices[i][foreign], strict=True)
            }
            assert 1 <= len(distinct) <= budget
    lbs.config = LBSConfig(budget=0)
    assert (lbs.sample(B, td_fn).sources == torch.arange(M)[:, None]).all()  # LaBER on own data


def test_budget_mean_weights_use_the_allowed_count():
    M, B, budget = 3, 4, 2
    buffers, lbs = filled(M=M, n=8, capacity=8)
    lbs.config = LBSConfig(budget=budget, eps=0.0)
    res = lbs.sample(B, lambda s, t: torch.ones(M, M * B))
    assert torch.allclose(res.weights, torch.ones(M, B))  # mean over B + budget allowed / 1
    assert torch.allclose(res.probabilities, torch.full((M, B), 1.0 / (B + budget)))


def test_mask_in_large_batch_select():
    pri = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.tensor([[True, False, True, False]])
    idx, w = large_batch_select(pri, 200, "mean", torch.Generator().manual_seed(0), mask=mask)
    assert set(idx.flatten().tolist()) <= {0, 2}
    assert torch.allclose(w, (4.0 / 2) / pri[0, idx])  # mean over the 2 allowed = 2
    with pytest.raises(ValueError, match=r"mask must have shape \[1, 4\]"):
        large_batch_select(pri, 2, mask=torch.ones(4, dtype=torch.bool))


# ---------------------------------------------------------------- correction and p1
def test_importance_correction_multiplies_pi_ratio():
    M, B = 3, 6
    buffers, lbs = filled(M=M, n=8, capacity=8)
    td = linear_td(buffers, torch.randn(M, 3))
    logp = torch.log_softmax(torch.randn(M, M * B, generator=torch.Generator().manual_seed(9)), 0)
    plain = lbs.sample(B, td, torch.Generator().manual_seed(1))
    lbs.config = LBSConfig(importance_correction=True)
    corrected = lbs.sample(B, lambda s, t: (td(s, t), logp), torch.Generator().manual_seed(1))
    assert torch.equal(plain.indices, corrected.indices) and torch.equal(plain.sources, corrected.sources)
    src_all = torch.arange(M).repeat_interleave(B)  # the large batch is agent-major
    ratio = corrected.weights / plain.weights
    own = plain.sources == torch.arange(M)[:, None]
    assert torch.allclose(ratio[own], torch.ones(int(own.sum())), atol=1e-5)
    foreign_ratio = ratio[~own]
    assert (foreign_ratio > 0).all() and not torch.allclose(foreign_ratio, torch.ones_like(foreign_ratio))
    # Each foreign ratio is exp(logp[i, j] - logp[k, j]) for one of agent k's candidates j.
    for i in range(M):
        for b in range(B):
            k = int(plain.sources[i, b])
            js = (src_all == k).nonzero().flatten()
            options = (logp[i, js] - logp[k, js]).exp()
            assert torch.isclose(options, ratio[i, b], rtol=1e-4).any()
    lbs.config = LBSConfig(importance_correction=True, ratio_clip=1.0)
    clipped = lbs.sample(B, lambda s, t: (td(s, t), logp), torch.Generator().manual_seed(1))
    assert (clipped.weights <= plain.weights + 1e-6).all()
    with pytest.raises(ValueError, match=r"must return \(td, log_prob\)"):
        lbs.sample(B, td)


def test_prioritized_p1_refreshes_owner_priorities():
    M, B = 2, 4
    buffers, lbs = filled(M=M, n=6, capacity=6)
    lbs.config = LBSConfig(p1="prioritized", eps=0.0)
    assert torch.equal(lbs.p1_priorities, torch.ones(M, 6))  # unseen: max priority (1)
    seen = {}
    theta = torch.randn(M, 3)

    def spy(sources, slots):
        seen["td"] = linear_td(buffers, theta)(sources, slots)
        seen["src"], seen["slot"] = sources, slots
        return seen["td"]

    lbs.sample(B, spy, torch.Generator().manual_seed(0))
    own = seen["td"][seen["src"], torch.arange(M * B)].abs().double()
    assert torch.allclose(lbs.p1_priorities[seen["src"], seen["slot"]], own)


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "td_fn, config, match",
    [
        (
            lambda s, t: torch.full((2, 8), float("nan")),
            {},
            r"must be finite \(no NaN or inf\), got td_fn\(sources, slots\)\[0, 0\]=nan",
        ),
        (lambda s, t: torch.ones(2, 7), {}, r"shape \[M, K\] = \[2, 8\]"),
        (lambda s, t: [1.0], {}, r"shape \[M, K\]"),
        (None, {}, "td_fn is required"),
        (lambda s, t: torch.ones(2, 8), {"budget": 5}, r"budget=5 exceeds the \(M-1\)\*B = 4"),
        # eps = 0 and a learner whose TD is 0 on every candidate: nothing to draw from
        (lambda s, t: torch.tensor([[1.0] * 8, [0.0] * 8]), {"eps": 0.0}, "all zero"),
    ],
)
def test_bad_td_or_budget_raise_and_change_nothing(td_fn, config, match):
    buffers, lbs = filled(M=2, n=5, capacity=8)
    lbs.config = LBSConfig(p1="prioritized")
    lbs.sample(4, lambda s, t: torch.rand(2, 8) + 2.0)
    lbs.config = LBSConfig(p1="prioritized", **config)
    before = lbs.state_dict()
    buf_before = buffers.state_dict()
    with pytest.raises(ValueError, match=match):
        lbs.sample(4, td_fn)
    assert torch.equal(lbs.state_dict()["p1"], before["p1"])
    assert torch.equal(buffers.state_dict()["storage"]["obs"], buf_before["storage"]["obs"])


def test_empty_buffers_and_bad_config():
    with pytest.raises(ValueError, match="empty"):
        LargeBatchSharing(2, 4).sample(3, lambda s, t: torch.ones(2, 6))
    with pytest.raises(ValueError, match="empty"):
        AgentBuffers(2, 4).gather(torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="lbs: budget must be an integer >= 0, got budget=-1"):
        hetplug.get_plugin_manager(["lbs"], {"lbs": {"budget": -1}})
    with pytest.raises(ValueError, match="priority must be one of"):
        LBSConfig(priority="huber")


# ---------------------------------------------------------------------------------- plugin
def test_hook_hetplug_replay_sample_lbs_plugin(device):
    M, B = 4, 8
    pm = hetplug.get_plugin_manager(["lbs"], {"lbs": {"priority": "clipped"}})
    spec = hetplug.HostSpec(n_agents=M, max_steps=1, capacity=32, device=device)
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
    g = torch.Generator().manual_seed(0)
    storage = torch.zeros(32, M, 3, device=device)  # the host's own lockstep storage
    for _ in range(3):
        obs = torch.randn(10, 1, M, 3, generator=g).to(device)
        batch = hetplug.TrajectoryBatch(
            reward=torch.zeros(10, 1, device=device),
            mask=torch.ones(10, 1, dtype=torch.bool, device=device),
            obs=obs,
        )
        slots = pm.hook.hetplug_replay_add(batch=batch)
        storage[slots] = obs[:, 0]
    theta = torch.randn(M, 3, generator=g).to(device)

    def td_fn(sources, slots):
        return theta @ storage[slots, sources].T

    res = pm.hook.hetplug_replay_sample(batch_size=B, generator=None, td_fn=td_fn)
    assert res.indices.shape == res.sources.shape == res.weights.shape == (M, B)
    assert res.indices.device.type == torch.device(device).type
    assert int(res.indices.max()) < 30
    metrics = pm.hook.hetplug_after_update(update=1)
    assert 0.0 <= float(metrics[0]["lbs/shared_fraction"]) <= 1.0
    state = hetplug.plugin_state(pm)
    other = hetplug.get_plugin_manager(["lbs"], {"lbs": {"priority": "clipped"}})
    other.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
    hetplug.load_plugin_state(other, state)
    a = pm.hook.hetplug_replay_sample(
        batch_size=B, generator=torch.Generator(device).manual_seed(3), td_fn=td_fn
    )
    b = other.hook.hetplug_replay_sample(
        batch_size=B, generator=torch.Generator(device).manual_seed(3), td_fn=td_fn
    )
    assert torch.equal(a.indices, b.indices) and torch.equal(a.sources, b.sources)
    with pytest.raises(
        ValueError,
        match=r"batch.obs must have n_agents=4 agents in dim 2 \(HostSpec\), got batch.obs of shape \(2, 1, 5, 3\)",
    ):
        pm.hook.hetplug_replay_add(
            batch=hetplug.TrajectoryBatch(
                reward=torch.zeros(2, 1), mask=torch.ones(2, 1, dtype=torch.bool), obs=torch.zeros(2, 1, 5, 3)
            )
        )


def test_lbs_is_exclusive_with_other_prioritisers():
    with pytest.raises(ValueError, match="lbs"):
        hetplug.get_plugin_manager(["lbs", "per"])
