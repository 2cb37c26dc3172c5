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
    coef = tuple(float(c) for c in plugin.intrinsic_coefficients())
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


def _episodes_of(done_row, mask_row):
    """[(start, end)] of a row's episodes (valid steps only), by brute force."""
    out, start = [], 0
    T = len(mask_row)
    for t in range(T):
        last = t == T - 1 or bool(done_row[t])
        if last:
            valid = [u for u in range(start, t + 1) if mask_row[u]]
            if valid:
                out.append((start, valid[-1]))
            start = t + 1
    return out


def _best_segments_loop(q, mask, done, delta, min_len):
    """{(row, episode start): (segment end, gain)}: the qualifying window of min_len steps
    inside one episode with the largest delta(end) - delta(step before), first on ties."""
    best = {}
    for r in range(q.shape[0]):
        for s, e in _episodes_of(done[r], mask[r]):
            for t in range(s, e + 1):
                lo = t - min_len + 1
                if lo < s or not all(q[r, u] and mask[r, u] for u in range(lo, t + 1)):
                    continue
                gain = float(delta[r, t] - delta[r, max(t - min_len, s)])
                if (r, s) not in best or gain > best[(r, s)][1]:
                    best[(r, s)] = (t, gain)
    return best


def _segments(q, mask, done, delta, min_len):
    from hetplug.shep.episodes import episode_index, episode_lengths, episode_start

    index = episode_index(done, mask.shape, mask.device)
    return find_segments(q, mask, min_len, episode_start(index), delta, episode_lengths(index, mask))


def test_find_segments_picks_each_episodes_largest_gain_like_a_loop():
    """Segments never cross an episode boundary, and the one kept per episode has the
    largest rise of the advantage delta over it (brute force over every window)."""
    g = torch.Generator().manual_seed(0)
    q = torch.rand(40, 12, generator=g) > 0.3
    mask = torch.ones(40, 12, dtype=torch.bool)
    mask[::3, 9:] = False
    done = torch.rand(40, 12, generator=g) > 0.8
    delta = torch.randn(40, 12, generator=g, dtype=torch.float64)
    for min_len in (1, 3):
        seg = _segments(q, mask, done, delta, min_len)
        got = {
            (int(r), int(s)): (int(t), float(gn))
            for r, s, t, gn in zip(seg.row, seg.start, seg.end, seg.gain, strict=True)
        }
        expected = _best_segments_loop(q, mask, done, delta, min_len)
        assert got.keys() == expected.keys()
        for key, (t, gain) in expected.items():
            assert got[key][0] == t and got[key][1] == pytest.approx(gain)
        for r, s, e in zip(seg.row.tolist(), seg.start.tolist(), seg.episode_end.tolist(), strict=True):
            assert (s, e) in _episodes_of(done[r], mask[r])


def test_group_her_skips_won_episodes_of_a_row_holding_several():
    """Per-step success (a row with several episodes, BenchMARL's rows): a won episode is
    not relabelled, a lost one in the same row is; the copy's success is set."""
    pm, _ = manager(
        group_her=True, her_moran_threshold=-10.0, her_min_length=2, her_reward=5.0,
        her_reward_relative=False, her_max_fraction=1.0, intrinsic_reward=False,
    )  # fmt: skip
    done = torch.zeros(6, 7, dtype=torch.bool)
    done[:, 2] = True  # every row: episode A (steps 0-2), then episode B (3-6)
    success = torch.zeros(6, 7, dtype=torch.bool)
    success[0, :3] = True  # row 0: A won, B lost; row 1: both won; the other rows lost both
    success[1] = True
    b = batch(success=success, done=done)
    extra = pm.hook.hetplug_trajectories_collected(batch=b)[0].extra_trajectories
    rows, steps = extra.extra["hetplug_row"][:, 0].tolist(), extra.extra["hetplug_step"][:, 0].tolist()
    copied = sorted(zip(rows, steps, strict=True))
    # (row 3's episode B has no valid step: batch() masks row 3 from step 2)
    assert copied == [(0, 3), (2, 0), (2, 3), (3, 0), (4, 0), (4, 3), (5, 0), (5, 3)]
    assert extra.success.all()
    with pytest.raises(ValueError, match="success"):
        batch(success=torch.zeros(6, 5, dtype=torch.bool), done=done)


