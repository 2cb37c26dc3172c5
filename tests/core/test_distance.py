"""W2 between diagonal Gaussians: closed form against the general formula and metric axioms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from hetplug.distance import gaussian_w2, pairwise_gaussian_w2


def general_w2(mu1, s1, mu2, s2):
    """W2 for arbitrary covariances: |dmu|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2)."""
    S1, S2 = np.diag(s1**2), np.diag(s2**2)
    r2 = scipy.linalg.sqrtm(S2)
    cross = scipy.linalg.sqrtm(r2 @ S1 @ r2)
    return float(np.sqrt(np.sum((mu1 - mu2) ** 2) + np.trace(S1 + S2 - 2 * cross.real)))


def test_closed_form_matches_general_formula_and_oracle():
    # The oracle file's case: |dmu|^2 = 5, |dsigma|^2 = 2 -> sqrt(7) = 2.6457513110645907.
    got = gaussian_w2(
        torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0])
    )
    assert abs(float(got) - 2.6457513110645907) < 1e-6
    g = np.random.default_rng(0)
    for _ in range(20):
        mu1, mu2 = g.normal(size=4), g.normal(size=4)
        s1, s2 = g.uniform(0.1, 2, size=4), g.uniform(0.1, 2, size=4)
        ours = gaussian_w2(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2)))
        assert abs(float(ours) - general_w2(mu1, s1, mu2, s2)) < 1e-7


def test_pairwise_matrix_is_a_metric(device):
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(3, 12, 5, generator=g, dtype=torch.float64).to(device)
    sigma = torch.rand(3, 12, 5, generator=g, dtype=torch.float64).to(device) + 0.05
    d = pairwise_gaussian_w2(mu, sigma)
    assert d.shape == (3, 12, 12)
    assert torch.equal(d, d.transpose(-1, -2)) and (d >= 0).all()
    assert (torch.diagonal(d, dim1=-2, dim2=-1) == 0).all()
    # Every pair equals the two-Gaussian formula; the triangle inequality holds for all triples.
    direct = gaussian_w2(mu.unsqueeze(-2), sigma.unsqueeze(-2), mu.unsqueeze(-3), sigma.unsqueeze(-3))
    assert torch.allclose(d, direct * (1 - torch.eye(12, dtype=d.dtype, device=d.device)), atol=1e-12)
    assert (d.unsqueeze(-1) <= d.unsqueeze(-2) + d.transpose(-1, -2).unsqueeze(-3) + 1e-12).all()


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.zeros(3), -torch.ones(3), torch.zeros(3), torch.ones(3)), "sigma1 must be finite and >= 0"),
        ((torch.zeros(3), torch.ones(2), torch.zeros(3), torch.ones(3)), "must share the last"),
        ((torch.zeros(3), torch.ones(3), torch.zeros(4), torch.ones(4)), "3 and 4 dims"),
    ],
)
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        gaussian_w2(*args)
    with pytest.raises(ValueError, match=r"\[..., N, Z\]"):
        pairwise_gaussian_w2(torch.zeros(4), torch.ones(4))
