"""SHPPO in real BenchMARL runs: sampled latents stored with the step, the recurrent form,
the latent losses, ablations, and the team-size transfer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import set_recurrent_mode

import hetplug
import hetplug_benchmarl
from hetplug_benchmarl.models import LATENT_KEY, MEMORY_KEY
from hetplug_benchmarl.wiring.shppo import shppo_model

from .conftest import ITERS

LATENT, MEMORY = ("agents", LATENT_KEY), ("agents", MEMORY_KEY)
CONF = Path(hetplug_benchmarl.__file__).parent / "conf" / "hetplug"


def second_batch(exp):
    """The collector's second batch ``[envs, T]``: its rows continue the first batch's
    episodes (navigation's episodes are longer than T), so recurrent rows start mid-episode."""
    for i, batch in enumerate(exp.collector):
        if i == 1:
            return batch
    raise AssertionError("the collector stopped early")


def log_weight(loss, data) -> torch.Tensor:
    """``log pi(a|o) - log pi_behaviour(a|o)`` per sample and agent, as the PPO loss sees it."""
    with set_recurrent_mode(True), set_exploration_type(loss.deterministic_sampling_mode):
        lw, _, _ = loss._log_weight(data, adv_shape=data.get(("agents", "action")).shape[:-1])
    return lw


@pytest.mark.parametrize("rnn", [False, True], ids=["feedforward", "recurrent"])
def test_exploring_samples_latents_and_evaluation_acts_with_the_mean(shppo_experiment, rnn):
    """Algorithm 1: while exploring (ExplorationType.RANDOM) each call draws l ~ N(mu, sigma),
    so two calls on the same observation give different action-distribution parameters;
    deterministic calls act with mu and agree. The latent is written to the group's entry."""
    exp = shppo_experiment(rnn=rnn)
    model = shppo_model(exp, "agents")
    td = exp.test_env.reset()

    def act(mode):
        with set_exploration_type(mode), torch.no_grad():
            return exp.policy(td.clone())

    a, b = act(ExplorationType.RANDOM), act(ExplorationType.RANDOM)
    assert not torch.allclose(a.get(("agents", "loc")), b.get(("agents", "loc")))
    assert not torch.allclose(a.get(LATENT), b.get(LATENT))
    c, d = act(ExplorationType.DETERMINISTIC), act(ExplorationType.DETERMINISTIC)
    torch.testing.assert_close(c.get(("agents", "loc")), d.get(("agents", "loc")), rtol=0, atol=0)
    x = td.get(("agents", "observation"))
    memory = torch.zeros(*x.shape[:-1], 32) if rnn else None
    with torch.no_grad():
        mu, _ = model.latent_net(x, memory)
    torch.testing.assert_close(c.get(LATENT), mu)


@pytest.mark.parametrize(
    "algorithm, rnn",
    [("mappo", False), ("mappo", True), ("happo", True)],
    ids=["mappo-ff", "mappo-rnn", "happo-rnn"],
)
def test_ppo_ratio_is_one_on_the_stored_latents(shppo_experiment, algorithm, rnn):
    """Before any update the loss re-evaluates the stored steps with the latents (and, in
    the recurrent form, from the memory) that acted: the PPO ratio is 1 on every sample and
    agent, rows that continue an episode included. Evaluating with other latents (their
    means) or without the stored memory moves it: the stored values are what makes it 1."""
    exp = shppo_experiment(rnn=rnn, algorithm=algorithm)
    batch = second_batch(exp)
    if rnn:
        assert not batch.get("is_init")[:, 0].any()  # the rows continue earlier episodes
    data = batch if rnn else batch.reshape(-1)
    loss = exp.losses["agents"]
    lw = log_weight(loss, data.clone())
    torch.testing.assert_close(lw, torch.zeros_like(lw), rtol=0, atol=2e-5)
    out = loss(exp.algorithm.process_batch("agents", data.clone()))
    assert float(out["clip_fraction"]) == 0.0 and abs(float(out["kl_approx"])) < 1e-6
    other = data.clone()
    other.set(LATENT, torch.zeros_like(data.get(LATENT)))
    assert log_weight(loss, other).abs().max() > 1e-3
    if rnn:
        other = data.clone()
        other.set(MEMORY, torch.zeros_like(data.get(MEMORY)))
        assert log_weight(loss, other)[:, 0].abs().max() > 1e-4


def test_recurrent_form_follows_benchmarls_sequence_conventions(shppo_experiment):
    """The GRU state is a private entry of the group (a state spec BenchMARL's env primer
    fills), zeroed at ``is_init``, written to ``next``; the state before the step is stored
    as ``hetplug_memory``."""
    exp = shppo_experiment(rnn=True)
    assert exp.model_config.is_rnn and exp.algorithm.has_rnn
    hidden = ("agents", "_hidden_shppo_0")
    td = exp.test_env.reset()
    assert td.get(hidden).shape == (*td.batch_size, 3, 32) and td.get("is_init").all()
    noisy = td.clone()
    noisy.set(hidden, torch.randn_like(td.get(hidden)))

    def act(data):
        with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
            return exp.policy(data.clone())

    fresh, reset = act(td), act(noisy)
    torch.testing.assert_close(
        fresh.get(("agents", "loc")), reset.get(("agents", "loc"))
    )  # zeroed at is_init
    torch.testing.assert_close(reset.get(MEMORY), torch.zeros_like(td.get(hidden)))
    assert reset.get(("next", *hidden)).abs().sum() > 0
    noisy.set("is_init", torch.zeros_like(td.get("is_init")))
    carried = act(noisy)
    torch.testing.assert_close(carried.get(MEMORY), noisy.get(hidden))
    assert not torch.allclose(carried.get(("agents", "loc")), fresh.get(("agents", "loc")))


def test_shppo_latent_losses_are_trained_by_the_plugin_and_logged(shppo_experiment):
    exp = shppo_experiment()
    cb = hetplug_benchmarl.wrap(exp, ["shppo"])
    model = shppo_model(exp, "agents")
    plugin = cb.plugin_manager("agents").get_plugin("shppo")
    assert plugin.gamma == exp.config.gamma != 0.95  # the host's discount, not Table V's
    before = [p.detach().clone() for p in model.latent_net.parameters()]
    exp.run()
    for name in ("latent_loss", "inference_loss", "entropy", "distance", "value"):
        assert len(cb.history[f"hetplug/shppo/{name}"]) == ITERS
    assert plugin.inference.pooling == "concat" and plugin.inference.n_agents == 3  # eqs. (6)-(9)
    memory = cb.groups["agents"].auxiliary_batch.extra["hidden_state"]
    assert memory.shape == (4, 25, 3, 32)  # what the LatentNet read while acting
    assert any(
        not torch.equal(a, b.detach()) for a, b in zip(before, model.latent_net.parameters(), strict=True)
    )
    assert all(p.grad is None for p in model.latent_net.parameters())  # nothing left for BenchMARL's Adam
    # BenchMARL's own update (its optimiser holds the LatentNet too) leaves it alone: eq. (13)
    latent = [p.detach().clone() for p in model.latent_net.parameters()]
    actor = [p.detach().clone() for p in model.actor.parameters()]
    exp._optimizer_loop("agents")
    for a, b in zip(latent, model.latent_net.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(actor, model.actor.parameters(), strict=True))


@pytest.mark.parametrize("algorithm, rnn", [("ippo", True), ("mappo", False)], ids=["ippo-rnn", "mappo-ff"])
def test_shppo_model_trains_with_other_ppo_algorithms(shppo_experiment, algorithm, rnn):
    exp = shppo_experiment(rnn=rnn, algorithm=algorithm, iters=2)
    cb = hetplug_benchmarl.wrap(exp, ["shppo"])
    model = shppo_model(exp, "agents")
    before = [p.detach().clone() for p in model.parameters()]
    exp.run()
    assert len(cb.history["hetplug/shppo/latent_loss"]) == 2
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True))


