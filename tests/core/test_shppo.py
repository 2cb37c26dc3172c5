"""SHPPO: HeteLayer algebra, gradient routing, team-size changes, losses against oracles, plugin."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
import torch

import hetplug
from hetplug.shppo import (
    HeteLayer,
    InferenceNet,
    LatentNet,
    SHPPOActor,
    distance_loss,
    entropy_loss,
    inference_loss,
    latent_loss,
)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------- HeteLayer
@pytest.mark.parametrize("lead", [(), (7,), (2, 5)])
def test_hete_layer_equals_per_agent_linear(lead, device):
    torch.manual_seed(0)
    layer = HeteLayer(6, 4, latent_dim=3).to(device)
    n = 5
    x = rand(*lead, n, 6, seed=1).to(device)
    latent = rand(*lead, n, 3, seed=2).to(device)
    y = layer(x, latent)
    assert y.shape == (*lead, n, 4)
    flat_x, flat_l, flat_y = x.reshape(-1, 6), latent.reshape(-1, 3), y.reshape(-1, 4)
    for r in range(flat_x.shape[0]):  # one agent-row at a time, as eq. (5) reads
        w, b = layer.generate(flat_l[r])
        assert torch.allclose(flat_y[r], flat_x[r] @ w + b, atol=1e-5)


def test_shared_latent_path_matches_per_row_path():
    torch.manual_seed(0)
    layer = HeteLayer(8, 8)
    x = rand(32, 4, 8, seed=3)
    per_agent = rand(4, 3, seed=4)
    broadcast = layer(x, per_agent)  # one latent per agent, weights generated once
    per_row = layer(x, per_agent.expand(32, 4, 3).contiguous())
    assert torch.allclose(broadcast, per_row, atol=1e-5)


@pytest.mark.parametrize(
    "x_lead, latent_of",
    [
        ((41, 6), lambda t: t[0]),  # [n, L]: a latent per agent, many rows each
        ((3, 6), lambda t: t[0]),  # few rows per agent: the head's bias goes through x B
        ((5, 6), lambda t: t[0].expand(5, 6, 3)),  # expanded (stride 0): still one per agent
        ((5, 6), lambda t: t[:, :1]),  # [rows, 1, L]: one latent per row, shared by its agents
        ((2, 4, 6), lambda t: t[0, :1].unsqueeze(0)),  # [1, 1, n, L] against [2, 4, n, in]
        ((2, 4, 6), lambda t: t[:, :, :1].expand(2, 4, 6, 3)),
    ],
)
def test_grouped_latents_equal_the_per_row_path_and_brute_force(x_lead, latent_of, device):
    """Latents shared across rows (smaller, broadcast or expanded) generate one weight per
    distinct latent and group x's rows by it. Outputs and every gradient (decoder
    parameters, x, latent) equal the per-row path (the latent copied to every row), and the
    outputs equal eq. (5) row by row."""
    torch.manual_seed(0)
    layer = HeteLayer(5, 4, latent_dim=3, decoder_hidden=8).double().to(device)
    source = rand(*x_lead, 3, seed=7).double().to(device)
    x0 = rand(*x_lead, 5, seed=8).double().to(device)

    def run(per_row: bool):
        full = source.clone().requires_grad_(True)
        x = x0.clone().requires_grad_(True)
        latent = latent_of(full)
        if per_row:  # the same latents copied to every row: the per-row path
            latent = latent.expand(*x_lead, 3).contiguous()
        seen = []
        hook = layer.decoder.register_forward_hook(lambda m, i, o: seen.append(i[0][..., 0].numel()))
        y = layer(x, latent)
        hook.remove()
        grads = torch.autograd.grad(y.square().sum(), [x, full, *layer.parameters()], allow_unused=True)
        return y, grads, seen[0], latent.expand(*x_lead, 3)

    y, grads, generated, _ = run(per_row=False)
    y_ref, grads_ref, generated_ref, per_row = run(per_row=True)
    assert y.shape == (*x_lead, 4)
    assert generated < generated_ref == math.prod(x_lead)  # one weight per distinct latent
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-10)
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want, atol=1e-11, rtol=1e-9)
    flat_x, flat_l, flat_y = x0.reshape(-1, 5), per_row.detach().reshape(-1, 3), y.detach().reshape(-1, 4)
    for r in range(flat_x.shape[0]):  # eq. (5), one agent-row at a time
        w, b = layer.generate(flat_l[r])
        torch.testing.assert_close(flat_y[r], flat_x[r] @ w + b, atol=1e-12, rtol=1e-10)


def test_per_row_latents_keep_the_previous_implementation_bit_for_bit():
    """A distinct latent per row (SHPPO training) takes the unchanged per-row path: the
    output equals the pre-issue-21 formula exactly (same operations in the same order)."""
    torch.manual_seed(0)
    layer = HeteLayer(8, 6)
    x, latent = rand(7, 5, 8, seed=9), rand(7, 5, 3, seed=10)
    w, b = layer.generate(latent)
    old = torch.bmm(x.reshape(-1, 1, 8), w.reshape(-1, 8, 6)).view(7, 5, 6) + b
    assert torch.equal(layer(x, latent), old)


def test_outputs_differ_with_latents_and_coincide_when_equal():
    torch.manual_seed(0)
    layer = HeteLayer(5, 3)
    x = rand(1, 5, seed=5).expand(4, 5)  # every agent sees the same input
    latent = rand(4, 3, seed=6)
    latent[2] = latent[0]
    y = layer(x, latent)
    assert torch.allclose(y[0], y[2])
    assert not torch.allclose(y[0], y[1], atol=1e-4) and not torch.allclose(y[1], y[3], atol=1e-4)


@pytest.mark.parametrize(
    "x_shape, l_shape, match",
    [
        ((4, 5), (4, 4), r"latent must have 3 features in its last dim, got latent of shape \(4, 4\)"),
        ((4, 6), (4, 3), r"x must have 5 features in its last dim, got x of shape \(4, 6\)"),
        ((5,), (3,), r"x must have at least 2 dims"),
        ((2, 4, 5), (3, 4, 3), "do not broadcast"),
        ((4, 5), (2, 4, 3), "would enlarge"),
    ],
)
def test_hete_layer_bad_input(x_shape, l_shape, match):
    layer = HeteLayer(5, 2)
    with pytest.raises(ValueError, match=match):
        layer(torch.zeros(x_shape), torch.zeros(l_shape))


# --------------------------------------------------------------------------------- gradients
def test_gradients_reach_decoders_and_encoder_through_rsample():
    torch.manual_seed(0)
    latent_net = LatentNet(6, latent_dim=3)
    layer = HeteLayer(6, 2)
    obs = rand(16, 4, 6, seed=7)
    mu, sigma = latent_net(obs)
    y = layer(obs, LatentNet.sample(mu, sigma))
    y.pow(2).sum().backward()
    for name, module in [("decoder", layer.decoder), ("w_decoder", layer.w_decoder),
                         ("b_decoder", layer.b_decoder), ("encoder", latent_net.encoder)]:  # fmt: skip
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), name


def test_value_loss_leaves_inference_net_and_actor_loss_leaves_latent_net():
    torch.manual_seed(0)
    n, obs_dim = 4, 6
    latent_net = LatentNet(obs_dim)
    inference = InferenceNet(obs_dim, n_agents=n, pooling="concat")
    actor = SHPPOActor(obs_dim, 5)
    obs = rand(8, n, obs_dim, seed=8)
    g_obs = obs.mean(-2)
    mu, sigma = latent_net(obs)
    latent = LatentNet.sample(mu, sigma)
    loss, terms = latent_loss(inference, g_obs, mu, sigma, latent, mask=None)
    loss.backward()
    assert all(p.grad is None for p in inference.parameters())  # eq. (6): frozen
    assert all(p.grad is not None for p in latent_net.parameters())
    assert torch.isfinite(torch.stack(list(terms.values()))).all()
    latent_net.zero_grad(set_to_none=True)
    logits, _ = actor(obs, latent.detach())  # eq. (13): l without gradient
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is None for p in latent_net.parameters())
    assert all(p.grad is not None for p in actor.hete.parameters())
    inference_loss(inference, g_obs, mu, sigma, torch.zeros(8)).backward()
    assert all(p.grad is None for p in latent_net.parameters())  # mu, sigma detached in L_I
    assert all(p.grad is not None for p in inference.parameters())


# --------------------------------------------------------------------------------- team size
@pytest.mark.parametrize("rnn", [False, True])
def test_model_built_for_five_agents_runs_for_three_and_nine(rnn):
    torch.manual_seed(0)
    obs_dim = 6
    latent_net = LatentNet(obs_dim, hidden_state_dim=64 if rnn else 0)
    actor = SHPPOActor(obs_dim, 5, rnn=rnn)
    inference = InferenceNet(obs_dim, pooling="mean")
    for n in (5, 3, 9):
        obs = rand(2, n, obs_dim, seed=n)
        h = torch.zeros(2, n, 64)
        mu, sigma = latent_net(obs, h if rnn else None)
        out, h_next = actor(obs, LatentNet.sample(mu, sigma), h if rnn else None)
        assert out.shape == (2, n, 5)
        assert (h_next is not None) == rnn and (not rnn or h_next.shape == (2, n, 64))
        assert inference(obs.mean(-2), mu, sigma).shape == (2,)
    concat = InferenceNet(obs_dim, n_agents=5, pooling="concat")
    with pytest.raises(ValueError, match="concatenates n_agents=5 latents, got n=3"):
        concat(torch.zeros(obs_dim), torch.zeros(3, 3), torch.ones(3, 3))


def test_pooled_inference_net_is_permutation_invariant():
    torch.manual_seed(0)
    net = InferenceNet(4, pooling="mean")
    g, mu, sigma = rand(4, seed=1), rand(7, 3, seed=2), rand(7, 3, seed=3).abs()
    perm = torch.randperm(7)
    assert torch.allclose(net(g, mu, sigma), net(g, mu[perm], sigma[perm]), atol=1e-6)


@pytest.mark.parametrize("position", ["after_trunk", "head", 0, 1])
def test_hete_layer_positions(position):
    torch.manual_seed(0)
    actor = SHPPOActor(6, 4, hete_position=position)
    out, _ = actor(rand(3, 2, 6), rand(3, 2, 3, seed=1))
    assert out.shape == (3, 2, 4)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in actor.trunk)
    assert n_linear == (1 if isinstance(position, int) else 2)
    with pytest.raises(ValueError, match="hete_position"):
        SHPPOActor(6, 4, hete_position="middle")


# --------------------------------------------------------------------------------- losses
def test_distance_loss_matches_brute_force_with_scipy():
    lat = rand(3, 5, 3, seed=11)  # 3 teams of 5
    expected = []
    for team in lat.double().numpy():
        d = np.array([scipy.spatial.distance.cosine(team[i], team[j])
                      for i, j in itertools.permutations(range(5), 2)])  # fmt: skip
        expected.append(((d - d.min()) / (d.max() - d.min() + 1e-12)).mean())  # eq. (9)
    assert np.isclose(float(distance_loss(lat.double())), np.mean(expected), atol=1e-9)


def test_distance_loss_degenerate_cases_are_defined():
    same = torch.ones(4, 3, requires_grad=True)  # all distances equal (0)
    value = distance_loss(same)
    value.backward()
    assert float(value.detach()) == 0.0 and torch.isfinite(same.grad).all()
    assert float(distance_loss(rand(2, 3))) == 0.0  # n = 2: both ordered pairs equal -> Norm = 0
    single = rand(1, 3).requires_grad_(True)
    assert float(distance_loss(single).detach()) == 0.0  # n = 1: no pair, defined as 0
    with pytest.raises(ValueError, match=r"latent must be \[..., n, L\]"):
        distance_loss(torch.zeros(3))


def test_entropy_loss_matches_scipy():
    sigma = rand(6, 4, 3, seed=12).abs() + 0.1
    expected = scipy.stats.norm(0, sigma.double().numpy()).entropy().sum(-1).mean()
    assert np.isclose(float(entropy_loss(sigma.double())), expected, atol=1e-9)


def test_latent_net_ablation_and_sigma_floor():
    torch.manual_seed(0)
    net = LatentNet(4, zero_inputs=True)
    a, b = net(rand(3, 4, seed=1)), net(rand(3, 4, seed=2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    actor = SHPPOActor(4, 2, zero_latents=True)
    x = rand(3, 4)
    assert torch.equal(actor(x, rand(3, 3, seed=3))[0], actor(x, rand(3, 3, seed=4))[0])
    assert (LatentNet(4, min_std=0.01)(rand(5, 4))[1] >= 0.01).all()


# --------------------------------------------------------------------------------- plugin
def shppo_batch(B=8, T=6, n=3, obs_dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return hetplug.TrajectoryBatch(
        reward=torch.rand(B, T, generator=g),
        mask=torch.ones(B, T, dtype=torch.bool),
        obs=torch.randn(B, T, n, obs_dim, generator=g),
        state=torch.randn(B, T, 7, generator=g),
    )


def test_hook_hetplug_auxiliary_losses_shppo():
    torch.manual_seed(0)
    pm = hetplug.get_plugin_manager(["shppo"], {"shppo": {"lambda_d": 0.2}})
    pm.hook.hetplug_configure.call_historic(
        kwargs={"spec": hetplug.HostSpec(n_agents=3, max_steps=6, capacity=8)}
    )
    plugin = pm.get_plugin("shppo")
    batch = shppo_batch()
    with pytest.raises(RuntimeError, match="bind"):
        pm.hook.hetplug_auxiliary_losses(batch=batch, update=0)
    latent_net = LatentNet(5)
    plugin.bind(latent_net)
    before = [p.detach().clone() for p in latent_net.parameters()]
    first = None
    for update in range(60):
        (out,) = pm.hook.hetplug_auxiliary_losses(batch=batch, update=update)
        first = first or float(out["shppo/inference_loss"])
    assert set(out) >= {
        "shppo/latent_loss",
        "shppo/value",
        "shppo/entropy",
        "shppo/distance",
        "shppo/inference_loss",
    }
    assert any(not torch.equal(a, b) for a, b in zip(before, latent_net.parameters(), strict=True))
    assert float(out["shppo/inference_loss"]) < 0.5 * first  # V_I learns the returns
    state = hetplug.plugin_state(pm)
    other = hetplug.get_plugin_manager(["shppo"], {"shppo": {"lambda_d": 0.2}})
    other.get_plugin("shppo").bind(latent_net)
    hetplug.load_plugin_state(other, state)
    g = batch.state
    mu, sigma = latent_net(batch.obs)
    assert torch.allclose(other.get_plugin("shppo").inference(g, mu, sigma), plugin.inference(g, mu, sigma))
    with pytest.raises(ValueError, match="shppo: pooling must be one of"):
        hetplug.get_plugin_manager(["shppo"], {"shppo": {"pooling": "max"}})


@pytest.mark.parametrize("off", ["use_value", "use_entropy", "use_distance"])
def test_loss_ablation_switches_remove_exactly_one_term(off):
    torch.manual_seed(0)
    latent_net, inference = LatentNet(4), InferenceNet(4, pooling="mean")
    obs = rand(6, 3, 4, seed=1)
    mu, sigma = latent_net(obs)
    latent = LatentNet.sample(mu, sigma)
    full, t_full = latent_loss(inference, obs.mean(-2), mu, sigma, latent, 0.01, 0.1)
    part, t_part = latent_loss(inference, obs.mean(-2), mu, sigma, latent, 0.01, 0.1, **{off: False})
    term = {"use_value": "value", "use_entropy": "entropy", "use_distance": "distance"}[off]
    weight = {"value": -1.0, "entropy": 0.01, "distance": -0.1}[term]
    assert float(t_part[term]) == 0.0
    assert torch.isclose(part, full - weight * t_full[term], atol=1e-6)


# --------------------------------------------------------------------------------- acting
def test_acting_latent_samples_while_exploring_and_is_mu_otherwise():
    """Algorithm 1: l ~ N(mu, sigma) per call while exploring; mu for deterministic runs."""
    mu, sigma = rand(4, 3, 2, seed=1), torch.full((4, 3, 2), 0.5)
    torch.manual_seed(0)
    a, b = LatentNet.acting_latent(mu, sigma, True), LatentNet.acting_latent(mu, sigma, True)
    assert not torch.allclose(a, b) and not torch.allclose(a, mu)
    assert torch.equal(LatentNet.acting_latent(mu, sigma, False), mu)
    draws = torch.stack([LatentNet.acting_latent(mu, sigma, True) for _ in range(4000)])
    torch.testing.assert_close(draws.mean(0), mu, atol=0.05, rtol=0)
    torch.testing.assert_close(draws.std(0), sigma, atol=0.05, rtol=0)


@pytest.mark.parametrize("position", ["after_trunk", "head", 0])
def test_forward_sequence_equals_stepping_with_resets(position):
    """The recurrent unroll (used to re-evaluate stored sequences) is the step-by-step
    forward, with the memory zeroed before the steps marked as episode starts."""
    torch.manual_seed(0)
    actor = SHPPOActor(5, 4, hidden=8, rnn=True, hete_position=position)
    B, T, n = 2, 6, 3
    obs, latent = rand(B, T, n, 5, seed=1), rand(B, T, n, 3, seed=2)
    h0 = rand(B, n, 8, seed=3)
    reset = torch.zeros(B, T, 1, 1, dtype=torch.bool)
    reset[0, 3] = True
    out, hs = actor.forward_sequence(obs, latent, h0, reset)
    h = h0
    for t in range(T):
        h = torch.where(reset[:, t], torch.zeros_like(h), h)
        step, h = actor(obs[:, t], latent[:, t], h)
        torch.testing.assert_close(out[:, t], step)
        torch.testing.assert_close(hs[:, t], h)
    ff = SHPPOActor(5, 4, hidden=8)
    torch.testing.assert_close(ff.forward_sequence(obs, latent)[0], ff(obs, latent)[0])


# --------------------------------------------------------------------------------- settings
def test_defaults_are_table_v_and_the_paper_inference_net():
    c = hetplug.shppo.SHPPOConfig()
    assert (c.lambda_e, c.lambda_d, c.latent_lr, c.inference_lr) == (0.01, 0.1, 5e-4, 5e-3)
    assert (c.latent_dim, c.decoder_hidden, c.hidden) == (3, 64, 64)  # Table IV
    assert c.pooling == "concat" and c.gamma is None
    assert not (c.zero_latent_inputs or c.zero_latents)
    assert c.value_loss and c.entropy_loss and c.distance_loss
    with pytest.raises(TypeError, match="zero_latents must be a bool"):
        hetplug.shppo.SHPPOConfig(zero_latents=1)


def _inference_after_one_step(options, extra):
    torch.manual_seed(0)
    pm = hetplug.get_plugin_manager(["shppo"], {"shppo": options})
    spec = hetplug.HostSpec(n_agents=3, max_steps=6, capacity=8, extra=extra)
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
    plugin = pm.get_plugin("shppo")
    plugin.bind(LatentNet(5))
    pm.hook.hetplug_auxiliary_losses(batch=shppo_batch(), update=0)
    return plugin, [p.detach().clone() for p in plugin.inference.parameters()]


def test_latent_losses_use_the_hosts_discount():
    """R (eq. 11) is discounted with the host's gamma (HostSpec.extra["gamma"]); an explicit
    option overrides it; without either, Table V's 0.95. Oracle: the same step with the
    discount given the other way."""
    host, from_host = _inference_after_one_step({}, {"gamma": 0.5})
    assert host.gamma == 0.5 and host.inference.pooling == "concat" and host.inference.n_agents == 3
    _, explicit = _inference_after_one_step({"gamma": 0.5}, {"gamma": 0.99})
    for a, b in zip(from_host, explicit, strict=True):
        torch.testing.assert_close(a, b)
    paper, default = _inference_after_one_step({}, {})
    _, at_095 = _inference_after_one_step({"gamma": 0.95}, {})
    assert paper.gamma == 0.95
    for a, b in zip(default, at_095, strict=True):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(from_host, default, strict=True))
    with pytest.raises(
        ValueError, match=r"HostSpec.extra\['gamma'\] must be <= 1.0, got HostSpec.extra\['gamma'\]=1.5"
    ):
        _inference_after_one_step({}, {"gamma": 1.5})