def test_group_her_copies_the_best_episodes_and_never_alters_originals():
    pm, plugin = manager(
        group_her=True, her_moran_threshold=-10.0, her_min_length=2, her_reward=5.0,
        her_reward_relative=False, her_max_fraction=1.0, intrinsic_reward=False,
    )  # fmt: skip
    b = batch(
        success=torch.tensor([False, True, False, False, False, False]),
        done=torch.zeros(6, 7, dtype=torch.bool),
    )
    snapshot = {k: v.clone() for k, v in b.tensors().items()}
    res = pm.hook.hetplug_trajectories_collected(batch=b)[0]
    for k, v in b.tensors().items():
        assert torch.equal(v, snapshot[k]), k
    extra = res.extra_trajectories
    # Every step qualifies (threshold -10); row 1 succeeded: five candidates, all copied.
    assert extra.batch_size == 5
    _, delta, _ = plugin._descriptors(b)
    q = torch.ones(6, 7, dtype=torch.bool) & ~b.success.unsqueeze(1)
    expected = _best_segments_loop(q, b.mask, b.done, delta, 2)
    rows = extra.extra["hetplug_row"][:, 0].tolist()
    assert sorted(rows) == [0, 2, 3, 4, 5]
    gains = [expected[(r, 0)][1] for r in rows]
    assert gains == sorted(gains, reverse=True)  # ranked by their gain
    for i, r in enumerate(rows):
        end = expected[(r, 0)][0]
        assert torch.equal(extra.positions[i, : end + 1], b.positions[r, : end + 1])
        assert extra.mask[i, : end + 1].all() and not extra.mask[i, end + 1 :].any()
        assert extra.done[i, end] and not extra.done[i, :end].any()
        assert torch.allclose(extra.reward[i, end], b.reward[r, end] + 5.0)
        assert torch.allclose(extra.reward[i, :end], b.reward[r, :end])
    assert extra.success.all()
    # The copies go through replay_add like any trajectory.
    assert pm.hook.hetplug_replay_add(
        batch=hetplug.TrajectoryBatch.concat([b.replace(extra={}), extra.replace(extra={})])
    ).shape == (11,)


def test_group_her_segment_mode():
    from hetplug.shep.group_her import Segments

    b = batch(b=4, t=6)
    seg = Segments(*(torch.tensor(v) for v in ([0, 2], [0, 0], [3, 5], [5, 5], [1.0, 1.0])))
    copy = relabel(b, seg, reward=1.0, min_length=3, mode="segment")
    assert torch.allclose(
        copy.reward - b.reward[[0, 2]], torch.tensor([[0, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]]).float()
    )
    assert torch.equal(copy.mask, b.mask[[0, 2]])
    empty = Segments(*(torch.zeros(0, dtype=torch.long) for _ in range(5)))
    assert relabel(b, empty, reward=1.0, min_length=3) is None


def test_per_agent_rewards_get_relabelled_per_agent():
    from hetplug.shep.group_her import Segments

    b = batch(b=2, t=4, reward=torch.zeros(2, 4, 5), mask=torch.ones(2, 4, dtype=torch.bool))
    seg = Segments(*(torch.tensor(v) for v in ([0, 1], [0, 0], [1, 3], [3, 3], [0.0, 0.0])))
    copy = relabel(b, seg, reward=2.0, min_length=1)
    assert copy.reward.shape == (2, 4, 5)
    assert copy.reward[0, 1].tolist() == [2.0] * 5 and copy.reward[0].sum() == 10.0