def test_prioritised_replay_needs_the_feedforward_form(shppo_experiment, tmp_path):
    """BenchMARL stores sequences for recurrent models, which hetplug's prioritised buffer
    does not support: refused at wrap time; the feed-forward form runs with it."""
    with pytest.raises(ValueError, match=r"recurrent models \(sequence storage\) are not supported"):
        hetplug_benchmarl.wrap(shppo_experiment(rnn=True), ["shppo", "per"])
    exp = shppo_experiment(rnn=False, iters=1, folder=tmp_path / "ff")
    cb = hetplug_benchmarl.wrap(exp, ["shppo", "per"])
    exp.run()
    assert len(cb.priorities("agents")) and "hetplug/shppo/latent_loss" in cb.history


ABLATIONS = {
    "shppo_zero_latent_inputs": ("zero_latent_inputs", True),
    "shppo_zero_latents": ("zero_latents", True),
    "shppo_no_value_loss": ("value_loss", False),
    "shppo_no_entropy_loss": ("entropy_loss", False),
    "shppo_no_distance_loss": ("distance_loss", False),
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_configs(shppo_experiment, name):
    """Each Hydra group yaml of section V-E switches exactly its option; the input and
    latent ablations reach the acting model (its outputs then ignore the observation's
    effect on the latent, or the latent)."""
    import yaml

    value = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    config = hetplug.parse_config(value)
    option, setting = ABLATIONS[name]
    assert config.plugins == ("shppo",) and config.options["shppo"][option] is setting
    assert set(config.options["shppo"]) == {option}  # everything else at the defaults
    exp = shppo_experiment(rnn=False)
    cb = hetplug_benchmarl.wrap(exp, value)
    model = shppo_model(exp, "agents")
    assert model.latent_net.zero_inputs is (option == "zero_latent_inputs")
    assert model.actor.zero_latents is (option == "zero_latents")
    assert getattr(cb.plugin_manager("agents").get_plugin("shppo").config, option) is setting
    x = torch.randn(5, 3, model.in_features)
    mu, _ = model.latent_net(x)
    if option == "zero_latent_inputs":
        torch.testing.assert_close(mu, mu[:1, :1].expand_as(mu))
    if option == "zero_latents":
        torch.testing.assert_close(model.actor(x, torch.randn(5, 3, 2))[0], model.actor(x, mu)[0])


def test_shppo_policy_runs_with_another_team_size(shppo_experiment, tmp_path):
    """Zero-shot: the policy trained with 3 agents drives 5 (navigation's observations do
    not depend on the team size; SHPPO's parameters neither)."""
    trained = shppo_experiment(n_agents=3, folder=tmp_path / "a")
    hetplug_benchmarl.wrap(trained, ["shppo"])
    trained.run()
    bigger = shppo_experiment(n_agents=5, folder=tmp_path / "b")
    hetplug_benchmarl.copy_policy(trained, bigger)
    src, dst = trained.group_policies["agents"].state_dict(), bigger.group_policies["agents"].state_dict()
    for key in src:
        torch.testing.assert_close(src[key], dst[key])
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = bigger.test_env.rollout(max_steps=10, policy=bigger.policy, auto_cast_to_device=True)
    assert rollout.get(("agents", "action")).shape[-2] == 5
    assert torch.isfinite(rollout.get(("next", "agents", "reward"))).all()
    assert rollout.get(LATENT).shape[-2:] == (5, 2)


@pytest.mark.parametrize("model", ["mlp", "shppo"])
def test_copy_policy_transfers_team_size_free_policies(experiment, shppo_experiment, tmp_path, model):
    """BenchMARL's shared MLP (whose TensorDict state holds a ``torch.Size``) and the SHPPO
    model load into a 5-agent experiment, parameters equal."""
    if model == "mlp":
        src = experiment(on_policy=True)
        assert src.config.share_policy_params
    else:
        src = shppo_experiment(n_agents=3)
    dst = _with_agents(src, 5, tmp_path / "b")
    hetplug_benchmarl.copy_policy(src, dst)
    for key, value in src.group_policies["agents"].state_dict().items():
        other = dst.group_policies["agents"].state_dict()[key]
        assert torch.equal(value, other) if torch.is_tensor(value) else value == other


def test_copy_policy_refuses_per_agent_parameters(experiment, tmp_path):
    """Per-agent networks (parameters stacked [n_agents, ...]) cannot transfer: refused
    with the parameter named, before anything is loaded."""
    shared = experiment(on_policy=True)
    shared.config.share_policy_params = False
    src = _with_agents(shared, 3, tmp_path / "c")
    dst = _with_agents(src, 5, tmp_path / "b")
    before = {
        k: v.clone() for k, v in dst.group_policies["agents"].state_dict().items() if torch.is_tensor(v)
    }
    with pytest.raises(
        ValueError, match=r"cannot be transferred .*3 -> 5 agents.*depends on the number of agents"
    ):
        hetplug_benchmarl.copy_policy(src, dst)
    for k, v in before.items():
        assert torch.equal(v, dst.group_policies["agents"].state_dict()[k])


def test_evaluate_team_sizes(shppo_experiment, tmp_path):
    """The function the zero-shot experiment runs: mean episode reward per team size,
    without training (the trained policy is unchanged)."""
    trained = shppo_experiment(n_agents=3, iters=1)
    trained.task.config["max_steps"] = 8
    trained.config.evaluation_episodes = 2
    trained.run()
    before = {
        k: v.clone() for k, v in trained.group_policies["agents"].state_dict().items() if torch.is_tensor(v)
    }
    out = hetplug_benchmarl.evaluate_team_sizes(trained, [2, 4])
    assert sorted(out) == [2, 4] and all(isinstance(v, float) and v == v for v in out.values())
    for k, v in trained.group_policies["agents"].state_dict().items():
        if torch.is_tensor(v):
            assert torch.equal(before[k], v)


def _with_agents(exp, n, folder):
    from hetplug_benchmarl.transfer import with_team_size

    folder.mkdir(parents=True, exist_ok=True)
    return with_team_size(exp, n, folder=str(folder))


def test_shppo_needs_its_model_and_an_on_policy_algorithm(experiment):
    exp = experiment(on_policy=True)
    with pytest.raises(
        ValueError, match="plugin 'shppo' needs the group's policy built from hetplug's SHPPO model"
    ):
        hetplug_benchmarl.wrap(exp, ["shppo"])
    exp = experiment("iql")
    with pytest.raises(ValueError, match="plugin 'shppo' is not available with off-policy Iql"):
        hetplug_benchmarl.wrap(exp, ["shppo"])
