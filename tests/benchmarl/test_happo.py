"""HAPPO in BenchMARL: registration, MAPPO at one agent, the M factor, the order, real runs."""

from __future__ import annotations

import pytest
import torch
from benchmarl.algorithms import MappoConfig, algorithm_config_registry
from benchmarl.environments import VmasTask
from benchmarl.experiment import Callback, Experiment
from benchmarl.models.mlp import MlpConfig

import hetplug_benchmarl
from hetplug_benchmarl import Happo, HappoConfig
from hetplug_benchmarl.algorithms.happo import HappoLoss
from hetplug_benchmarl.losses import WEIGHT_KEY, WEIGHTED_LOSSES

from .conftest import HER, losses_of, make_experiment


class TrainingLog(Callback):
    """Keeps every ``training_td`` BenchMARL logs (one per group and iteration)."""

    def __init__(self) -> None:
        super().__init__()
        self.tds = []

    def on_train_end(self, training_td, group):
        self.tds.append(training_td)


def happo_experiment(
    folder, n_agents=3, share=True, model=None, algorithm=None, seed=0, iters=2, callbacks=None, restore=None
):
    """HAPPO on navigation with ``n_agents``: 100 frames per iteration, 2 epochs of 2
    minibatches (4 steps per agent)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = make_experiment(folder, on_policy=True, iters=iters, restore=restore).config
    cfg.share_policy_params = share
    cfg.on_policy_n_minibatch_iters = 2
    task = VmasTask.NAVIGATION.get_from_yaml()
    task.config["n_agents"] = n_agents
    return Experiment(
        task=task,
        algorithm_config=algorithm or HappoConfig.get_from_yaml(),
        model_config=model or MlpConfig.get_from_yaml(),
        critic_model_config=MlpConfig.get_from_yaml(),
        seed=seed,
        config=cfg,
        callbacks=callbacks,
    )


def actor_params(exp):
    return exp.losses["agents"].actor_network_params.detach().clone()


def moved(before, after) -> bool:
    return any(not torch.equal(before.get(k), v) for k, v in after.items(True, True))


def test_happo_is_registered_with_its_yaml_and_hydra_schema():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from hetplug_benchmarl.models import CONF

    assert algorithm_config_registry["happo"] is HappoConfig
    assert HappoConfig.get_from_yaml() == HappoConfig()
    assert WEIGHTED_LOSSES[Happo].loss is None and WEIGHTED_LOSSES[Happo].on_policy
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(
            "config", overrides=["algorithm=happo", "task=vmas/navigation", "algorithm.fixed_order=true"]
        )
    from benchmarl.hydra_config import load_algorithm_config_from_hydra

    loaded = load_algorithm_config_from_hydra(cfg.algorithm)
    assert isinstance(loaded, HappoConfig) and loaded.fixed_order and loaded.lmbda == 0.95
    with pytest.raises(ValueError, match="lmbda must be in"):
        HappoConfig(lmbda=2.0)


@pytest.mark.parametrize("share", [True, False])
def test_with_one_agent_happo_is_mappo(tmp_path, share):
    """One agent: the M factor is 1 and the only agent trains in BenchMARL's loop beside the
    critic, so one iteration (2 epochs x 2 minibatches, MC entropy of the TanhNormal
    included) leaves the same actor and critic parameters as MAPPO's (same seed, same data)."""
    mappo = MappoConfig.get_from_yaml()
    runs = {}
    for name, algorithm in (("mappo", mappo), ("happo", HappoConfig(**mappo.__dict__, fixed_order=False))):
        exp = happo_experiment(tmp_path / name, n_agents=1, share=share, algorithm=algorithm, iters=1)
        initial = actor_params(exp)
        exp.run()
        runs[name] = exp.losses["agents"]
    assert isinstance(runs["happo"], HappoLoss)
    assert moved(initial, actor_params(exp))
    for part in ("actor_network_params", "critic_network_params"):
        mine, theirs = getattr(runs["happo"], part), getattr(runs["mappo"], part)
        for key, value in theirs.items(True, True):
            torch.testing.assert_close(mine.get(key), value, rtol=1e-6, atol=1e-7, msg=f"{part} {key}")