def _two_episode_row(seed=0, t_a=4, t_b=5, n=5):
    """One row holding episode A then episode B (done at A's last step), and A and B as rows
    of their own (B moved to the start, padded)."""
    g = torch.Generator().manual_seed(seed)
    T = t_a + t_b
    pos = torch.rand(1, T, n, 2, generator=g) * 2 - 1
    act = torch.randint(0, 4, (1, T, n), generator=g)
    rew = torch.rand(1, T, generator=g)
    done = torch.zeros(1, T, dtype=torch.bool)
    done[0, t_a - 1] = True
    done[0, T - 1] = True
    joined = hetplug.TrajectoryBatch(reward=rew, mask=torch.ones(1, T, dtype=torch.bool), done=done,
                                     positions=pos, actions=act)  # fmt: skip

    def alone(lo, hi):
        pad = T - (hi - lo)
        cut = lambda x: torch.cat([x[:, lo:hi], x[:, hi - 1 : hi].expand(1, pad, *x.shape[2:])], 1)  # noqa: E731
        mask = torch.zeros(1, T, dtype=torch.bool)
        mask[0, : hi - lo] = True
        d = torch.zeros(1, T, dtype=torch.bool)
        d[0, hi - lo - 1] = True
        return hetplug.TrajectoryBatch(
            reward=cut(rew), mask=mask, done=d, positions=cut(pos), actions=cut(act)
        )

    return joined, alone(0, t_a), alone(t_a, T), t_a


def test_a_row_of_two_episodes_scores_as_they_score_apart():
    """SHEP's per-step quantities never look across an episode boundary: the intrinsic
    reward (and Delta delta behind it) of a row A|B is, step by step, A's then B's."""
    options = dict(intrinsic_reward=True, intrinsic_delta_coef=(0.3, 0.3), intrinsic_moran_coef=(0.2, 0.2),
                   group_her=False, delta_window=1)  # fmt: skip
    joined, a, b, t_a = _two_episode_row()
    T = joined.max_steps
    r_joined = (
        manager(t=T, **options)[0].hook.hetplug_trajectories_collected(batch=joined)[0].intrinsic_reward
    )
    r_a = manager(t=T, **options)[0].hook.hetplug_trajectories_collected(batch=a)[0].intrinsic_reward
    r_b = manager(t=T, **options)[0].hook.hetplug_trajectories_collected(batch=b)[0].intrinsic_reward
    assert torch.equal(r_joined[0, :t_a], r_a[0, :t_a])
    assert torch.equal(r_joined[0, t_a:], r_b[0, : T - t_a])


def test_group_her_copies_stay_inside_their_episode():
    """No copy's segment, relabelled reward or done crosses an episode boundary: a copy is
    its episode alone, starting at the episode's first step."""
    joined, _, _, t_a = _two_episode_row(seed=3, t_a=5, t_b=6)
    pm, plugin = manager(t=joined.max_steps, group_her=True, her_moran_threshold=-10.0, her_min_length=2,
                         her_max_fraction=1.0, her_reward_relative=False, intrinsic_reward=False)  # fmt: skip
    extra = pm.hook.hetplug_trajectories_collected(batch=joined)[0].extra_trajectories
    assert extra.batch_size == 2  # one per episode
    for i in range(2):
        source = extra.extra["hetplug_step"][i]
        valid = extra.mask[i]
        first = int(source[0])
        assert first in (0, t_a)
        episode_end = t_a - 1 if first == 0 else joined.max_steps - 1
        assert (source[valid] <= episode_end).all() and (source[valid] >= first).all()
        assert int(extra.done[i].nonzero()[-1]) == int(valid.sum()) - 1  # done only at its end


def test_one_episode_batches_get_copies_at_the_configured_fraction():
    """EPyMARL hands over one episode per collection: the first qualifying one is copied,
    and over a run the copies respect her_max_fraction on average."""
    pm, plugin = manager(
        group_her=True, her_moran_threshold=-10.0, her_max_fraction=0.5, intrinsic_reward=False
    )
    copies = 0
    for i in range(40):
        res = pm.hook.hetplug_trajectories_collected(batch=batch(b=1, seed=i))[0]
        n = 0 if res.extra_trajectories is None else res.extra_trajectories.batch_size
        if i == 0:
            assert n == 1
        copies += n
    assert copies == 20


