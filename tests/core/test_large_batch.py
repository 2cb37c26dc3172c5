"""large_batch_select: frequencies follow p2, weights, unbiased gradient, bad input."""

from __future__ import annotations

import pytest
import scipy.stats
import torch

from hetplug.replay.large_batch import large_batch_select


def test_selection_frequencies_follow_priorities_chi_square():
    g = torch.Generator().manual_seed(0)
    pri = torch.rand(64, generator=g, dtype=torch.float64) + 0.05
    idx, _ = large_batch_select(pri, 20000, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(idx, minlength=64).numpy()
    expected = (pri / pri.sum()).numpy() * counts.sum()
    assert scipy.stats.chisquare(counts, expected).pvalue > 1e-3


def test_weightings_match_laber_definitions():
    pri = torch.tensor([1.0, 2.0, 4.0, 0.0, 1.0], dtype=torch.float64)
    for weighting in ("mean", "lazy", "max"):
        idx, w = large_batch_select(pri, 50, weighting, torch.Generator().manual_seed(3))
        assert (pri[idx] > 0).all()  # zero-priority items are never drawn
        lazy = 1.0 / pri[idx]
        expected = {"mean": pri.mean() / pri[idx], "lazy": lazy, "max": lazy / lazy.max()}[weighting]
        assert torch.allclose(w, expected)
    # "mean" is LBS's w_k = 1 / (K p_k).
    idx, w = large_batch_select(pri, 10, "mean", torch.Generator().manual_seed(0))
    assert torch.allclose(w, 1.0 / (5 * pri[idx] / pri.sum()))


def test_rows_select_independently_for_each_agent():
    pri = torch.zeros(3, 6)
    pri[0, 1] = pri[1, 4] = 1.0
    pri[2] = 1.0
    idx, w = large_batch_select(pri, 8, generator=torch.Generator().manual_seed(0))
    assert idx.shape == w.shape == (3, 8)
    assert (idx[0] == 1).all() and (idx[1] == 4).all()
    assert torch.allclose(w[2], torch.ones(8))


def test_weighted_minibatch_gradient_is_unbiased_for_the_large_batch_mean():
    """E[(1/B) sum_b w_b grad l_b] equals (1/K) sum_k grad l_k for a linear model's L2 loss.

    The per-sample gradients are known in closed form, so the variance of the estimator is
    exact and the tolerance is five standard errors.
    """
    g = torch.Generator().manual_seed(7)
    k, d = 128, 3
    x = torch.randn(k, d, generator=g, dtype=torch.float64)
    y = torch.randn(k, generator=g, dtype=torch.float64)
    theta = torch.randn(d, generator=g, dtype=torch.float64)
    td = x @ theta - y
    grads = td[:, None] * x  # gradient of 0.5 * td^2 per item
    target = grads.mean(0)
    pri = td.abs() + 1e-3
    p = pri / pri.sum()
    draws = 200_000
    idx, w = large_batch_select(pri, draws, "mean", torch.Generator().manual_seed(11))
    estimate = (w[:, None] * grads[idx]).mean(0)
    second = (p[:, None] * (grads / (k * p[:, None])) ** 2).sum(0)
    stderr = ((second - target**2) / draws).sqrt()
    assert ((estimate - target).abs() < 5 * stderr).all()
    # The autograd gradient of the weighted loss is the same estimate.
    th = theta.clone().requires_grad_(True)
    loss = (w[:2000] * 0.5 * (x[idx[:2000]] @ th - y[idx[:2000]]) ** 2).mean()
    loss.backward()
    assert torch.allclose(th.grad, (w[:2000, None] * grads[idx[:2000]]).mean(0))


@pytest.mark.parametrize(
    "pri, kwargs, match",
    [
        (torch.tensor([1.0, float("nan")]), {}, r"finite and >= 0, got priorities\[1\]=nan"),
        (torch.tensor([1.0, -1.0]), {}, ">= 0"),
        (torch.zeros(3), {}, "all zero"),
        (torch.zeros(0), {}, r"at least one item \(K >= 1\)"),
        (torch.ones(2, 2, 2), {}, "priorities must have 1 or 2 dimensions"),
        (torch.ones(3), {"weighting": "median"}, "weighting"),
        (torch.ones(3), {"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_input_names_the_problem(pri, kwargs, match):
    args = {"batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        large_batch_select(pri, **args)
