"""PrioritizedSampler: frequencies, IS weights, unbiasedness (eq. 8), clipping, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch

from hetplug.replay import PrioritizedSampler, SamplerConfig


def filled(n=200, alpha=0.6, seed=0, device="cpu", **kw):
    g = torch.Generator().manual_seed(seed)
    pri = torch.rand(n, generator=g, dtype=torch.float64) * 5 + 0.01
    s = PrioritizedSampler(n, device=device, alpha=alpha, **kw)
    s.add(pri.to(device))
    return s, pri


def test_probabilities_follow_priority_power(device):
    s, pri = filled(device=device)
    expected = pri**0.6 / (pri**0.6).sum()
    assert torch.allclose(s.probabilities().cpu(), expected)


@pytest.mark.parametrize("flat_max", [0, 30, 16384], ids=["tree", "tree-flat-top", "flat"])
@pytest.mark.parametrize("fanout", [2, 3, 32])
@pytest.mark.parametrize("n", [1, 7, 200, 1000])
def test_sampling_frequencies_match_probabilities_chi_square(n, fanout, flat_max):
    """Counts over many draws are consistent with p_i (chi-square, fixed seed), for the
    tree walk (from a root of ``fanout`` nodes, or from a top level of up to 30 nodes
    scanned flat) and for the flat scan small buffers use."""
    s, pri = filled(n=n, fanout=fanout, flat_max=flat_max)
    g = torch.Generator().manual_seed(123)
    draws = 50 * n + 1000
    idx = torch.cat([s.sample(1000, g).indices for _ in range(draws // 1000 + 1)])
    counts = torch.bincount(idx, minlength=n).numpy()
    expected = s.probabilities().numpy() * counts.sum()
    if n == 1:
        assert counts.tolist() == [counts.sum()]
        return
    p_value = scipy.stats.chisquare(counts, expected).pvalue
    assert p_value > 1e-3


@pytest.mark.parametrize("flat_max", [0, 30, 16384], ids=["tree", "tree-flat-top", "flat"])
def test_zero_priority_items_are_never_drawn(flat_max):
    s = PrioritizedSampler(64, alpha=1.0, flat_max=flat_max)
    pri = torch.zeros(64)
    pri[[3, 40]] = torch.tensor([1.0, 3.0])
    s.add(pri)
    idx = s.sample(4000, torch.Generator().manual_seed(0)).indices
    assert set(idx.tolist()) == {3, 40}
    assert (idx == 40).float().mean().item() == pytest.approx(0.75, abs=0.03)


@pytest.mark.parametrize("flat_max", [16384, 0], ids=["flat", "tree"])
def test_is_weight_formula_and_normalisations(device, flat_max):
    """Probabilities and IS weights of the flat scan and of the tree walk (masses from the
    leaves, p_min from the tree of minima) against the brute-force formula."""
    for norm in ("max", "batch", "none"):
        s, pri = filled(n=50, device=device, beta=0.7, weight_normalization=norm, fanout=4, flat_max=flat_max)
        s.update(torch.tensor([3, 7], device=device), torch.tensor([0.001, 9.0], device=device))
        out = s.sample(64, torch.Generator(device=device).manual_seed(1))
        p_all = s.probabilities()
        assert torch.allclose(out.probabilities, p_all[out.indices])
        raw = (50 * out.probabilities) ** -0.7
        if norm == "max":
            expected = raw / (50 * p_all.min()) ** -0.7
        elif norm == "batch":
            expected = raw / raw.max()
        else:
            expected = raw
        assert torch.allclose(out.weights, expected)


def test_beta_anneals_linearly_to_final():
    s, _ = filled(n=10, beta=0.4, beta_final=1.0, beta_steps=4)
    betas = []
    for _ in range(6):
        betas.append(s.beta)
        s.sample(2)
    assert betas == pytest.approx([0.4, 0.55, 0.7, 0.85, 1.0, 1.0])


def test_weighted_estimate_is_unbiased_with_beta_one():
    """Eq. (8): E_{i~p}[w_i L_i] equals the uniform mean of L when beta = 1.

    With raw weights w_i = 1/(N p_i) the estimator's variance is known exactly, so the
    tolerance is five standard errors of the mean over the draws.
    """
    n = 300
    s, _ = filled(n=n, alpha=0.8, beta=1.0, weight_normalization="none", seed=3)
    losses = torch.rand(n, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 10
    p = s.probabilities()
    g = torch.Generator().manual_seed(5)
    draws = 200_000
    out = s.sample(draws, g)
    estimate = (out.weights * losses[out.indices]).mean().item()
    target = losses.mean().item()
    var = (p * (losses / (n * p)) ** 2).sum().item() - target**2
    assert abs(estimate - target) < 5 * (var / draws) ** 0.5
    # The same test fails for beta = 0.4 (biased): the bias dwarfs the standard error.
    s.config.beta = 0.4
    biased = s.sample(draws, g)
    est_b = (biased.weights * losses[biased.indices]).mean().item()
    assert abs(est_b - target) > 5 * (var / draws) ** 0.5


def test_max_probability_clipping_caps_and_preserves_ratios():
    s = PrioritizedSampler(6, alpha=1.0, max_probability=0.3)
    s.add(torch.tensor([50.0, 30.0, 1.0, 2.0, 3.0, 4.0]))
    p = s.probabilities()
    assert p.sum().item() == pytest.approx(1.0)
    assert p[:2].tolist() == pytest.approx([0.3, 0.3])
    rest = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert torch.allclose(p[2:], 0.4 * rest / rest.sum())
    # Brute force: the cap c with sum min(P, c) * 0.3 = c reproduces the same numbers.
    pri = np.array([50.0, 30.0, 1.0, 2.0, 3.0, 4.0])
    c = scipy.optimize.brentq(lambda c: 0.3 * np.minimum(pri, c).sum() - c, 1e-9, 50)
    assert np.allclose(p.numpy(), np.minimum(pri, c) / np.minimum(pri, c).sum())
    out = s.sample(20000, torch.Generator().manual_seed(0))
    freq = torch.bincount(out.indices, minlength=6).double() / 20000
    assert torch.allclose(freq, p, atol=0.015)


def test_clipping_that_cannot_be_met_gives_uniform_over_positive():
    s = PrioritizedSampler(4, alpha=1.0, max_probability=0.2)
    s.add(torch.tensor([5.0, 1.0, 0.0, 1.0]))
    assert s.probabilities().tolist() == pytest.approx([1 / 3, 1 / 3, 0.0, 1 / 3])


@pytest.mark.parametrize("flat_max", [0, 16384], ids=["tree", "flat"])
def test_ring_overwrites_oldest_and_update_last_wins(flat_max):
    s = PrioritizedSampler(5, alpha=1.0, flat_max=flat_max, fanout=2)
    assert s.add(torch.ones(3)).tolist() == [0, 1, 2]
    assert s.add(torch.full((4,), 2.0)).tolist() == [3, 4, 0, 1]
    assert len(s) == 5
    assert s.priorities.tolist() == [2, 2, 1, 2, 2]
    s.update(torch.tensor([2, 2, 4]), torch.tensor([7.0, 9.0, 0.5]))
    assert s.priorities.tolist() == [2, 2, 9, 2, 0.5]
    assert s.probabilities().tolist() == pytest.approx([2 / 15.5, 2 / 15.5, 9 / 15.5, 2 / 15.5, 0.5 / 15.5])


def test_add_without_priorities_uses_max_seen():
    s = PrioritizedSampler(10)
    s.add(count=2)
    assert s.priorities.tolist() == [1.0, 1.0]
    s.update(torch.tensor([0]), torch.tensor([4.0]))
    s.add(count=1)
    assert s.priorities.tolist() == [4.0, 1.0, 4.0]


def test_without_replacement_draws_distinct_items():
    s, _ = filled(n=20)
    out = s.sample(20, torch.Generator().manual_seed(0), replacement=False)
    assert sorted(out.indices.tolist()) == list(range(20))


def test_state_dict_round_trip_reproduces_samples():
    s, _ = filled(n=100, beta_steps=10)
    s.sample(3)
    state = s.state_dict()
    other = PrioritizedSampler(100)
    other.load_state_dict(state)
    a = s.sample(50, torch.Generator().manual_seed(4))
    b = other.sample(50, torch.Generator().manual_seed(4))
    assert torch.equal(a.indices, b.indices) and torch.allclose(a.weights, b.weights)
    assert other.add(torch.ones(1)).tolist() == s.add(torch.ones(1)).tolist()
    with pytest.raises(ValueError, match="capacity"):
        PrioritizedSampler(5).load_state_dict(state)


@pytest.mark.parametrize(
    "bad, match, error",
    [
        (torch.tensor([1.0, float("nan")]), "finite and >= 0", ValueError),
        (torch.tensor([1.0, float("inf")]), "finite and >= 0", ValueError),
        (torch.tensor([1.0, -0.5]), "finite and >= 0", ValueError),
        (torch.ones(2, 1), "priorities must have 1 dimensions", ValueError),
        ([1.0, 2.0], "priorities must be a torch.Tensor", TypeError),
    ],
)
def test_bad_priorities_raise_and_leave_state_unchanged(bad, match, error):
    s, _ = filled(n=10)
    s2 = PrioritizedSampler(20)
    s2.add(torch.ones(5))
    before = (s2.priorities.clone(), len(s2), s2.state_dict()["cursor"])
    with pytest.raises(error, match=match):
        s2.add(bad)
    with pytest.raises(error, match=match):
        s2.update(torch.tensor([0, 1]), bad)
    assert torch.equal(s2.priorities, before[0]) and len(s2) == before[1]
    assert s2.state_dict()["cursor"] == before[2]


def test_bad_indices_and_sampling_requests():
    s = PrioritizedSampler(10)
    with pytest.raises(ValueError, match="empty sampler"):
        s.sample(4)
    s.add(torch.ones(4))
    before = s.priorities.clone()
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\)"):
        s.update(torch.tensor([1, 6]), torch.ones(2))
    with pytest.raises(ValueError, match="priorities must have the shape of indices"):
        s.update(torch.tensor([1, 2]), torch.ones(3))
    with pytest.raises(TypeError, match="indices must be an integer tensor"):
        s.update(torch.tensor([1.0]), torch.ones(1))
    assert torch.equal(s.priorities, before)
    with pytest.raises(ValueError, match="exceeds the 4 stored items"):
        s.sample(5, replacement=False)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        s.sample(0)
    with pytest.raises(ValueError, match="capacity=10"):
        s.add(torch.ones(11))
    s.update(torch.arange(4), torch.zeros(4))
    with pytest.raises(ValueError, match="every stored priority is zero"):
        s.sample(2)


@pytest.mark.parametrize(
    "field, value",
    [
        ("alpha", -1.0),
        ("beta", float("nan")),
        ("max_probability", 0.0),
        ("max_probability", 1.5),
        ("weight_normalization", "min"),
        ("fanout", 1),
        ("beta_steps", -2),
    ],
)
def test_config_validation_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplerConfig(**{field: value})
    with pytest.raises(ValueError, match=field):
        PrioritizedSampler(8, **{field: value})


def test_unknown_sampler_option_is_named():
    with pytest.raises(ValueError, match="unknown option sampler.alhpa"):
        PrioritizedSampler(8, alhpa=0.5)


def test_sample_unpacks_as_indices_and_weights():
    s, _ = filled(n=10)
    indices, weights = s.sample(4, torch.Generator().manual_seed(0))
    assert indices.shape == weights.shape == (4,)


def test_flat_and_tree_paths_hold_the_same_tree():
    """The bulk rebuild of small buffers and the per-node updates of the tree path (with a
    root of ``fanout`` nodes, or a top level scanned flat) hold the same leaves, every
    upper level equals the sums and minima of its children, and zero-mass items are
    never drawn."""
    flat, pri = filled(n=300, fanout=4, flat_max=16384)
    trees = [filled(n=300, fanout=4, flat_max=m)[0] for m in (0, 20)]
    assert len(flat._sums) == 1 and len(trees[0]._sums[-1]) == 4 and len(trees[1]._sums) == 3
    idx, new = torch.tensor([5, 7, 5, 299]), torch.tensor([0.5, 2.0, 3.0, 0.0], dtype=torch.float64)
    for s in (flat, *trees):
        s.update(idx, new)
    for tree in trees:
        torch.testing.assert_close(tree._sums[0], flat._sums[0])
        torch.testing.assert_close(tree._mins[0], flat._mins[0])
        for lvl in range(len(tree._sums) - 1):
            children = len(tree._sums[lvl]) // 4
            torch.testing.assert_close(tree._sums[lvl + 1][:children], tree._sums[lvl].view(-1, 4).sum(-1))
            torch.testing.assert_close(tree._mins[lvl + 1][:children], tree._mins[lvl].view(-1, 4).amin(-1))
        assert 299 not in tree.sample(5000, torch.Generator().manual_seed(1)).indices.tolist()
    assert 299 not in flat.sample(5000, torch.Generator().manual_seed(1)).indices.tolist()


def test_default_fanout_gives_a_shallow_tree():
    """fanout=None: about sqrt(capacity / 256) children per node, and a top level of at most
    flat_max nodes, so 1e6 items take one walked level below a scanned top level."""
    s = PrioritizedSampler(1_000_000)
    assert s._fanout == 64 and [len(level) for level in s._sums] == [1_000_000, 15_680]
    assert PrioritizedSampler(1000, fanout=8)._fanout == 8


@pytest.mark.parametrize("flat_max", [0, 30], ids=["tree", "tree-flat-top"])
def test_draws_at_the_ends_of_the_mass_never_pick_empty_items(flat_max, monkeypatch):
    """u at the very top (rand just below 1) and at 0, with empty items around the
    positive ones: rounding between a node's sum and its children's cumulative sums must
    not carry the walk onto an item without mass."""
    s = PrioritizedSampler(200, alpha=1.0, fanout=3, flat_max=flat_max)
    pri = torch.zeros(200, dtype=torch.float64)
    pri[[0, 1, 2, 197]] = torch.tensor([0.1, 0.7, 1e-3, 0.3], dtype=torch.float64)
    pri[100:110] = torch.rand(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 3
    s.add(pri)
    real_rand = torch.rand
    for end in (1.0 - 2.0**-53, 0.0):
        monkeypatch.setattr(torch, "rand", lambda *a, end=end, **k: torch.full_like(real_rand(*a, **k), end))
        idx = s.sample(8).indices
        assert (pri[idx] > 0).all(), (end, idx)
    monkeypatch.undo()