def test_her_reward_is_relative_to_the_largest_reward_seen():
    pm, plugin = manager(group_her=True, her_moran_threshold=-10.0, her_max_fraction=1.0, her_reward=2.0,
                         her_min_length=1, intrinsic_reward=False)  # fmt: skip
    b = batch(b=2, reward=torch.full((2, 7), 0.01))
    extra = pm.hook.hetplug_trajectories_collected(batch=b)[0].extra_trajectories
    end = extra.done.float().argmax(-1)
    bonus = extra.reward.gather(1, end.unsqueeze(1)) - 0.01
    torch.testing.assert_close(bonus, torch.full_like(bonus, 0.02))  # 2 x the largest |reward|, 0.01


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
    with pytest.raises(ValueError, match="one row per index"):
        pm.hook.hetplug_update_priorities(indices=idx, td_error=torch.ones(5, 7), mask=None)
    with pytest.raises(ValueError, match=r"indices must be in \[0, 6\), got indices\[1\]=99"):
        pm.hook.hetplug_update_priorities(indices=torch.tensor([0, 99]), td_error=torch.ones(2, 7), mask=None)
    with pytest.raises(ValueError, match=r"batch.max_steps must be <= the host's max_steps=7"):
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
    with pytest.raises(ValueError, match="mask must have shape"):
        hetplug.TrajectoryBatch(reward=torch.zeros(2, 3), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        hetplug.TrajectoryBatch(reward=torch.zeros(2, 3), mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="positions must have leading dims"):
        hetplug.TrajectoryBatch(
            reward=torch.zeros(2, 3),
            mask=torch.ones(2, 3, dtype=torch.bool),
            positions=torch.zeros(3, 3, 4, 2),
        )
    with pytest.raises(ValueError, match="agents in dim 2"):
        hetplug.TrajectoryBatch(
            reward=torch.zeros(2, 3),
            mask=torch.ones(2, 3, dtype=torch.bool),
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


def test_rows_of_several_episodes_are_sampled_per_episode_as_eq6():
    """A row holding several episodes is drawn with the sum of their priorities, then one
    of them with its own: each episode is drawn with P-bar_e / sum P-bar (eq. 6), a step of
    it uniformly, and weighted (N p_e)^-beta with N the stored episodes (eq. 7). Brute
    force: the episodes' mean step priority, enumerated by a loop."""
    pm, plugin = manager(t=8, capacity=16, intrinsic_reward=False, group_her=False, eps=0.0, is_beta=0.7,
                         weight_normalization="max")  # fmt: skip
    g = torch.Generator().manual_seed(5)
    done = torch.zeros(4, 8, dtype=torch.bool)
    done[0, [2, 7]] = True
    done[1, [0, 4, 7]] = True
    done[2, 7] = True
    done[3, [5]] = True
    b = batch(b=4, t=8, done=done, td_error=torch.rand(4, 8, generator=g))
    slots = pm.hook.hetplug_replay_add(batch=b)
    desc, delta, start = plugin._descriptors(b)
    shift = temporal_change(delta, 1, start).abs()
    step = step_priority(scoring_td(b.td_error), shift, desc.moran.clamp_min(0))
    episodes = []  # (slot, first step, last step, P-bar)
    for r in range(4):
        for s, e in _episodes_of(done[r], b.mask[r]):
            valid = [u for u in range(s, e + 1) if b.mask[r, u]]
            episodes.append((int(slots[r]), s, e, float(step[r, valid].double().mean())))
    total = sum(p for *_, p in episodes)
    p_true = {(slot, s): p / total for slot, s, _, p in episodes}
    n, p_min = len(episodes), min(p_true.values())
    draws = 60_000
    out = pm.hook.hetplug_replay_sample(
        batch_size=draws, generator=torch.Generator().manual_seed(1), td_fn=None
    )
    found = {}
    for slot, s, e, _ in episodes:
        inside = (out.indices == slot) & (out.steps >= s) & (out.steps <= e)
        found[(slot, s)] = int(inside.sum())
        if found[(slot, s)]:
            p = p_true[(slot, s)]
            torch.testing.assert_close(
                out.probabilities[inside], torch.full_like(out.probabilities[inside], p)
            )
            w = (n * p) ** -0.7 / (n * p_min) ** -0.7
            torch.testing.assert_close(out.weights[inside], torch.full_like(out.weights[inside], w))
    assert sum(found.values()) == draws  # every draw is a step of a stored episode
    for key, count in found.items():
        p = p_true[key]
        assert abs(count / draws - p) < 4 * math.sqrt(p * (1 - p) / draws) + 1e-3, key


def scoring_td(td):
    from hetplug.shep.scoring import reduce_td

    return reduce_td(td, td.shape[1])


def test_is_exponent_reaches_one_at_the_end_of_the_run():
    """With the host's run length (HostSpec.total_env_steps), beta rises from is_beta to
    is_beta_final with the environment steps collected, and is 1 at the end."""
    pm = hetplug.get_plugin_manager(["shep"], {"shep": {"group_her": False}})
    spec = hetplug.HostSpec(n_agents=5, max_steps=7, capacity=32, n_actions=4, total_env_steps=4 * 6 * 7)
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
    plugin = pm.get_plugin("shep")
    betas = []
    for i in range(4):
        b = batch(b=6, seed=i, mask=torch.ones(6, 7, dtype=torch.bool))
        res = pm.hook.hetplug_trajectories_collected(batch=b)[0]
        pm.hook.hetplug_replay_add(batch=b)
        betas.append(plugin.sampler.beta)
        assert res.metrics["shep/is_beta"] == pytest.approx(betas[-1])
    assert betas == pytest.approx([0.4 + 0.6 * f for f in (0.25, 0.5, 0.75, 1.0)])


@pytest.mark.parametrize("form", ["sum", "product"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_td_updates_rescore_episodes_like_brute_force(form, with_mask):
    """An update reuses what it does not change (the tactical term, the episodes' shares,
    kept from ``add``): the new row priorities, sampled probabilities and IS weights equal
    a loop that rescores every episode from scratch, with and without an update mask."""
    t, exp, eps, td_exp = 8, 0.7, 0.05, 0.5
    pm, plugin = manager(t=t, capacity=16, intrinsic_reward=False, group_her=False, eps=eps, is_beta=0.6,
                         priority_form=form, priority_exponent=exp, td_exponent=td_exp,
                         lambda_delta=1.5, lambda_moran=0.5, weight_normalization="max")  # fmt: skip
    g = torch.Generator().manual_seed(3)
    done = torch.zeros(4, t, dtype=torch.bool)
    done[0, [2, 7]] = True
    done[1, [0, 4]] = True
    done[3, 5] = True
    b = batch(b=4, t=t, done=done, td_error=torch.rand(4, t, generator=g))
    slots = pm.hook.hetplug_replay_add(batch=b)
    desc, delta, start = plugin._descriptors(b)
    tactical = 1.5 * temporal_change(delta, plugin.config.delta_window, start).abs().double()
    tactical = tactical + 0.5 * desc.moran.clamp_min(0).double()
    td = torch.rand(4, t, generator=g) * 3
    mask = torch.rand(4, t, generator=g) > 0.3 if with_mask else None
    new = pm.hook.hetplug_update_priorities(indices=slots, td_error=td, mask=mask)
    valid = b.mask if mask is None else b.mask & mask
    episodes = []  # (slot, first step, last step, mass)
    for r in range(4):
        for s, e in _episodes_of(done[r], b.mask[r]):
            steps = [u for u in range(s, e + 1) if valid[r, u]]
            if not steps:
                continue
            vals = []
            for u in steps:
                v = float(td[r, u]) ** td_exp
                vals.append(v + float(tactical[r, u]) if form == "sum" else v * float(tactical[r, u]))
            episodes.append((int(slots[r]), s, e, (sum(vals) / len(vals) + eps) ** exp))
    rows = [sum(m for slot, *_, m in episodes if slot == int(slots[r])) for r in range(4)]
    torch.testing.assert_close(new.double(), torch.tensor(rows, dtype=torch.float64), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(plugin.sampler.priorities[slots], new.double())
    total = sum(m for *_, m in episodes)
    p_min = min(m for *_, m in episodes) / total
    out = pm.hook.hetplug_replay_sample(
        batch_size=4000, generator=torch.Generator().manual_seed(1), td_fn=None
    )
    hit = torch.zeros(4000, dtype=torch.bool)
    for slot, s, e, m in episodes:
        inside = (out.indices == slot) & (out.steps >= s) & (out.steps <= e)
        hit |= inside
        p = m / total
        torch.testing.assert_close(out.probabilities[inside].double(), torch.full((int(inside.sum()),), p,
                                   dtype=torch.float64), rtol=1e-5, atol=0)  # fmt: skip
        w = (p / p_min) ** -0.6
        torch.testing.assert_close(out.weights[inside].double(), torch.full((int(inside.sum()),), w,
                                   dtype=torch.float64), rtol=1e-5, atol=0)  # fmt: skip
    assert hit.all()  # every draw is a step of an episode with a valid step
    assert bool(valid[torch.searchsorted(slots, out.indices), out.steps].all())  # never a masked step


def test_update_without_mask_uses_the_valid_steps_stored_at_add():
    """``keeps_valid_steps``: mask=None on trajectories added with invalid steps gives the
    same priorities as passing their add-time mask again (what a host may skip)."""
    assert manager()[1].keeps_valid_steps
    results = []
    for mask in (None, "stored"):
        pm, plugin = manager(eps=0.0)
        b = batch(td_error=torch.rand(6, 7, generator=torch.Generator().manual_seed(2)))
        assert not b.mask.all()  # rows 1 and 3 end early
        idx = pm.hook.hetplug_replay_add(batch=b)
        td = torch.rand(6, 7, generator=torch.Generator().manual_seed(3)) * 5
        td[~b.mask] = 100.0  # on invalid steps: must not count
        new = pm.hook.hetplug_update_priorities(
            indices=idx, td_error=td, mask=None if mask is None else b.mask
        )
        results.append((new, plugin._step_mass.clone(), plugin._ep_mass.clone(), plugin._episodes.clone()))
    for a, b_ in zip(*results, strict=True):
        torch.testing.assert_close(a, b_)


def test_replay_add_checks_what_collection_has_not(monkeypatch):
    """A batch trajectories_collected just checked is not checked again by replay_add
    (only its reward and TD errors, which a host may change in between); a fresh batch, or
    one modified in place since, is checked whole."""
    import hetplug.shep.plugin as shep_plugin

    pm, plugin = manager(group_her=False)
    seen = []
    real = shep_plugin.check_values
    monkeypatch.setattr(
        shep_plugin, "check_values", lambda checks: (seen.append([c[0] for c in checks]), real(checks))
    )
    b = batch()
    pm.hook.hetplug_trajectories_collected(batch=b)
    seen.clear()
    pm.hook.hetplug_replay_add(batch=b)
    assert seen == [["batch.reward", "batch.td_error", "priorities"]]
    seen.clear()
    pm.hook.hetplug_replay_add(batch=batch(seed=1))  # never collected: checked whole
    assert "batch.positions" in seen[0] and "batch.actions" in seen[0]
    pm.hook.hetplug_trajectories_collected(batch=b)
    b.positions[0, 0, 0, 0] = float("nan")  # changed in place after the check
    size = len(plugin.sampler)
    with pytest.raises(ValueError, match="batch.positions"):
        pm.hook.hetplug_replay_add(batch=b)
    assert len(plugin.sampler) == size