@pytest.mark.parametrize("share", [True, False])
def test_m_factor_is_the_product_of_the_updated_agents_new_over_old_ratios(tmp_path, monkeypatch, share):
    """Oracle: with the actor's parameters snapshotted at every boundary of the round
    (theta_0 before i_1, theta_m after i_m), agent i_m trained with
    M = prod_{j<m} pi_{i_j}(a | o; theta_j) / pi_{i_j}(a | o; theta_{j-1}), each ratio
    evaluated by the policy's own distribution on every stored sample. A factor computed
    before the earlier agents' updates (all 1) or from stale parameters fails this. With
    per-agent networks, each agent's steps move only its own rows."""
    exp = happo_experiment(tmp_path, n_agents=3, share=share, iters=1)
    snapshots = [actor_params(exp)]
    train_agent = Happo._train_agent

    def recording(self, group, agent, factor):
        snapshots.append(actor_params(exp))
        train_agent(self, group, agent, factor)

    monkeypatch.setattr(Happo, "_train_agent", recording)
    exp.run()
    snapshots.append(actor_params(exp))
    loss, rnd = exp.losses["agents"], exp.algorithm.last_round["agents"]
    order = rnd.order
    assert len(snapshots) == 4 and sorted(order) == [0, 1, 2]
    data = exp.replay_buffers["agents"][:]
    action = data.get(loss.tensor_keys.action)

    def log_prob(params):
        with torch.no_grad(), params.to_module(loss.actor_network):
            return loss.actor_network.get_dist(data).log_prob(action)  # [rows, N]

    log_probs = [log_prob(p) for p in snapshots]
    expected = torch.ones(data.shape[0])
    for m in (1, 2):
        j = order[m - 1]
        expected = expected * (log_probs[m][:, j] - log_probs[m - 1][:, j]).exp()
        torch.testing.assert_close(rnd.factors[order[m]], expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(expected, torch.ones_like(expected), atol=1e-4)
    if not share:  # theta_m - theta_{m-1} lives in agent i_m's rows only
        for m, agent in enumerate(order, start=1):
            for key, after in snapshots[m].items(True, True):
                moved = (after - snapshots[m - 1].get(key)).flatten(1).abs().amax(1) > 0
                assert moved.tolist() == [i == agent for i in range(3)], (key, agent)


def test_objective_is_eq2_for_the_chosen_agent(tmp_path):
    """Oracle, by hand from the policy's distribution: agent i's objective is
    ``-mean(M * min(r A, clip(r, 1 +- eps) A))`` on column i, with ``M`` looked up by the
    sample's storage index."""
    exp = happo_experiment(tmp_path, n_agents=3, iters=1)
    exp.run()
    loss, buffer = exp.losses["agents"], exp.replay_buffers["agents"]
    data = buffer.sample()
    factor = torch.rand(len(buffer.storage)) + 0.5
    loss.agent, loss.factor = 1, factor
    got = loss.actor_loss(data.clone())["loss_objective"]
    with torch.no_grad(), loss.actor_network_params.to_module(loss.actor_network):
        log_prob = loss.actor_network.get_dist(data).log_prob(data.get(loss.tensor_keys.action))[:, 1]
    ratio = (log_prob - data.get(loss.tensor_keys.sample_log_prob)[:, 1]).exp()
    advantage = data.get(loss.tensor_keys.advantage)[:, 1, 0]
    eps = exp.algorithm.clip_epsilon
    surrogate = torch.min(ratio * advantage, ratio.clamp(1 - eps, 1 + eps) * advantage)
    expected = -(factor[data["index"]] * surrogate).mean()
    torch.testing.assert_close(got.detach(), expected, rtol=1e-5, atol=1e-6)
    loss.factor = None


def test_order_changes_between_iterations_and_is_reproducible(tmp_path):
    exp = happo_experiment(tmp_path / "a", n_agents=4, iters=3)
    orders = [exp.algorithm.agent_order("agents", t) for t in range(10)]
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
    assert len({tuple(o) for o in orders}) > 1
    exp.run()
    assert exp.algorithm.orders["agents"] == orders[:3]  # the orders training used
    again = happo_experiment(tmp_path / "b", n_agents=4)
    assert [again.algorithm.agent_order("agents", t) for t in range(10)] == orders
    other = happo_experiment(tmp_path / "c", n_agents=4, seed=1)
    assert [other.algorithm.agent_order("agents", t) for t in range(10)] != orders
    fixed = happo_experiment(tmp_path / "d", n_agents=4, algorithm=HappoConfig(fixed_order=True))
    assert fixed.algorithm.agent_order("agents", 5) == [0, 1, 2, 3]


def test_a_restored_run_continues_the_order_sequence(tmp_path):
    exp = happo_experiment(tmp_path / "a", iters=2)
    exp.run()
    ckpt = next((exp.folder_name / "checkpoints").glob("*.pt"))
    restored = happo_experiment(tmp_path / "b", iters=3, restore=str(ckpt))
    assert restored.n_iters_performed == 2
    before = actor_params(restored)
    restored.run()
    assert restored.algorithm.orders["agents"] == [exp.algorithm.agent_order("agents", 2)]
    assert len(restored.algorithm.last_round["agents"].factors) == 2
    assert moved(before, actor_params(restored))


@pytest.mark.parametrize("actor", ["mlp_shared", "mlp_per_agent", "shppo"])
def test_short_runs_train(tmp_path, actor):
    """Three iterations: every agent's policy moves, every logged loss is finite. SHPPO's
    actor with HAPPO (share) and the shppo plugin is the paper's method."""
    log = TrainingLog()
    model = hetplug_benchmarl.SHPPOModelConfig(num_cells=32, latent_dim=2) if actor == "shppo" else None
    exp = happo_experiment(tmp_path, share=actor != "mlp_per_agent", model=model, iters=3, callbacks=[log])
    if actor == "shppo":
        hetplug_benchmarl.wrap(exp, ["shppo"], shppo={"latent_dim": 2})
    before = actor_params(exp)
    exp.run()
    after = actor_params(exp)
    assert len(log.tds) == 3
    for td in log.tds:
        assert {"loss_objective", "loss_critic", "loss_entropy"} <= set(td.keys())
        assert all(torch.isfinite(v).all() for v in td.values())
    assert moved(before, after)
    if actor == "mlp_per_agent":  # every agent's own rows moved
        for key, value in after.items(True, True):
            assert ((value - before.get(key)).flatten(1).abs().amax(1) > 0).all(), key
    assert len(exp.algorithm.last_round["agents"].factors) == 2


def test_per_agent_parameters_need_a_stacked_model(tmp_path):
    with pytest.raises(ValueError, match="must stack them per agent"):
        happo_experiment(tmp_path, share=False, model=hetplug_benchmarl.SHPPOModelConfig(num_cells=32))


@pytest.mark.parametrize("plugin", ["per", "shep"])
def test_prioritised_replay_serves_happo(tmp_path, plugin):
    """``wrap(exp, ["per"])`` (or SHEP with Group-HER copies, which go through
    ``process_batch`` early): one round per iteration; minibatches carry IS weights
    ``[B, N]`` that reach every term (a weight-0 sample cannot move the losses); unit
    weights give the unweighted loss."""
    exp = happo_experiment(tmp_path, n_agents=3, iters=2)
    options = {"shep": {"grid_shape": [4, 4], **HER}} if plugin == "shep" else {}
    cb = hetplug_benchmarl.wrap(exp, [plugin], **options)
    exp.run()
    assert len(cb.priorities("agents"))
    loss = exp.losses["agents"]
    assert isinstance(loss, HappoLoss) and len(exp.algorithm.orders["agents"]) == 2
    assert len(exp.algorithm.last_round["agents"].factors) == 2
    if plugin == "shep":
        assert sum(cb.history["hetplug/shep/her_trajectories"]) > 0
    data = exp.replay_buffers["agents"].sample()
    assert data[WEIGHT_KEY].shape == (data.shape[0], 3)
    loss.factor = torch.rand(len(exp.replay_buffers["agents"].storage)) + 0.5
    w = torch.ones_like(data[WEIGHT_KEY])
    w[0] = 0.0
    data[WEIGHT_KEY] = w
    shifted = data.clone()
    shifted[loss.tensor_keys.advantage][0] += 10.0
    shifted[loss.tensor_keys.value_target][0] += 10.0
    base = losses_of(exp, data)
    for name, value in losses_of(exp, shifted).items():
        torch.testing.assert_close(value, base[name], msg=name)
    data[WEIGHT_KEY] = torch.ones_like(w)
    unweighted = losses_of(exp, data.exclude(WEIGHT_KEY))
    for name, value in losses_of(exp, data).items():
        torch.testing.assert_close(value, unweighted[name], msg=name)
    loss.factor = None
