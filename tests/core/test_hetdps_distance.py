"""HetDPS distances: sample pool, feature presets, CVAE estimator, policy distances.

The central check is group recovery: synthetic agents of hidden types that differ in one
heterogeneity type at a time (like the paper's case study v1-v6) must be grouped exactly
(adjusted Rand index 1.0) from the model-free meta-transition distance.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial.distance
import torch
from sklearn.metrics import adjusted_rand_score

from hetplug.distance import (
    HETEROGENEITY_TYPES,
    DistanceEstimator,
    SamplePool,
    build_features,
    categorical_policy_distance,
    gaussian_policy_distance,
    gaussian_w2,
)
from hetplug.sharing import cluster_agents

# Three hidden types; each version of the task changes one function between them.
SPEED = torch.tensor([0.1, 0.5, 0.9])  # response transition: how an agent's own state moves
EFFECT = torch.tensor([-0.5, 0.0, 0.5])  # effect transition: how its action moves an entity
GOAL = torch.tensor([[0.5, 0.5], [-0.5, 0.5], [0.0, -0.5]])  # objective
PERM = torch.tensor([[0, 1, 2, 3], [2, 3, 0, 1], [1, 0, 3, 2]])  # observation function
DIFFERS = {
    "observation": ("observation",),
    "response": ("response",),
    "effect": ("effect",),
    "objective": ("objective",),
    "v5_obs_objective": ("observation", "objective"),
    "v6_all": ("observation", "response", "effect", "objective"),
}


def meta_samples(types: torch.Tensor, differs: tuple[str, ...], s: int = 2000, seed: int = 0):
    """Meta-transition samples of agents whose functions depend on ``types [N]`` only."""
    g = torch.Generator().manual_seed(seed)
    n = len(types)
    base = torch.zeros_like(types)
    k = {name: types if name in differs else base for name in DIFFERS["v6_all"]}
    state = torch.rand(s, n, 4, generator=g) * 2 - 1  # (own position, entity position)
    action = torch.rand(s, n, 2, generator=g) * 2 - 1
    speed = SPEED[k["response"]] if "response" in differs else torch.full((n,), 0.5)
    pos = state[..., :2] + speed[:, None] * action
    entity = state[..., 2:] + EFFECT[k["effect"]][:, None] * action
    nxt = torch.cat([pos, entity], -1)
    obs = torch.gather(nxt, -1, PERM[k["observation"]].expand(s, -1, -1))
    reward = -(pos - GOAL[k["objective"]]).norm(dim=-1, keepdim=True)
    fields = dict(local_state=state, action=action, next_local_state=nxt, next_obs=obs, reward=reward)
    return build_features("meta", fields, n)


@pytest.mark.parametrize("version", list(DIFFERS))
def test_model_free_meta_distance_recovers_hidden_types(version):
    types = torch.tensor([0, 0, 1, 2, 1, 2, 2, 0, 2])[
        torch.randperm(9, generator=torch.Generator().manual_seed(3))
    ]
    x, y = meta_samples(types, DIFFERS[version])
    est = DistanceEstimator(9, x.shape[-1], y.shape[-1], mode="model_free")  # MADPS's default sizes
    est.add(x, y)
    est.fit()
    d = est.distance_matrix()
    labels = cluster_agents(d.double().numpy()).labels
    assert adjusted_rand_score(types.numpy(), labels) == 1.0, (version, labels, d)
    same = (types[:, None] == types[None]) & ~torch.eye(9, dtype=torch.bool)
    assert d[same].max() < d[types[:, None] != types[None]].min()


def test_model_based_observation_distance_is_zero_exactly_for_identical_agents():
    """Model-based: p_i(z|x) = f(z | y_i, x); identical observation functions give identical
    encodings (Appendix E, property 3), different ones a positive distance."""
    g = torch.Generator().manual_seed(0)
    types = torch.tensor([0, 1, 0, 1])
    state = torch.rand(1500, 4, generator=g) * 2 - 1  # global state shared by all agents
    obs = state[:, PERM[types]]  # [S, N, 4]: agent i sees the state in its type's order
    x, y = build_features("observation", {"state": state, "obs": obs}, 4)
    assert x.shape == (1500, 4, 4) and y.shape == (1500, 4, 4)
    est = DistanceEstimator(4, 4, 4, mode="model_based")
    est.add(x, y)
    est.fit()
    d = est.distance_matrix()
    assert d[0, 2] == 0 and d[1, 3] == 0
    assert d[0, 1] > 0.1 and d[2, 3] > 0.1
    assert adjusted_rand_score(types.numpy(), cluster_agents(d.double().numpy()).labels) == 1.0


def test_distance_matrix_is_the_mean_of_pairwise_w2_over_samples(device):
    """The batched [N, N] result against a brute-force loop over samples and pairs."""
    x, y = meta_samples(torch.tensor([0, 1, 2, 0, 1]), DIFFERS["v6_all"], s=300)
    est = DistanceEstimator(5, x.shape[-1], y.shape[-1], config={"epochs": 1}, device=device)
    est.add(x.to(device), y.to(device))
    est.fit()
    probe = x[:64, 0].to(device)
    d = est.distance_matrix(probe)
    mu, sigma = est.gaussians(probe)
    brute = torch.zeros(5, 5, dtype=torch.float64)
    for s in range(64):
        for i in range(5):
            for j in range(5):
                brute[i, j] += float(gaussian_w2(mu[s, i], sigma[s, i], mu[s, j], sigma[s, j])) / 64
    assert torch.allclose(d.double().cpu(), brute, atol=1e-5)
    assert torch.equal(d, d.T) and (d >= 0).all() and (d.diagonal() == 0).all()
    assert (d.unsqueeze(-1) <= d.unsqueeze(-2) + d.T.unsqueeze(-3) + 1e-5).all()  # triangle inequality


def test_fit_is_reproducible_and_state_round_trips():
    x, y = meta_samples(torch.tensor([0, 1, 0]), DIFFERS["response"], s=400)
    runs = []
    for _ in range(2):
        est = DistanceEstimator(3, x.shape[-1], y.shape[-1], config={"epochs": 2}, seed=7)
        est.add(x, y)
        est.fit()
        runs.append(est.distance_matrix(x[:50, 0]))
    assert torch.equal(runs[0], runs[1])
    clone = DistanceEstimator(3, x.shape[-1], y.shape[-1], config={"epochs": 2}, seed=1)
    clone.load_state_dict(est.state_dict())
    assert torch.equal(clone.distance_matrix(x[:50, 0]), runs[1])
    est.fit()
    clone.fit()
    assert torch.equal(clone.distance_matrix(x[:50, 0]), est.distance_matrix(x[:50, 0]))


def test_pool_is_a_bounded_ring_and_samples_without_replacement():
    pool = SamplePool(capacity=5, n_agents=2, x_dim=1, y_dim=1)
    values = torch.arange(8.0).view(8, 1, 1).expand(8, 2, 1)
    pool.add(values[:3], values[:3])
    pool.add(values[3:], values[3:])
    assert len(pool) == 5
    assert sorted(pool.x[:, 0, 0].tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]  # the oldest were overwritten
    x, y = pool.sample(generator=torch.Generator().manual_seed(0))
    assert sorted(x[:, 0, 0].tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0] and torch.equal(x, y)
    assert x[:, 0, 0].tolist() != [3.0, 4.0, 5.0, 6.0, 7.0] or pool.sample(3)[0].shape[0] == 3
    big = SamplePool(capacity=3, n_agents=2, x_dim=1, y_dim=1)
    big.add(values, values)  # a batch larger than the pool keeps its last rows
    assert sorted(big.x[:, 0, 0].tolist()) == [5.0, 6.0, 7.0]


@pytest.mark.parametrize(
    "x, y, match",
    [
        (torch.zeros(4, 3, 2), torch.zeros(4, 2, 1), r"x must be \[S, N=2"),
        (torch.zeros(4, 2, 2), torch.zeros(4, 2, 3), r"y must be \[S, N=2, y_dim=1\]"),
        (torch.zeros(4, 2, 2), torch.zeros(5, 2, 1), "as many samples S as x"),
        (torch.full((4, 2, 2), float("nan")), torch.zeros(4, 2, 1), "finite"),
        (torch.zeros(4, 2), torch.zeros(4, 2, 1), "x must have 3 dimensions"),
    ],
)
def test_bad_samples_are_rejected_before_the_pool_changes(x, y, match):
    est = DistanceEstimator(2, 2, 1)
    good = torch.rand(6, 2, 2), torch.rand(6, 2, 1)
    est.add(*good)
    before = est.pool.state_dict()
    with pytest.raises(ValueError, match=match):
        est.add(x, y)
    with pytest.raises(ValueError, match=match):
        est.fit(x, y)
    after = est.pool.state_dict()
    assert torch.equal(before["x"], after["x"]) and before["cursor"] == after["cursor"]


def test_estimator_errors_name_the_problem():
    with pytest.raises(ValueError, match="mode must be one of"):
        DistanceEstimator(2, 2, 1, mode="model-free")
    with pytest.raises(ValueError, match="cvae: kl_weight must be >= 0"):
        DistanceEstimator(2, 2, 1, config={"kl_weight": -1.0})
    with pytest.raises(ValueError, match="unknown option cvae.hidden_size"):
        DistanceEstimator(2, 2, 1, config={"hidden_size": 8})
    est = DistanceEstimator(2, 2, 1)
    with pytest.raises(RuntimeError, match="fit the DistanceEstimator"):
        est.distance_matrix()
    with pytest.raises(ValueError, match="pool is empty"):
        est.fit()


def test_feature_presets_cover_table_1_and_replicate_the_reward():
    assert set(HETEROGENEITY_TYPES) == {"observation", "response", "effect", "objective", "policy", "meta"}
    s, n = 7, 3
    fields = {
        "local_state": torch.rand(s, n, 4),
        "action": torch.rand(s, n, 2),
        "next_local_state": torch.rand(s, n, 4),
        "next_obs": torch.rand(s, n, 6),
        "reward": torch.rand(s),  # a team reward, shared
    }
    x, y = build_features("meta", fields, n)
    assert x.shape == (s, n, 6) and y.shape == (s, n, 4 + 6 + 6)  # reward x6 ("auto": widest y field)
    assert torch.equal(y[..., 10:], fields["reward"][:, None, None].expand(s, n, 6))
    _, y2 = build_features("meta", fields, n, reward_repeat=2)
    assert y2.shape[-1] == 12
    _, y3 = build_features("meta", {**fields, "next_local_state": None}, n)
    assert y3.shape[-1] == 12
    xr, _ = build_features(
        "response",
        {
            "state": torch.rand(s, 5),
            "joint_action": torch.rand(s, n, 2),
            "next_local_state": torch.rand(s, n, 4),
        },
        n,
    )
    assert xr.shape == (s, n, 5 + n * 2) and torch.equal(xr[:, 0], xr[:, 2])  # global x, shared
    with pytest.raises(ValueError, match="needs field 'next_obs'"):
        build_features("meta", {k: v for k, v in fields.items() if k != "next_obs"}, n)
    with pytest.raises(ValueError, match="reward_repeat must be an integer >= 1"):
        build_features("meta", fields, n, reward_repeat=0)
    with pytest.raises(ValueError, match="S=5 samples but another field has S=7"):
        build_features("meta", {**fields, "action": torch.rand(5, n, 2)}, n)
    with pytest.raises(ValueError, match="kind must be one of"):
        build_features("transition", fields, n)


def test_policy_distances_against_brute_force_and_scipy(device):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(40, 5, 3, generator=g, dtype=torch.float64).to(device)
    sigma = (torch.rand(40, 5, 3, generator=g, dtype=torch.float64) + 0.1).to(device)
    d = gaussian_policy_distance(mu, sigma).cpu()
    brute = np.zeros((5, 5))
    for s in range(40):
        for i in range(5):
            for j in range(5):
                brute[i, j] += float(gaussian_w2(mu[s, i], sigma[s, i], mu[s, j], sigma[s, j])) / 40
    assert np.allclose(d.numpy(), brute, atol=1e-10)
    probs = torch.softmax(torch.randn(40, 5, 4, generator=g, dtype=torch.float64), -1).to(device)
    tv = categorical_policy_distance(probs).cpu().numpy()
    ref = np.mean([0.5 * scipy.spatial.distance.cdist(p, p, "cityblock") for p in probs.cpu().numpy()], 0)
    np.fill_diagonal(ref, 0)
    assert np.allclose(tv, ref, atol=1e-12) and (tv <= 1).all()
    with pytest.raises(ValueError, match="probabilities, not logits"):
        categorical_policy_distance(torch.randn(4, 2, 3))


def old_mean_pairwise_w2(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The implementation before issue 21, kept as the reference: direct differences
    (cdist without the matrix-product shortcut) per block of samples."""
    s, n = mu.shape[:2]
    step = max(1, min(s, (1 << 24) // (n * n)))
    total = mu.new_zeros(n, n)
    for start in range(0, s, step):
        z = torch.cat([mu[start : start + step], sigma[start : start + step]], -1)
        d = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")
        total += (0.5 * (d + d.transpose(-1, -2))).sum(0)
    return total / s * (1 - torch.eye(n, dtype=mu.dtype))


def _random_gaussians(s, n, z, dtype, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    mu = (torch.randn(s, n, z, generator=g, dtype=torch.float64) * scale).to(dtype)
    sigma = (torch.rand(s, n, z, generator=g, dtype=torch.float64) + 0.05).to(dtype)
    return mu, sigma


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("s, n", [(1, 1), (3, 2), (37, 150), (300, 70)])
def test_matrix_product_w2_matches_the_old_direct_formula(s, n, dtype, tol):
    """The stated tolerance of the matrix-product W2 (issue 21): |new - old| <= tol (1 + max d)
    against the old direct-difference formula, for several panels of rows and blocks of
    samples (150 agents: 3 panels of 64; 300 samples of 70 agents: 2 blocks), close and
    far Gaussians, a large common offset and duplicated agents (exactly 0, like the diagonal)."""
    from hetplug.distance.wasserstein import mean_pairwise_gaussian_w2

    mu, sigma = _random_gaussians(s, n, 10, dtype, seed=s * 1000 + n)
    mu += 50.0  # a common offset: W2 ignores it, the products must too (they centre first)
    if n >= 70:
        mu[:, 5:10] = mu[:, :5] + 1e-4  # near-coincident pairs: the hardest case for the products
        mu[:, 11], sigma[:, 11] = mu[:, 3], sigma[:, 3]  # identical agents
    new, old = mean_pairwise_gaussian_w2(mu, sigma), old_mean_pairwise_w2(mu, sigma)
    assert new.dtype == dtype and new.shape == (n, n)
    assert (new - old).abs().max().item() <= tol * (1 + old.abs().max().item())
    assert torch.equal(new, new.T) and (new >= 0).all() and (new.diagonal() == 0).all()
    if n >= 70:
        assert new[3, 11] == 0 and new[11, 3] == 0 and new[3, 12] > 0


def test_matrix_product_w2_on_trained_encodings_and_its_input_checks():
    """Trained CVAE encodings (the meta-transition of three hidden types) within the same
    tolerance; agents equal at the first sample only are not zeroed; bad inputs raise."""
    from hetplug.distance.wasserstein import mean_pairwise_gaussian_w2

    x, y = meta_samples(torch.tensor([0, 0, 1, 2, 1, 2, 2, 0, 2]), DIFFERS["v6_all"])
    est = DistanceEstimator(9, x.shape[-1], y.shape[-1])
    est.add(x, y)
    est.fit()
    mu, sigma = est.gaussians()
    old = old_mean_pairwise_w2(mu, sigma)
    assert (mean_pairwise_gaussian_w2(mu, sigma) - old).abs().max() <= 1e-5 * (1 + old.max())
    mu2, sigma2 = mu.clone(), sigma.clone()
    mu2[0, 1], sigma2[0, 1] = mu2[0, 0], sigma2[0, 0]  # agent 1 = agent 0 at the first sample only
    assert mean_pairwise_gaussian_w2(mu2, sigma2)[0, 1] > 0
    bad = mu.clone()
    bad[5, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        mean_pairwise_gaussian_w2(bad, sigma)
    with pytest.raises(ValueError, match=">= 0"):
        mean_pairwise_gaussian_w2(mu, -sigma)


def test_gaussians_encode_all_agents_in_blocks_like_the_old_expanded_pass():
    """The model-free encoder reads the shared x once per sample and runs in blocks of
    samples; it equals the old pass over x expanded to every agent, and the default
    (pool-drawn) inputs are the old draw: one random agent's x per pool step."""
    n, s = 700, 100  # blocks of (2^15 // 700) = 46 samples
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(s, n, 3, generator=g), torch.rand(s, n, 2, generator=g)
    est = DistanceEstimator(n, 3, 2, config={"epochs": 1, "batch_size": 4096})
    est.add(x, y)
    est.fit()
    with torch.no_grad():
        torch.nn.init.normal_(est.model.agent_embedding.weight, generator=g)  # distinct agents
        state = est.generator.get_state()
        mu, sigma = est.gaussians(n_samples=s)
        est.generator.set_state(state)
        px, _ = est.pool.sample(s, est.generator)
        who = torch.randint(0, n, (px.shape[0],), generator=est.generator)
        probe = px[torch.arange(px.shape[0]), who]
        ref_mu, ref_sigma = est.model.encode(probe.unsqueeze(1).expand(-1, n, -1), agent=torch.arange(n))
    torch.testing.assert_close(mu, ref_mu, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(sigma, ref_sigma, atol=1e-6, rtol=1e-6)
