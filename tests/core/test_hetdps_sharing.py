"""HetDPS dynamic sharing: clustering, Hungarian matching (same / split / merge in every
mode), plans applied to parameters, Adam state and targets, the manager and the plugin."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import AffinityPropagation
from sklearn.metrics import adjusted_rand_score

import hetplug
from hetplug.sharing import (
    DynamicSharingManager,
    ParameterSlots,
    SharingPlan,
    SlotMLP,
    cluster_agents,
    match_groups,
)
from hetplug.sharing.plugin import distance_samples, transition_fields


def group_distance(types, between=1.0, seed=0):
    """A noisy distance matrix: ~0.05 inside a type, ~``between`` across types."""
    types = np.asarray(types)
    rng = np.random.default_rng(seed)
    d = np.where(types[:, None] == types[None], 0.05, between) + rng.uniform(0, 0.02, (len(types),) * 2)
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0)
    return d


# ---- clustering ---------------------------------------------------------------------------


def test_preferences_match_scikit_learn():
    d = group_distance([0, 0, 0, 1, 1, 2, 2, 2], seed=1)
    s = -d
    off = s[~np.eye(8, dtype=bool)]
    for ours, theirs in (("median", np.median(off)), ("min", off.min()), ("sklearn", None), (-0.3, -0.3)):
        ref = AffinityPropagation(affinity="precomputed", preference=theirs, random_state=0).fit(s)
        got = cluster_agents(d, ours)
        assert adjusted_rand_score(ref.labels_, got.labels) == 1.0, ours
    assert cluster_agents(d).labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    # scikit-learn's median includes the zero diagonal, so it sits closer to 0 than ours.
    assert np.median(s) > np.median(off)


def test_degenerate_inputs_give_one_group_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for d in (np.zeros((4, 4)), 1 - np.eye(3)):
            assert cluster_agents(d).labels.tolist() == [0] * len(d)
    d = group_distance([0, 1, 0, 1]) * 0.01
    assert len(set(cluster_agents(d, homogeneous_below=0.05).labels)) == 1
    assert cluster_agents(np.zeros((1, 1))).labels.tolist() == [0]


def test_no_convergence_keeps_the_previous_grouping():
    d = group_distance([0, 0, 1, 1, 2, 2])
    assert not cluster_agents(d, max_iter=2, convergence_iter=1).converged
    manager = DynamicSharingManager(6, {"max_iter": 2, "convergence_iter": 1, "start": "none"})
    plan = manager.update(d)
    assert plan.case == "kept" and "did not converge" in plan.reason
    assert plan.assignment == tuple(range(6)) and manager.assignment.tolist() == list(range(6))


def test_an_oscillating_fit_is_retried_at_a_larger_damping():
    """Three agents, two close and one far: with the median preference (a tie with s(2, k))
    scikit-learn's AP oscillates at damping 0.5; the retry at 0.9 gives scikit-learn's
    labels at 0.9, i.e. the two close agents together."""
    d = np.array([[0.0, 1.0, 50.0], [1.0, 0.0, 50.0], [50.0, 50.0, 0.0]])
    pref = float(np.median(-d[~np.eye(3, dtype=bool)]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AffinityPropagation(affinity="precomputed", preference=pref, random_state=0).fit(-d)
    assert any("did not converge" in str(w.message) for w in caught)
    assert not cluster_agents(d, retry_damping=None).converged
    ref = AffinityPropagation(affinity="precomputed", preference=pref, damping=0.9, random_state=0).fit(-d)
    got = cluster_agents(d)
    assert got.converged and got.damping == 0.9
    assert adjusted_rand_score(ref.labels_, got.labels) == 1.0
    assert got.labels.tolist() == [0, 0, 1]
    plan = DynamicSharingManager(3, {"start": "full"}).update(d)
    assert plan.case == "split" and plan.metrics["damping"] == 0.9
    # a fit that converges at once is not retried
    assert cluster_agents(group_distance([0, 0, 1, 1])).damping == 0.5
    with pytest.raises(ValueError, match="retry_damping"):
        DynamicSharingManager(3, {"retry_damping": 1.0})


# ---- matching -----------------------------------------------------------------------------


def brute_force_overlap(previous, labels):
    """Max total overlap over all one-to-one maps between old and new groups."""
    olds, news = np.unique(previous), np.unique(labels)
    o = np.array([[np.sum((previous == a) & (labels == b)) for b in news] for a in olds])
    k = min(len(olds), len(news))
    best = 0
    for rows in itertools.permutations(range(len(olds)), k):
        for cols in itertools.permutations(range(len(news)), k):
            best = max(best, sum(o[r, c] for r, c in zip(rows, cols, strict=True)))
    return best


def inherited_overlap(plan: SharingPlan):
    """Total overlap of the groups that kept an old slot (not copy targets)."""
    prev, new = np.array(plan.previous), np.array(plan.assignment)
    copied = {op.dst for op in plan.operations if op.kind == "copy"}
    total = 0
    for slot in set(plan.assignment) - copied:
        total += int(np.sum((new == slot) & (prev == slot)))
    return total


@pytest.mark.parametrize("seed", range(12))
def test_matching_maximises_overlap_like_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 7
    previous = rng.integers(0, rng.integers(1, 5), n)
    labels = np.unique(rng.integers(0, rng.integers(1, 5), n), return_inverse=True)[1]
    plan = match_groups(previous, labels, group_distance(labels), n_slots=n)
    assert inherited_overlap(plan) == brute_force_overlap(previous, labels)
    # Agents grouped together by the clustering share a slot, and groups never share one.
    new = np.array(plan.assignment)
    assert adjusted_rand_score(labels, new) == 1.0
    k_old, k_new = len(set(previous)), len(set(labels))
    assert plan.case == ("same" if k_new == k_old else "split" if k_new > k_old else "merge")
    if plan.case == "split":
        assert [op.kind for op in plan.operations] == ["copy"] * (k_new - k_old)
    elif plan.case == "merge":  # every unmatched old network is merged into exactly one new one
        assert all(op.kind == "merge" for op in plan.operations)
        assert sum(len(op.sources) - 1 for op in plan.operations) == k_old - k_new
    else:
        assert plan.operations == ()


def adam_slots(n_slots, steps=3, seed=0):
    """Stacked slot parameters with a target copy and an Adam that has taken a few steps."""
    g = torch.Generator().manual_seed(seed)
    params = [
        torch.nn.Parameter(torch.randn(n_slots, 3, 2, generator=g)),
        torch.nn.Parameter(torch.randn(n_slots, 2, generator=g)),
    ]
    targets = [p.detach().clone() + 1 for p in params]
    opt = torch.optim.Adam(params, lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        sum((p * torch.randn(p.shape, generator=g)).sum() for p in params).backward()
        opt.step()
    return params, targets, opt


def snapshot(params, targets, opt):
    moments = [
        {k: v.clone() for k, v in opt.state[p].items() if isinstance(v, torch.Tensor) and v.shape == p.shape}
        for p in params
    ]
    return [p.detach().clone() for p in params], [t.clone() for t in targets], moments


def test_same_count_inherits_slots_without_copies():
    params, targets, opt = adam_slots(5)
    before = snapshot(params, targets, opt)
    routing = torch.tensor([0, 0, 1, 1, 2])
    plan = match_groups(
        np.array([0, 0, 1, 1, 2]), np.array([1, 1, 0, 2, 2]), group_distance([0, 0, 1, 2, 2]), 5
    )
    assert plan.case == "same" and plan.operations == ()
    assert plan.assignment == (0, 0, 1, 2, 2)  # {0,1} keep slot 0; agent 3 moves to agent 4's slot
    ParameterSlots(params, opt, targets, routing).apply(plan)
    after = snapshot(params, targets, opt)
    for a, b in zip(before[0] + before[1], after[0] + after[1], strict=True):
        assert torch.equal(a, b)
    assert routing.tolist() == [0, 0, 1, 2, 2]


def test_split_copies_parameters_moments_and_targets_into_a_free_slot():
    params, targets, opt = adam_slots(4)
    (p0, t0, m0) = snapshot(params, targets, opt)
    routing = torch.zeros(4, dtype=torch.int64)
    plan = match_groups(np.zeros(4, dtype=np.int64), np.array([0, 0, 1, 1]), group_distance([0, 0, 1, 1]), 4)
    assert plan.case == "split" and len(plan.operations) == 1
    op = plan.operations[0]
    assert op.kind == "copy" and op.sources == (0,) and op.dst == 1
    ParameterSlots(params, opt, targets, routing).apply(plan)
    for k, p in enumerate(params):
        assert torch.equal(p[1], p0[k][0]) and torch.equal(targets[k][1], t0[k][0])
        for name, value in opt.state[p].items():
            if name in m0[k]:
                assert torch.equal(value[1], m0[k][name][0]), name
        for slot in (0, 2, 3):
            assert torch.equal(p[slot], p0[k][slot])
    assert routing.tolist() == list(plan.assignment) and sorted(set(plan.assignment)) == [0, 1]


@pytest.mark.parametrize("mode", ["majority", "random", "average", "weighted"])
def test_merge_combines_slots_in_every_mode(mode):
    # Slot 0 served 3 agents, slots 1, 2 and 3 one each; agents 0-4 now form one group.
    previous = np.array([0, 0, 0, 1, 2, 3])
    labels = np.array([0, 0, 0, 0, 0, 1])
    params, targets, opt = adam_slots(6)
    (p0, t0, m0) = snapshot(params, targets, opt)
    plan = match_groups(previous, labels, group_distance(labels), 6, mode, np.random.default_rng(5))
    assert plan.case == "merge" and plan.assignment == (0, 0, 0, 0, 0, 3)
    (op,) = plan.operations
    assert op.kind == "merge" and op.dst == 0 and op.sources == (0, 1, 2)
    counts = np.array([3.0, 1.0, 1.0])
    expected = {
        "majority": np.array([1.0, 0.0, 0.0]),
        "average": np.full(3, 1 / 3),
        "weighted": counts / counts.sum(),
    }.get(mode)
    if mode == "random":
        assert sorted(op.weights) == [0.0, 0.0, 1.0]
        expected = np.array(op.weights)
    assert np.allclose(op.weights, expected)
    routing = torch.tensor(previous)
    ParameterSlots(params, opt, targets, routing).apply(plan)
    w = torch.tensor(expected, dtype=torch.float32)
    for k, p in enumerate(params):
        mix = lambda t: torch.einsum("s,s...->...", w, t[:3])  # noqa: E731
        assert torch.allclose(p[0], mix(p0[k]), atol=1e-6)
        assert torch.allclose(targets[k][0], mix(t0[k]), atol=1e-6)
        for name, value in opt.state[p].items():
            if name in m0[k]:
                assert torch.allclose(value[0], mix(m0[k][name]), atol=1e-6), name
        for slot in (1, 2, 3, 4, 5):
            assert torch.equal(p[slot], p0[k][slot])
    assert routing.tolist() == [0, 0, 0, 0, 0, 3]


def test_random_merge_picks_every_source_over_many_draws():
    rng = np.random.default_rng(0)
    picks = set()
    for _ in range(60):
        plan = match_groups(
            np.array([0, 1, 2]), np.array([0, 0, 0]), np.ones((3, 3)) - np.eye(3), 3, "random", rng
        )
        picks.add(plan.operations[0].sources[int(np.argmax(plan.operations[0].weights))])
    assert picks == {0, 1, 2}


# ---- the manager --------------------------------------------------------------------------


def test_manager_splits_then_merges_and_a_split_preserves_every_agent_output():
    types = [0, 0, 1, 1, 2, 2]
    model = SlotMLP(6, in_dim=3, out_dim=2, hidden=(8,), start="full")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.randn(5, 6, 3)
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    slots = ParameterSlots(model.parameters(), opt, routing=model.routing)
    manager = DynamicSharingManager(6)
    with torch.no_grad():
        before = model(x)
    plan = manager.update(group_distance(types))
    assert plan.case == "split" and plan.n_groups == 3
    slots.apply(plan)
    assert adjusted_rand_score(types, model.routing.numpy()) == 1.0
    with torch.no_grad():
        assert torch.equal(model(x), before)  # copies: same function, now free to diverge
    plan = manager.update(group_distance([0, 0, 0, 0, 1, 1], seed=3))
    assert plan.case == "merge" and plan.n_groups == 2
    slots.apply(plan)
    assert adjusted_rand_score([0, 0, 0, 0, 1, 1], model.routing.numpy()) == 1.0
    assert "merge" in str(plan) and plan.to_dict()["n_groups"] == 2


def test_manager_starting_without_sharing_merges_into_the_types():
    manager = DynamicSharingManager(6, {"start": "none", "merge_mode": "average"})
    assert manager.assignment.tolist() == list(range(6))
    plan = manager.update(group_distance([0, 1, 0, 1, 2, 2]))
    assert plan.case == "merge" and adjusted_rand_score([0, 1, 0, 1, 2, 2], list(plan.assignment)) == 1.0
    assert all(op.kind == "merge" and np.allclose(op.weights, 0.5) for op in plan.operations)


@pytest.mark.parametrize(
    "distance, match",
    [
        (np.zeros((4, 3)), r"square \[N, N\]"),
        (
            np.zeros((3, 3)),
            r"distance must be \[n_agents, n_agents\] = \[4, 4\], got distance of shape \(3, 3\)",
        ),
        (
            np.array([[0, 1, 1, 1], [2, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0.0]]),
            r"symmetric, got distance\[0, 1\]=1.0",
        ),
        (np.where(np.eye(4) > 0, 0, np.nan), r"finite, got distance\[0, 1\]=nan"),
        (-(1 - np.eye(4)), r">= 0, got distance\[0, 1\]=-1.0"),
        (np.ones((4, 4)), r"zero diagonal, got distance\[0, 0\]=1.0"),
    ],
)
def test_bad_distance_is_rejected_and_the_manager_is_unchanged(distance, match):
    manager = DynamicSharingManager(4)
    first = manager.update(group_distance([0, 0, 1, 1]))
    state = manager.state_dict()
    with pytest.raises(ValueError, match=match):
        manager.update(distance)
    assert manager.state_dict() == state and manager.last_plan is first
    with pytest.raises(ValueError, match=match):
        manager.update(torch.as_tensor(distance))


def test_slots_reject_a_plan_that_does_not_fit():
    params, targets, opt = adam_slots(3)
    before = [p.detach().clone() for p in params]
    plan = match_groups(np.zeros(4, dtype=np.int64), np.array([0, 0, 1, 1]), group_distance([0, 0, 1, 1]), 4)
    with pytest.raises(
        ValueError, match=r"plan.n_slots must equal the parameters' 3 slots, got plan.n_slots=4"
    ):
        ParameterSlots(params, opt, targets).apply(plan)
    assert all(torch.equal(a, b) for a, b in zip(before, params, strict=True))
    with pytest.raises(ValueError, match="slot dim first"):
        ParameterSlots([torch.zeros(3, 2), torch.zeros(4, 2)])
    with pytest.raises(ValueError, match="merge_mode must be one of"):
        DynamicSharingManager(3, {"merge_mode": "mean"})
    with pytest.raises(ValueError, match="start='none' needs one slot per agent"):
        DynamicSharingManager(3, {"start": "none", "n_slots": 2})


# ---- the plugin ---------------------------------------------------------------------------


def typed_batch(types, b=16, t=20, seed=0):
    """Agents move by speed[type] * action; observations are positions, reward per agent."""
    g = torch.Generator().manual_seed(seed)
    n = len(types)
    speed = torch.tensor([0.1, 0.9, 0.5])[torch.tensor(types)]
    actions = torch.randint(0, 4, (b, t, n), generator=g)
    step = torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]])[actions] * speed[:, None]
    pos = torch.rand(b, 1, n, 2, generator=g) + step.cumsum(1)
    return hetplug.TrajectoryBatch(
        reward=-pos.norm(dim=-1), mask=torch.ones(b, t, dtype=torch.bool), obs=pos, actions=actions
    )


def test_hetdps_plugin_regroups_a_bound_slot_model():
    types = [0, 1, 0, 1, 1, 0]  # slow and fast agents
    pm = hetplug.get_plugin_manager(["hetdps"], {"hetdps": {"interval": 2}})
    pm.hook.hetplug_configure.call_historic(
        kwargs={"spec": hetplug.HostSpec(n_agents=6, max_steps=20, capacity=64, n_actions=4)}
    )
    plugin = pm.get_plugin("hetdps")
    model = SlotMLP(6, 2, 4, hidden=(8,))
    opt = torch.optim.Adam(model.parameters())
    plugin.bind(ParameterSlots(model.parameters(), opt, routing=model.routing))
    pm.hook.hetplug_trajectories_collected(batch=typed_batch(types))
    assert pm.hook.hetplug_after_update(update=1) == []  # not due
    (out,) = pm.hook.hetplug_after_update(update=2)
    plan = out["hetdps/plan"]
    assert isinstance(plan, SharingPlan) and plan.case == "split"
    assert adjusted_rand_score(types, list(plan.assignment)) == 1.0
    assert model.routing.tolist() == list(plan.assignment) == plugin.routing().tolist()
    assert out["hetdps/distance"].shape == (6, 6) and out["hetdps/n_groups"] == 2.0
    # state round trip into a fresh plugin
    pm2 = hetplug.get_plugin_manager(["hetdps"], {"hetdps": {"interval": 2}})
    pm2.hook.hetplug_configure.call_historic(kwargs={"spec": hetplug.HostSpec(6, 20, 64, n_actions=4)})
    hetplug.load_plugin_state(pm2, hetplug.plugin_state(pm))
    assert pm2.get_plugin("hetdps").routing().tolist() == list(plan.assignment)
    assert len(pm2.get_plugin("hetdps").estimator.pool) == len(plugin.estimator.pool)


def test_hetdps_plugin_errors():
    pm = hetplug.get_plugin_manager(["hetdps"])
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": hetplug.HostSpec(6, 20, 64)})
    with pytest.raises(ValueError, match="need HostSpec.n_actions"):
        pm.hook.hetplug_trajectories_collected(batch=typed_batch([0] * 6))
    with pytest.raises(ValueError, match="unknown option hetdps.cvae.hidden_size"):
        hetplug.get_plugin_manager(["hetdps"], {"hetdps": {"cvae": {"hidden_size": 3}}})
    with pytest.raises(ValueError, match="interval must be an integer >= 1"):
        hetplug.get_plugin_manager(["hetdps"], {"hetdps": {"interval": 0}})
    with pytest.raises(ValueError, match="retry_damping"):
        hetplug.get_plugin_manager(["hetdps"], {"hetdps": {"retry_damping": 0.2}})
    # the clustering options reach the manager
    tuned = hetplug.get_plugin_manager(["hetdps"], {"hetdps": {"homogeneous_below": 0.5, "damping": 0.7}})
    tuned.hook.hetplug_configure.call_historic(kwargs={"spec": hetplug.HostSpec(6, 20, 64)})
    manager = tuned.get_plugin("hetdps").manager
    assert manager.config.homogeneous_below == 0.5 and manager.config.damping == 0.7
    assert manager.update(group_distance([0, 0, 1, 1, 2, 2]) * 0.1).n_groups == 1  # all below 0.5
    with pytest.raises(
        ValueError, match=r"slots.n_slots must equal the manager's n_slots=6, got slots.n_slots=3"
    ):
        pm.get_plugin("hetdps").bind(ParameterSlots([torch.zeros(3, 2)]))


def policy_batch(types, b=16, t=20, seed=0):
    """Agents alike in everything but their policy: type 0 picks action 0 or 1, type 1
    action 2 or 3, by the same rule on the observation; a global state is there too."""
    g = torch.Generator().manual_seed(seed)
    n = len(types)
    obs = torch.rand(b, t, n, 2, generator=g)
    actions = (obs[..., 0] > 0.5).long() + 2 * torch.tensor(types)
    return hetplug.TrajectoryBatch(
        reward=torch.zeros(b, t), mask=torch.ones(b, t, dtype=torch.bool), obs=obs, actions=actions,
        state=obs.flatten(2),
    )  # fmt: skip


def _hetdps(options, n=6):
    pm = hetplug.get_plugin_manager(["hetdps"], {"hetdps": {"interval": 1, **options}})
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": hetplug.HostSpec(n, 20, 64, n_actions=4)})
    return pm, pm.get_plugin("hetdps")


def test_grouping_distance_chooses_the_heterogeneity_the_agents_are_grouped_on():
    """Agents that differ only in their policy: grouped by type on the policy distance
    (observation -> action, model-free), and the default stays the paper's meta-transition
    distance."""
    types = [0, 1, 1, 0, 1, 0]
    pm, plugin = _hetdps({"grouping_distance": "policy"})
    pm.hook.hetplug_trajectories_collected(batch=policy_batch(types))
    (out,) = pm.hook.hetplug_after_update(update=1)
    assert adjusted_rand_score(types, list(out["hetdps/plan"].assignment)) == 1.0
    assert list(plugin.estimators) == ["policy"] and plugin.estimator.mode == "model_free"
    assert plugin.estimator.pool.x_dim == 2 and plugin.estimator.pool.y_dim == 4  # obs -> one-hot action
    assert list(_hetdps({})[1].weights) == ["meta"]


def test_a_combination_of_distances_is_their_weighted_sum():
    """Oracle: estimators built apart from the same samples and seed give the matrices;
    the plugin clusters 1.0 x meta + 0.5 x observation (model-based, on the global state)."""
    batch = typed_batch([0, 1, 0, 1, 1, 0])
    batch = batch.replace(state=batch.obs.flatten(2))
    options = {"grouping_distance": {"meta": 1.0, "observation": 0.5}, "fit_samples": 64, "distance_samples": 64,
               "cvae": {"epochs": 2}}  # fmt: skip
    pm, plugin = _hetdps(options)
    pm.hook.hetplug_trajectories_collected(batch=batch)
    (out,) = pm.hook.hetplug_after_update(update=1)
    assert plugin.estimators["observation"].mode == "model_based"
    _, twin = _hetdps(options)
    fields = transition_fields(batch, 4)
    expected = 0.0
    for kind, weight in (("meta", 1.0), ("observation", 0.5)):
        x, y = distance_samples(kind, fields, 6)
        estimator = twin._build_estimator(kind, x.shape[-1], y.shape[-1])
        estimator.add(x, y)
        estimator.fit()
        d = estimator.distance_matrix(n_samples=64)
        torch.testing.assert_close(out[f"hetdps/{kind}/mean_distance"], float(d.sum()) / 30)
        expected = expected + weight * d
    torch.testing.assert_close(out["hetdps/distance"], expected)
    assert out["hetdps/plan"] == twin.manager.update(expected)
    # the state round-trips with both estimators; a run grouping on other distances refuses it
    pm2, plugin2 = _hetdps(options)
    hetplug.load_plugin_state(pm2, hetplug.plugin_state(pm))
    assert {k: len(e.pool) for k, e in plugin2.estimators.items()} == {"meta": len(plugin.estimator.pool),
                                                                        "observation": len(plugin.estimator.pool)}  # fmt: skip
    pm3, _ = _hetdps({"grouping_distance": "policy"})
    with pytest.raises(
        ValueError, match=r"holds distances \['meta', 'observation'\] but this run groups on \['policy'\]"
    ):
        hetplug.load_plugin_state(pm3, hetplug.plugin_state(pm))


@pytest.mark.parametrize(
    "value,match",
    [
        ("metta", r"unknown heterogeneity type 'metta' \(did you mean 'meta'\?\)"),
        (
            {"meta": 0.0},
            r"grouping_distance\['meta'\] must be a finite number > 0, got grouping_distance\['meta'\]=0.0",
        ),
        ({}, "grouping_distance must be a heterogeneity type or a mapping"),
    ],
)
def test_grouping_distance_is_checked(value, match):
    with pytest.raises(ValueError, match=match):
        hetplug.get_plugin_manager(["hetdps"], {"hetdps": {"grouping_distance": value}})


def test_model_based_grouping_needs_the_global_state():
    pm, _ = _hetdps({"grouping_distance": "objective"})
    with pytest.raises(ValueError, match="'objective' needs the global state"):
        pm.hook.hetplug_trajectories_collected(batch=typed_batch([0, 1, 0, 1, 1, 0]))
