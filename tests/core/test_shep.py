"""SHEP scoring, Group-HER and the shep plugin, checked against brute-force loops."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import hetplug
from hetplug.shep import (
    SHEPConfig,
    advantage,
    describe,
    find_segments,
    intrinsic_reward,
    relabel,
    situation_score,
    step_priority,
    temporal_change,
    trajectory_priority,
)
from hetplug.spatial import GridCells


def batch(b=6, t=7, n=5, seed=0, device="cpu", **extra):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t, dtype=torch.bool)
    if b > 3:
        mask[1, 4:] = False
        mask[3, 2:] = False
    fields = dict(
        reward=torch.rand(b, t, generator=g),
        mask=mask,
        positions=torch.rand(b, t, n, 2, generator=g) * 2 - 1,
        actions=torch.randint(0, 4, (b, t, n), generator=g),
    )
    fields.update(extra)
    return hetplug.TrajectoryBatch(
        **{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in fields.items()}
    )


def manager(capacity=32, t=7, n=5, device="cpu", **options):
    pm = hetplug.get_plugin_manager(["shep"], {"shep": options})
    spec = hetplug.HostSpec(n_agents=n, max_steps=t, capacity=capacity, n_actions=4, device=device)
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
    return pm, pm.get_plugin("shep")


def test_temporal_change_matches_loop():
    x = torch.randn(3, 9, dtype=torch.float64)
    for w in (1, 2, 4):
        got = temporal_change(x, w)
        for t in range(9):
            past = x[:, max(0, t - w) : t]
            ref = torch.zeros(3, dtype=x.dtype) if t == 0 else x[:, t] - past.mean(-1)
            assert torch.allclose(got[:, t], ref)


def test_score_advantage_and_step_priority_closed_forms():
    d = describe(
        GridCells((0, 0), (1, 1), (4, 4)),
        torch.rand(2, 3, 6, 2),
        actions=torch.randint(0, 3, (2, 3, 6)),
        n_actions=3,
    )
    e = situation_score(d, 0.5, 2.0, 3.0)
    assert torch.allclose(e, 0.5 * d.occupancy_entropy + 2.0 * d.action_diversity + 3.0 * d.moran)
    assert torch.allclose(advantage(e, None, 2.0), 2 * e)
    assert torch.allclose(advantage(e, e / 2, 2.0), e)
    td, dd, i = torch.tensor([0.5, -2.0]), torch.tensor([-0.3, 0.1]), torch.tensor([0.4, -0.7])
    s = step_priority(td, dd, i, td_exponent=0.6, lambda_delta=2.0, lambda_moran=3.0, form="sum")
    p = step_priority(td, dd, i, td_exponent=0.6, lambda_delta=2.0, lambda_moran=3.0, form="product")
    for k in range(2):
        val = abs(td[k].item()) ** 0.6
        tac = 2.0 * abs(dd[k].item()) + 3.0 * max(0.0, i[k].item())
        assert s[k].item() == pytest.approx(val + tac)
        assert p[k].item() == pytest.approx(val * tac)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    tp = trajectory_priority(torch.tensor([[1.0, 3.0, 100.0], [5.0, 5.0, 5.0]]), mask)
    assert tp.tolist() == [2.0, 0.0]


def test_describe_matches_esda_per_step():
    esda = pytest.importorskip("esda")
    libpysal = pytest.importorskip("libpysal")
    cells = GridCells((0, 0), (1, 1), (5, 5), contiguity="queen")
    pos = torch.rand(2, 4, 40, 2, dtype=torch.float64)
    d = describe(cells, pos, transformation="r")
    w = libpysal.weights.lat2W(5, 5, rook=False)
    for b in range(2):
        for t in range(4):
            counts = np.histogram2d(
                pos[b, t, :, 0].numpy(), pos[b, t, :, 1].numpy(), bins=5, range=((0, 1), (0, 1))
            )[0]
            p = counts.ravel() / 40
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = esda.Moran(p, w, transformation="r", permutations=0).I
            assert d.moran[b, t].item() == pytest.approx(ref, abs=1e-9)
            h = -sum(x * math.log(x) for x in p if x > 0)
            assert d.occupancy_entropy[b, t].item() == pytest.approx(h, abs=1e-9)


@pytest.mark.parametrize("form", ["sum", "product"])
def test_plugin_trajectory_priorities_equal_brute_force(form, device):
    """Stored priority = mean over valid steps of eq. (5) (or Alg. 1 line 20) + eps."""
    opts = dict(priority_form=form, lambda_delta=2.0, lambda_moran=3.0, eps=0.0, delta_window=2, kappa=1.5)
    pm, plugin = manager(device=device, **opts)
    td = torch.randn(6, 7, 5)
    b = batch(device=device, td_error=td.to(device))
    idx = pm.hook.hetplug_replay_add(batch=b)
    cfg = plugin.config
    d = describe(plugin.cells, b.positions.cpu(), actions=b.actions.cpu(), n_actions=4)
    delta = cfg.kappa * situation_score(d, cfg.alpha, cfg.beta, cfg.eta)
    expected = []
    for row in range(6):
        vals = []
        for t in range(7):
            if not b.mask[row, t]:
                continue
            past = delta[row, max(0, t - 2) : t]
            dd = 0.0 if t == 0 else (delta[row, t] - past.mean()).item()
            val = td[row, t].abs().mean().item() ** 0.6
            tac = 2.0 * abs(dd) + 3.0 * max(0.0, d.moran[row, t].item())
            vals.append(val + tac if form == "sum" else val * tac)
        expected.append(sum(vals) / len(vals))
    stored = plugin.sampler.priorities[idx.cpu()].cpu()
    assert stored.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert len(plugin.sampler) == 6  # one item per trajectory, not per step


def test_priorities_change_with_td_updates_and_new_items_get_max_td():
    pm, plugin = manager(eps=0.0)
    idx = pm.hook.hetplug_replay_add(batch=batch())
    before = plugin.sampler.priorities.clone()
    td = torch.zeros(6, 7)
    td[2] = 10.0
    new = pm.hook.hetplug_update_priorities(indices=idx, td_error=td, mask=None)
    after = plugin.sampler.priorities
    assert torch.allclose(after, new.double())
    assert after[2] > before[2] and (after[[0, 1, 3, 4, 5]] < before[[0, 1, 3, 4, 5]]).all()
    # A new trajectory's TD term is the largest |TD| seen (10), like PER's max priority.
    b2 = batch(b=1, seed=5)
    idx2 = pm.hook.hetplug_replay_add(batch=b2)
    again = pm.hook.hetplug_update_priorities(indices=idx2, td_error=torch.full((1, 7), 10.0), mask=None)
    assert plugin.sampler.priorities[idx2].item() == pytest.approx(again.item())


def test_prioritised_sampling_prefers_high_td_trajectories():
    pm, plugin = manager(capacity=16, lambda_delta=0.0, lambda_moran=0.0, is_beta=1.0)
    idx = pm.hook.hetplug_replay_add(batch=batch(b=4))
    pm.hook.hetplug_update_priorities(
        indices=idx, td_error=torch.tensor([[1.0] * 7, [8.0] * 7, [1.0] * 7, [1.0] * 7]), mask=None
    )
    out = pm.hook.hetplug_replay_sample(
        batch_size=4000, generator=torch.Generator().manual_seed(0), td_fn=None
    )
    share = (out.indices == 1).float().mean().item()
    p1 = 8**0.6 / (8**0.6 + 3)
    assert share == pytest.approx(p1, abs=0.03)
    assert out.weights[out.indices == 1].max() < out.weights[out.indices == 0].max()


def test_intrinsic_reward_and_annealing():
    pm, plugin = manager(
        intrinsic_reward=True,
        intrinsic_delta_coef=(0.4, 0.0),
        intrinsic_moran_coef=(0.2, 0.1),
        intrinsic_anneal_steps=64,
    )
    b = batch()
    res = pm.hook.hetplug_trajectories_collected(batch=b)[0]
    cfg = plugin.config
    d = describe(plugin.cells, b.positions, actions=b.actions, n_actions=4)
    e = situation_score(d, cfg.alpha, cfg.beta, cfg.eta)
    ref = intrinsic_reward(e, d.moran, 0.4, 0.2) * b.mask
    assert torch.allclose(res.intrinsic_reward, ref)
    assert res.intrinsic_reward[3, 2:].abs().sum() == 0  # padding gets nothing
    n_valid = int(b.mask.sum())
    coef = plugin.intrinsic_coefficients()
    frac = min(1.0, n_valid / 64)
    assert coef == pytest.approx((0.4 * (1 - frac), 0.2 - 0.1 * frac))
    assert set(res.metrics) >= {"shep/moran_i", "shep/occupancy_entropy"}


def test_opponents_enter_the_advantage():
    pm, plugin = manager(lambda_moran=0.0, eps=0.0, beta=0.0)
    g = torch.Generator().manual_seed(3)
    b = batch(td_error=torch.zeros(6, 7))
    with_opp = b.replace(opponent_positions=torch.rand(6, 7, 4, 2, generator=g))
    idx = pm.hook.hetplug_replay_add(batch=with_opp)
    cfg = plugin.config
    own = situation_score(describe(plugin.cells, b.positions), cfg.alpha, 0.0, cfg.eta)
    opp = situation_score(describe(plugin.cells, with_opp.opponent_positions), cfg.alpha, 0.0, cfg.eta)
    dd = temporal_change(advantage(own, opp, cfg.kappa)).abs()
    expected = trajectory_priority(dd, b.mask)  # td = 0, lambda_I = 0
    assert torch.allclose(plugin.sampler.priorities[idx].float(), expected, atol=1e-6)


def test_continuous_actions_are_binned():
    pm, plugin = manager()
    b = batch(actions=torch.rand(6, 7, 5, 2) * 2 - 1)
    assert pm.hook.hetplug_replay_add(batch=b).shape == (6,)


def test_find_segments_matches_loop():
    g = torch.Generator().manual_seed(0)
    q = torch.rand(50, 12, generator=g) > 0.4
    mask = torch.ones(50, 12, dtype=torch.bool)
    mask[::3, 8:] = False
    for min_len in (1, 3):
        found, end = find_segments(q, mask, min_len)
        for r in range(50):
            run, hit = 0, None
            for t in range(12):
                run = run + 1 if (q[r, t] and mask[r, t]) else 0
                if run >= min_len:
                    hit = t
                    break
            assert bool(found[r]) == (hit is not None)
            if hit is not None:
                assert end[r].item() == hit


def test_group_her_copies_and_never_alters_originals():
    pm, plugin = manager(
        group_her=True, her_moran_threshold=-10.0, her_min_length=2, her_reward=5.0, her_max_fraction=1.0
    )
    b = batch(
        success=torch.tensor([False, True, False, False, False, False]),
        done=torch.zeros(6, 7, dtype=torch.bool),
    )
    snapshot = {k: v.clone() for k, v in b.tensors().items()}
    res = pm.hook.hetplug_trajectories_collected(batch=b)[0]
    for k, v in b.tensors().items():
        assert torch.equal(v, snapshot[k]), k
    extra = res.extra_trajectories
    # Every step qualifies (threshold -10): the segment ends at step 1; row 1 succeeded.
    assert extra.batch_size == 5
    assert torch.equal(extra.positions, b.positions[[0, 2, 3, 4, 5]])
    assert extra.mask[:, :2].all() and not extra.mask[:, 2:].any()
    assert extra.done[:, 1].all()
    assert torch.allclose(extra.reward[:, 1], b.reward[[0, 2, 3, 4, 5], 1] + 5.0)
    assert torch.allclose(extra.reward[:, 0], b.reward[[0, 2, 3, 4, 5], 0])
    assert extra.success.all()
    # The copies go through replay_add like any trajectory.
    assert pm.hook.hetplug_replay_add(batch=hetplug.TrajectoryBatch.concat([b, extra])).shape == (11,)


def test_group_her_segment_mode_and_limits():
    b = batch(b=4, t=6)
    q = torch.tensor(
        [[0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool
    )
    found, end = find_segments(q, b.mask, 3)
    assert found.tolist() == [True, False, True, False]  # row 3's valid steps are only 2
    copy = relabel(b, found, end, reward=1.0, min_length=3, mode="segment")
    assert torch.allclose(
        copy.reward - b.reward[[0, 2]], torch.tensor([[0, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]]).float()
    )
    assert torch.equal(copy.mask, b.mask[[0, 2]])
    assert relabel(b, found, end, reward=1.0, min_length=3, max_count=1).batch_size == 1
    assert relabel(b, torch.zeros(4, dtype=torch.bool), end, reward=1.0, min_length=3) is None


def test_per_agent_rewards_get_relabelled_per_agent():
    b = batch(b=2, t=4, reward=torch.zeros(2, 4, 5), mask=torch.ones(2, 4, dtype=torch.bool))
    copy = relabel(b, torch.tensor([True, True]), torch.tensor([1, 3]), reward=2.0, min_length=1)
    assert copy.reward.shape == (2, 4, 5)
    assert copy.reward[0, 1].tolist() == [2.0] * 5 and copy.reward[0].sum() == 10.0


def test_bad_input_raises_and_keeps_state():
    pm, plugin = manager()
    idx = pm.hook.hetplug_replay_add(batch=batch())
    state = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in plugin.state_dict().items()}
    no_pos = hetplug.TrajectoryBatch(reward=torch.zeros(2, 7), mask=torch.ones(2, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="positions"):
        pm.hook.hetplug_replay_add(batch=no_pos)
    with pytest.raises(ValueError, match=r"positions must have shape \[\.\.\., N, 2\]"):
        pm.hook.hetplug_replay_add(batch=batch(positions=torch.rand(6, 7, 5, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        pm.hook.hetplug_update_priorities(indices=idx, td_error=torch.full((6, 7), float("nan")), mask=None)
    with pytest.raises(ValueError, match="rows"):
        pm.hook.hetplug_update_priorities(indices=idx, td_error=torch.ones(5, 7), mask=None)
    with pytest.raises(ValueError, match="indices must lie"):
        pm.hook.hetplug_update_priorities(indices=torch.tensor([0, 99]), td_error=torch.ones(2, 7), mask=None)
    with pytest.raises(ValueError, match="more than max_steps"):
        pm.hook.hetplug_replay_add(batch=batch(t=9))
    with pytest.raises(ValueError, match="n_actions"):
        bad_pm = hetplug.get_plugin_manager(["shep"])
        bad_pm.hook.hetplug_configure.call_historic(
            kwargs={"spec": hetplug.HostSpec(n_agents=5, max_steps=7, capacity=8)}
        )
        bad_pm.hook.hetplug_replay_add(batch=batch())
    after = plugin.state_dict()
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, after[k]), k
    assert torch.equal(state["sampler"]["priorities"], after["sampler"]["priorities"])
    assert state["sampler"]["size"] == after["sampler"]["size"] == 6


@pytest.mark.parametrize(
    "field, value",
    [
        ("contiguity", "king"),
        ("td_exponent", -1.0),
        ("delta_window", 0),
        ("her_relabel", "all"),
        ("intrinsic_delta_coef", (1.0,)),
        ("max_probability", 2.0),
        ("action_high", -2.0),
        ("her_max_fraction", 1.5),
    ],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SHEPConfig(**{field: value})


def test_trajectory_batch_validation_names_fields():
    with pytest.raises(ValueError, match="mask must be a"):
        hetplug.TrajectoryBatch(reward=torch.zeros(2, 3), mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="positions must have leading dims"):
        hetplug.TrajectoryBatch(
            reward=torch.zeros(2, 3), mask=torch.ones(2, 3), positions=torch.zeros(3, 3, 4, 2)
        )
    with pytest.raises(ValueError, match="agents in dim 2"):
        hetplug.TrajectoryBatch(
            reward=torch.zeros(2, 3),
            mask=torch.ones(2, 3),
            positions=torch.zeros(2, 3, 4, 2),
            actions=torch.zeros(2, 3, 5),
        )
    with pytest.raises(ValueError, match="capacity must be an integer >= 1"):
        hetplug.HostSpec(n_agents=2, max_steps=3, capacity=0)


def test_descriptors_computed_once_per_batch_and_refreshed_after_in_place_edits(monkeypatch):
    pm, plugin = manager(intrinsic_reward=True)
    calls = []
    original = plugin._compute_descriptors
    monkeypatch.setattr(plugin, "_compute_descriptors", lambda b: calls.append(1) or original(b))
    b = batch()
    pm.hook.hetplug_trajectories_collected(batch=b)
    idx = pm.hook.hetplug_replay_add(batch=b.replace(reward=b.reward + 1))  # same positions
    assert len(calls) == 1
    first = plugin.sampler.priorities[idx].clone()
    b.positions.mul_(0.5)  # in-place edit: the cache must not be reused
    idx2 = pm.hook.hetplug_replay_add(batch=b)
    assert len(calls) == 2
    assert not torch.allclose(plugin.sampler.priorities[idx2], first)
