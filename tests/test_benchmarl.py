"""Integration tests: real BenchMARL 1.5.2 experiments on VMAS, a few iterations on CPU."""

from __future__ import annotations

import pickle

import pytest
import torch
from benchmarl.algorithms import IppoConfig, MappoConfig
from benchmarl.environments import VmasTask
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.models.mlp import MlpConfig

import hetplug_benchmarl
from hetplug_benchmarl import HetplugCallback
from hetplug_benchmarl.demo import ALGORITHMS as OFF_POLICY
from hetplug_benchmarl.replay import SLOT_KEY, STEP_KEY, WEIGHT_KEY

ENVS, STEPS, ITERS = 4, 25, 3


def make_experiment(tmp_path, algorithm="iql", callbacks=None, restore=None, on_policy=False, iters=ITERS):
    cfg = ExperimentConfig.get_from_yaml()
    cfg.render = False  # torchvision does not import here (FACTS.md)
    cfg.loggers = []
    cfg.create_json = False
    cfg.evaluation = False
    cfg.save_folder = str(tmp_path)
    cfg.checkpoint_interval = 0
    cfg.checkpoint_at_end = True
    cfg.off_policy_collected_frames_per_batch = ENVS * STEPS
    cfg.off_policy_n_envs_per_worker = ENVS
    cfg.off_policy_n_optimizer_steps = 2
    cfg.off_policy_train_batch_size = 32
    cfg.off_policy_memory_size = 2000
    cfg.on_policy_collected_frames_per_batch = ENVS * STEPS
    cfg.on_policy_n_envs_per_worker = ENVS
    cfg.on_policy_n_minibatch_iters = 1
    cfg.on_policy_minibatch_size = 50
    cfg.max_n_frames = iters * ENVS * STEPS
    cfg.restore_file = restore
    if on_policy:
        algo = (IppoConfig if on_policy == "ippo" else MappoConfig).get_from_yaml()
    else:
        algo = OFF_POLICY[algorithm].get_from_yaml()
    return Experiment(
        task=VmasTask.NAVIGATION.get_from_yaml(),
        algorithm_config=algo,
        model_config=MlpConfig.get_from_yaml(),
        seed=0,
        config=cfg,
        callbacks=callbacks,
    )


@pytest.mark.parametrize("algorithm", sorted(OFF_POLICY))
@pytest.mark.parametrize("plugin", ["per", "shep"])
def test_off_policy_priorities_change_and_are_trajectory_level(tmp_path, algorithm, plugin):
    exp = make_experiment(tmp_path, algorithm)
    cb = hetplug_benchmarl.wrap(exp, [plugin])
    exp.run()
    p = cb.priorities("agents")
    # one priority per stored trajectory (env segment), not per transition
    assert p.numel() == ITERS * ENVS
    # TD errors came back: priorities moved off the initial value and differ between trajectories
    assert p.std() > 0
    # samples point into the trajectory the sampler chose (lockstep rings: index // T == slot)
    data = exp.replay_buffers["agents"].sample()
    assert torch.equal(data["index"] // STEPS, data[SLOT_KEY])
    assert torch.equal(data["index"] % STEPS, data[STEP_KEY])
    assert data[WEIGHT_KEY].shape == (32, 3)
    assert cb.groups["agents"].metrics["hetplug/agents/stored"] == ITERS * ENVS


def _losses(exp, data, seed=0):
    torch.manual_seed(seed)
    out = exp.losses["agents"](data.clone())
    return {k: v.detach().clone() for k, v in out.items() if k.startswith("loss")}


@pytest.mark.parametrize("algorithm", sorted(OFF_POLICY))
def test_is_weights_reach_every_loss(tmp_path, algorithm):
    """A sample with weight 0 cannot move any loss; with weight > 0 it must. This fails
    for a loss that ignores the weights (TorchRL's QMixerLoss) or crashes on their shape."""
    exp = make_experiment(tmp_path, algorithm)
    hetplug_benchmarl.wrap(exp, ["per"])
    exp.run()
    data = exp.replay_buffers["agents"].sample()
    w = torch.ones_like(data[WEIGHT_KEY])
    w[0] = 0.0
    data[WEIGHT_KEY] = w
    # QMIX/VDN train on the team reward process_batch wrote at the top level
    reward_key = ("next", "reward") if ("next", "reward") in data.keys(True) else ("next", "agents", "reward")
    base = _losses(exp, data)
    moved = data.clone()
    moved[reward_key][0] += 100.0
    same = _losses(exp, moved)
    for name in base:
        torch.testing.assert_close(same[name], base[name], msg=f"{algorithm} {name}")
    data[WEIGHT_KEY] = torch.ones_like(w)
    moved[WEIGHT_KEY] = torch.ones_like(w)
    base, changed = _losses(exp, data), _losses(exp, moved)
    critic = [k for k in base if k in ("loss", "loss_qvalue", "loss_value")]
    assert critic and all(not torch.allclose(base[k], changed[k]) for k in critic)


def test_sampled_weights_are_the_plugins(tmp_path):
    exp = make_experiment(tmp_path, "iql")
    cb = hetplug_benchmarl.wrap(exp, ["per"], per={"alpha": 1.0, "beta": 1.0})
    exp.run()
    data = exp.replay_buffers["agents"].sample()
    plugin = cb.plugin_manager("agents").get_plugin("per")
    probs = plugin.sampler.probabilities()[data[SLOT_KEY]]
    expected = (probs * len(plugin.sampler)).pow(-1.0)
    expected = expected / (plugin.sampler.probabilities().min() * len(plugin.sampler)).pow(-1.0)
    torch.testing.assert_close(data[WEIGHT_KEY][:, 0].double(), expected.double(), rtol=1e-5, atol=1e-6)


def test_shep_intrinsic_reward_reaches_the_buffer(tmp_path):
    exp = make_experiment(tmp_path, "iql", iters=1)
    cb = hetplug_benchmarl.wrap(exp, ["shep"], shep={"intrinsic_reward": True})
    seen = {}

    class Spy(hetplug_benchmarl.HetplugCallback.__mro__[1]):  # benchmarl Callback
        def on_batch_collected(self, batch):
            seen["env"] = batch["next", "agents", "reward"].clone()

    spy = Spy()
    spy.experiment = exp
    exp.callbacks.insert(0, spy)  # runs before hetplug adds the bonus
    exp.run()
    stored = exp.replay_buffers["agents"].storage[:]["next", "agents", "reward"]
    bonus = stored - seen["env"].reshape(stored.shape)
    assert bonus.abs().max() > 0
    # one bonus per (env, step), shared by the agents
    assert torch.allclose(bonus, bonus[..., :1, :].expand_as(bonus))
    assert "hetplug/agents/intrinsic_reward" in cb.groups["agents"].metrics


@pytest.mark.parametrize("how", ["callbacks", "wrap"])
def test_checkpoint_restores_priorities(tmp_path, how):
    kwargs = {"shep": {"grid_shape": [4, 4]}}
    if how == "callbacks":
        cb = HetplugCallback(["shep"], kwargs)
        exp = make_experiment(tmp_path, "qmix", callbacks=[cb])
    else:
        exp = make_experiment(tmp_path, "qmix")
        cb = hetplug_benchmarl.wrap(exp, ["shep"], **kwargs)
    exp.run()
    saved = cb.priorities("agents").clone()
    ckpt = next((exp.folder_name / "checkpoints").glob("*.pt"))
    if how == "callbacks":
        cb2 = HetplugCallback(["shep"], kwargs)
        exp2 = make_experiment(tmp_path, "qmix", callbacks=[cb2], restore=str(ckpt))
    else:
        exp2 = make_experiment(tmp_path, "qmix", restore=str(ckpt))
        cb2 = hetplug_benchmarl.wrap(exp2, ["shep"], **kwargs)
    torch.testing.assert_close(cb2.priorities("agents"), saved)
    assert len(exp2.replay_buffers["agents"]) == ITERS * ENVS * STEPS
    assert cb2.groups["agents"].updates == cb.groups["agents"].updates == ITERS


def test_callback_pickles_without_its_experiment(tmp_path):
    cb = HetplugCallback(["per"], {"per": {"alpha": 0.5}})
    exp = make_experiment(tmp_path, "iql", callbacks=[cb])
    clone = pickle.loads(pickle.dumps(cb))
    assert clone.experiment is None and clone.options == {"per": {"alpha": 0.5}}
    with open(exp.folder_name / "config.pkl", "rb") as f:
        for _ in range(7):
            pickle.load(f)
        (restored,) = pickle.load(f)
    assert restored.plugins == ["per"]


@pytest.mark.parametrize(
    "plugins, kwargs, message",
    [
        (["nope"], {}, "unknown hetplug plugin 'nope'"),
        (["shep"], {"shep": {"grid_shap": (4, 4)}}, "shep.grid_shap"),
        (["shep"], {"shep": {"alpha": "high"}}, "shep: alpha must be a number, got alpha='high'"),
        (["shep"], {"positions": {"slice": [0, 40]}}, "positions.slice=[0, 40] is out of range"),
        (["shep"], {"positions": {"key": "obs"}}, "positions.key=['obs']"),
        (["shep"], {"opponents": {"group": "enemies"}}, "opponents.group='enemies'"),
    ],
)
def test_bad_configuration_fails_at_wrap_time(tmp_path, plugins, kwargs, message):
    exp = make_experiment(tmp_path, "iql")
    buffer = exp.replay_buffers["agents"]
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        hetplug_benchmarl.wrap(exp, plugins, **kwargs)
    assert exp.replay_buffers["agents"] is buffer and exp.callbacks == []


def test_unsupported_combination_is_refused_before_training(tmp_path):
    exp = make_experiment(tmp_path, on_policy=True)
    with pytest.raises(ValueError, match="plugin 'lbs' is not available with on-policy Mappo"):
        hetplug_benchmarl.wrap(exp, ["lbs"])
    assert exp.n_iters_performed == 0


# ---------------------------------------------------------------------- on-policy
@pytest.mark.parametrize("algorithm", ["mappo", "ippo"])
@pytest.mark.parametrize("plugin", ["per", "shep"])
def test_on_policy_minibatches_are_prioritised_by_advantage(tmp_path, algorithm, plugin):
    """MAPPO/IPPO: the buffer holds the current rollout; trajectory priorities come from
    |advantage| (BenchMARL's process_batch) when the rollout is stored."""
    exp = make_experiment(tmp_path, on_policy=algorithm)
    cb = hetplug_benchmarl.wrap(exp, [plugin])
    exp.run()
    p = cb.priorities("agents")
    assert p.numel() == ENVS  # one rollout: one trajectory per env
    assert p.std() > 0
    buf = exp.replay_buffers["agents"]
    data = buf.sample()
    assert data[WEIGHT_KEY].shape == (50, 3) and torch.equal(data["index"] // STEPS, data[SLOT_KEY])
    if plugin == "per":  # closed form: mean |advantage| over the trajectory's steps (+ eps)
        adv = buf.storage.get(torch.arange(ENVS * STEPS))[("agents", "advantage")]
        expected = adv.abs().mean((-1, -2)).reshape(ENVS, STEPS).mean(-1) + 1e-6
        torch.testing.assert_close(p.float(), expected.float(), rtol=1e-5, atol=1e-6)


def test_on_policy_replay_window_keeps_older_rollouts(tmp_path):
    exp = make_experiment(tmp_path, on_policy=True)
    cb = hetplug_benchmarl.wrap(exp, ["shep"], replay_window=2)
    exp.run()
    assert cb.priorities("agents").numel() == 2 * ENVS
    assert len(exp.replay_buffers["agents"]) == 2 * ENVS * STEPS


@pytest.mark.parametrize("algorithm", ["mappo", "ippo"])
def test_is_weights_reach_the_ppo_loss(tmp_path, algorithm):
    """Weight 0 on a sample: its advantage cannot move the PPO losses; weight 1: it does.
    With all weights 1 the weighted loss is TorchRL's own mean."""
    exp = make_experiment(tmp_path, on_policy=algorithm)
    hetplug_benchmarl.wrap(exp, ["per"])
    exp.run()
    loss = exp.losses["agents"]
    data = exp.replay_buffers["agents"].sample()
    key = loss.tensor_keys.advantage
    w = torch.ones_like(data[WEIGHT_KEY])
    w[0] = 0.0
    data[WEIGHT_KEY] = w
    loss.normalize_advantage = False  # its batch statistics would spread the change
    base = _losses(exp, data)
    moved = data.clone()
    moved[key][0] += 10.0
    for name, value in _losses(exp, moved).items():
        torch.testing.assert_close(value, base[name], msg=name)
    data[WEIGHT_KEY] = torch.ones_like(w)
    moved[WEIGHT_KEY] = torch.ones_like(w)
    assert not torch.allclose(_losses(exp, data)["loss_objective"], _losses(exp, moved)["loss_objective"])
    plain = data.exclude(WEIGHT_KEY)
    ones, unweighted = _losses(exp, data), _losses(exp, plain)
    for name in unweighted:
        torch.testing.assert_close(ones[name], unweighted[name], msg=name)


def test_no_plugin_run_matches_plain_benchmarl(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = make_experiment(tmp_path / "a", "iql")
    plain.run()
    wrapped = make_experiment(tmp_path / "b", "iql")
    hetplug_benchmarl.wrap(wrapped, [])
    wrapped.run()
    for a, b in zip(plain.losses["agents"].parameters(), wrapped.losses["agents"].parameters(), strict=True):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------- HetDPS
HETDPS = {"interval": 2, "cvae": {"epochs": 3}, "fit_samples": 128, "distance_samples": 64}


def make_slot_experiment(tmp_path, on_policy=False, iters=4, **model):
    from benchmarl.environments import VmasTask
    from benchmarl.models.mlp import MlpConfig

    exp = make_experiment(tmp_path, "iql", on_policy=on_policy, iters=iters)
    return Experiment(
        task=VmasTask.NAVIGATION.get_from_yaml(),
        algorithm_config=exp.algorithm_config,
        model_config=hetplug_benchmarl.SlotMlpConfig(num_cells=[32, 32], **model),
        critic_model_config=MlpConfig.get_from_yaml(),
        seed=0,
        config=exp.config,
    )


@pytest.mark.parametrize("on_policy", [False, "mappo"], ids=["iql", "mappo"])
def test_hetdps_regroups_mid_training_in_place(tmp_path, on_policy):
    """preference 0 makes every agent its own exemplar: the first regrouping splits the
    fully shared start into three networks, during exp.run(), without rebuilding."""
    exp = make_slot_experiment(tmp_path, on_policy)
    policy = exp.group_policies["agents"]
    optimisers = dict(exp.optimizers["agents"])
    cb = hetplug_benchmarl.wrap(exp, ["hetdps"], hetdps={**HETDPS, "preference": 0.0})
    exp.run()
    plans = cb.plans["agents"]
    assert [it for it, _ in plans] == [2, 4]
    assert len(set(plans[0][1])) == 3  # split into one network per agent
    slot = [m for m in policy.modules() if isinstance(m, hetplug_benchmarl.slots.SlotMLP)][0]
    assert torch.equal(slot.routing.cpu(), torch.tensor(plans[-1][1]))
    assert exp.group_policies["agents"] is policy and exp.optimizers["agents"] == optimisers
    loss = exp.losses["agents"]
    for attr in [a for a in dir(loss) if a.startswith("target_") and a.endswith("_params")]:
        target = getattr(loss, attr)
        for key, value in target.items(True, True):
            if key[-1] == "routing":
                assert torch.equal(value.cpu(), slot.routing.cpu())
    assert cb.history["hetplug/agents/hetdps/n_groups"] == [3.0, 3.0]
    assert "hetplug/agents/hetdps/distance/0_1" in cb.history
    assert "hetplug/agents/hetdps/plan/agent_2" in cb.history


def test_hetdps_split_copies_slots_targets_and_adam_state(tmp_path):
    exp = make_slot_experiment(tmp_path, iters=2)
    cb = hetplug_benchmarl.wrap(exp, ["hetdps"], hetdps={**HETDPS, "interval": 1000, "preference": -10.0})
    exp.run()
    plugin = cb.plugin_manager("agents").get_plugin("hetdps")
    slot = [
        m for m in exp.group_policies["agents"].modules() if isinstance(m, hetplug_benchmarl.slots.SlotMLP)
    ][0]
    data = exp.replay_buffers["agents"].sample()
    before = exp.group_policies["agents"](data.clone()).get(("agents", "action_value")).detach()
    plan = plugin.manager.update(torch.tensor([[0.0, 1.0, 50.0], [1.0, 0.0, 50.0], [50.0, 50.0, 0.0]]))
    assert plan.case == "split", plan.reason
    plugin.slots.apply(plan)
    new = plan.assignment[2]
    assert new != plan.assignment[0] == 0
    loss = exp.losses["agents"]
    target = loss.target_value_network_params
    optimiser = next(iter(exp.optimizers["agents"].values()))
    for p in slot.parameters():
        torch.testing.assert_close(p[new], p[0], rtol=0, atol=0)
        key = next(k for k, v in loss.value_network_params.items(True, True) if v.data_ptr() == p.data_ptr())
        torch.testing.assert_close(target.get(key)[new], target.get(key)[0], rtol=0, atol=0)
        torch.testing.assert_close(
            optimiser.state[p]["exp_avg"][new], optimiser.state[p]["exp_avg"][0], rtol=0, atol=0
        )
    after = exp.group_policies["agents"](data.clone()).get(("agents", "action_value")).detach()
    torch.testing.assert_close(after, before)  # a copy changes who uses which weights, not the outputs


def test_hetdps_without_the_slot_model_fails_at_wrap_time(tmp_path):
    exp = make_experiment(tmp_path, "iql")
    buffer = exp.replay_buffers["agents"]
    with pytest.raises(
        ValueError, match="plugin 'hetdps' needs the group's policy built from hetplug's slot model"
    ):
        hetplug_benchmarl.wrap(exp, ["hetdps"])
    assert exp.replay_buffers["agents"] is buffer and exp.callbacks == []


def test_hetdps_slot_count_must_match_the_model(tmp_path):
    exp = make_slot_experiment(tmp_path, n_slots=3)
    with pytest.raises(ValueError, match="hetdps.n_slots=2 differs from the slot model's n_slots=3"):
        hetplug_benchmarl.wrap(exp, ["hetdps"], hetdps={**HETDPS, "n_slots": 2})


def test_slot_model_refuses_a_centralised_critic(tmp_path):
    from benchmarl.environments import VmasTask

    exp = make_experiment(tmp_path, on_policy=True)
    with pytest.raises(ValueError, match="hetplug_slot_mlp is a per-agent model"):
        Experiment(
            task=VmasTask.NAVIGATION.get_from_yaml(),
            algorithm_config=exp.algorithm_config,
            model_config=hetplug_benchmarl.SlotMlpConfig(num_cells=[8]),
            seed=0,
            config=exp.config,
        )


def test_slot_model_yaml_and_registry():
    from benchmarl.models import model_config_registry

    cfg = hetplug_benchmarl.SlotMlpConfig.get_from_yaml()
    assert model_config_registry["hetplug_slot_mlp"] is hetplug_benchmarl.SlotMlpConfig
    assert cfg.start == "full" and cfg.n_slots is None and list(cfg.num_cells) == [256, 256]
    shppo = hetplug_benchmarl.SHPPOModelConfig.get_from_yaml()
    assert model_config_registry["hetplug_shppo"] is hetplug_benchmarl.SHPPOModelConfig
    assert (shppo.num_cells, shppo.latent_dim, shppo.decoder_hidden) == (64, 3, 64)  # Table IV


def test_hydra_run_with_a_hetplug_group(tmp_path):
    """`python -m hetplug_benchmarl.run ... model=layers/hetplug_slot_mlp hetplug=hetdps`."""
    import subprocess
    import sys

    args = [
        sys.executable, "-m", "hetplug_benchmarl.run", "algorithm=iql", "task=vmas/navigation",
        "model=layers/hetplug_slot_mlp", "model.num_cells=[16]", "hetplug=hetdps",
        "hetplug.options.hetdps.interval=1", "+hetplug.options.hetdps.cvae={epochs: 2}",
        "experiment.max_n_frames=200", "experiment.off_policy_collected_frames_per_batch=100",
        "experiment.off_policy_n_envs_per_worker=4", "experiment.off_policy_n_optimizer_steps=2",
        "experiment.off_policy_train_batch_size=16", "experiment.render=False", "experiment.loggers=[]",
        "experiment.evaluation=False", "experiment.create_json=False", "experiment.checkpoint_at_end=False",
        f"experiment.save_folder={tmp_path}", f"hydra.run.dir={tmp_path}/hydra",
    ]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "hetdps" in out.stdout and "100%" in out.stderr


def test_hydra_hetplug_group_rejects_unknown_keys():
    from hetplug_benchmarl.run import callback_from_config

    with pytest.raises(ValueError, match="unknown key hetplug.plugin;"):
        callback_from_config({"plugin": ["shep"]})
    with pytest.raises(ValueError, match="unknown hetplug plugin 'shap'"):
        callback_from_config({"plugins": ["shap"]})


# ---------------------------------------------------------------------- SHPPO
def make_shppo_experiment(tmp_path, n_agents=3, iters=3):
    from benchmarl.environments import VmasTask
    from benchmarl.models.mlp import MlpConfig

    task = VmasTask.NAVIGATION.get_from_yaml()
    task.config["n_agents"] = n_agents
    base = make_experiment(tmp_path, on_policy=True, iters=iters)
    return Experiment(
        task=task,
        algorithm_config=base.algorithm_config,
        model_config=hetplug_benchmarl.SHPPOModelConfig(num_cells=32, latent_dim=2),
        critic_model_config=MlpConfig.get_from_yaml(),
        seed=0,
        config=base.config,
    )


def test_shppo_latent_losses_are_trained_by_the_plugin_and_logged(tmp_path):
    exp = make_shppo_experiment(tmp_path)
    cb = hetplug_benchmarl.wrap(exp, ["shppo"])
    model = hetplug_benchmarl.models.shppo_model(exp, "agents")
    before = [p.detach().clone() for p in model.latent_net.parameters()]
    exp.run()
    for name in ("latent_loss", "inference_loss", "entropy", "distance", "value"):
        assert len(cb.history[f"hetplug/agents/shppo/{name}"]) == ITERS
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


def test_shppo_policy_runs_with_another_team_size(tmp_path):
    """Zero-shot: the policy trained with 3 agents drives 5 (navigation's observations do
    not depend on the team size; SHPPO's parameters neither)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    trained = make_shppo_experiment(tmp_path / "a", n_agents=3)
    hetplug_benchmarl.wrap(trained, ["shppo"])
    trained.run()
    bigger = make_shppo_experiment(tmp_path / "b", n_agents=5)
    hetplug_benchmarl.copy_policy(trained, bigger)
    src, dst = trained.group_policies["agents"].state_dict(), bigger.group_policies["agents"].state_dict()
    for key in src:
        torch.testing.assert_close(src[key], dst[key])
    rollout = bigger.test_env.rollout(max_steps=10, policy=bigger.policy, auto_cast_to_device=True)
    assert rollout.get(("agents", "action")).shape[-2] == 5
    assert torch.isfinite(rollout.get(("next", "agents", "reward"))).all()
    model = hetplug_benchmarl.models.shppo_model(bigger, "agents")
    mu, _ = model.latent_net(rollout.get(("agents", "observation"))[0])
    assert mu.shape == (10, 5, 2)


def test_shppo_needs_its_model_and_an_on_policy_algorithm(tmp_path):
    exp = make_experiment(tmp_path, on_policy=True)
    with pytest.raises(
        ValueError, match="plugin 'shppo' needs the group's policy built from hetplug's SHPPO model"
    ):
        hetplug_benchmarl.wrap(exp, ["shppo"])
    exp = make_experiment(tmp_path, "iql")
    with pytest.raises(ValueError, match="plugin 'shppo' is not available with off-policy Iql"):
        hetplug_benchmarl.wrap(exp, ["shppo"])


# ---------------------------------------------------------------------- LBS
@pytest.mark.parametrize("algorithm", ["iql", "isac", "iddpg"])
def test_lbs_shares_experience_between_the_groups_agents(tmp_path, algorithm):
    exp = make_experiment(tmp_path, algorithm)
    cb = hetplug_benchmarl.wrap(exp, ["lbs"])
    exp.run()
    shared = cb.history["hetplug/agents/lbs/shared_fraction"]
    assert len(shared) == ITERS and max(shared) > 0  # learners trained on other agents' items
    data = exp.replay_buffers["agents"].sample()
    assert data[WEIGHT_KEY].shape == (32, 3)


def test_lbs_minibatch_puts_each_item_in_its_learners_column(tmp_path):
    from hetplug_benchmarl.lbs import mixed

    exp = make_experiment(tmp_path, "iql")
    hetplug_benchmarl.wrap(exp, ["lbs"])
    exp.run()
    storage = exp.replay_buffers["agents"].storage
    slot = torch.tensor([[5, 17, 2], [40, 40, 40]])
    agent = torch.tensor([[2, 0, 1], [1, 2, 0]])
    data = mixed(storage, "agents", slot, agent)
    for r in range(2):
        for i in range(3):
            item = storage.get(slot[r, i : i + 1])
            for key in (("agents", "observation"), ("agents", "action"), ("next", "agents", "reward")):
                torch.testing.assert_close(data.get(key)[r, i], item.get(key)[0, agent[r, i]], rtol=0, atol=0)
        torch.testing.assert_close(
            data.get(("next", "done"))[r], storage.get(slot[r, :1]).get(("next", "done"))[0]
        )


@pytest.mark.parametrize("share", [True, False], ids=["shared", "independent"])
def test_lbs_td_fn_equals_each_learner_on_a_swapped_transition(tmp_path, share):
    """Oracle: learner i's TD on agent k's item = the loss's TD in column i of the plain
    transition with columns i and k swapped."""
    from benchmarl.environments import VmasTask
    from benchmarl.models.mlp import MlpConfig

    base = make_experiment(tmp_path, "iql")
    base.config.share_policy_params = share  # the Q-networks: one shared, or one per agent
    exp = Experiment(task=VmasTask.NAVIGATION.get_from_yaml(), algorithm_config=base.algorithm_config,
                     model_config=MlpConfig.get_from_yaml(), seed=0, config=base.config)  # fmt: skip
    hetplug_benchmarl.wrap(exp, ["lbs"])
    exp.run()
    buf = exp.replay_buffers["agents"]
    storage = buf.storage
    from hetplug_benchmarl.lbs import mixed

    sources, slots = torch.tensor([0, 2, 1]), torch.tensor([3, 3, 60])
    cand = mixed(storage, "agents", slots.unsqueeze(1).expand(3, 3), sources.unsqueeze(1).expand(3, 3))
    td = buf._td(cand).T  # [N, K]
    for j in range(3):
        for i in range(3):
            plain = storage.get(slots[j : j + 1]).clone()
            k = int(sources[j])
            for key in (("agents",), ("next", "agents")):
                sub = plain.get(key)
                order = list(range(3))
                order[i], order[k] = order[k], order[i]
                plain.set(key, sub[:, order])
            expected = buf._td(plain)[0, i]
            torch.testing.assert_close(td[i, j], expected, rtol=1e-5, atol=1e-6)


def test_lbs_weights_enter_each_learners_loss(tmp_path):
    exp = make_experiment(tmp_path, "iql")
    hetplug_benchmarl.wrap(exp, ["lbs"])
    exp.run()
    data = exp.replay_buffers["agents"].sample()
    key = ("next", "agents", "reward")
    w = torch.ones_like(data[WEIGHT_KEY])
    w[0, 1] = 0.0
    data[WEIGHT_KEY] = w
    base = _losses(exp, data)
    moved = data.clone()
    moved[key][0, 1] += 100.0
    for name, value in _losses(exp, moved).items():
        torch.testing.assert_close(value, base[name], msg=name)
    data[WEIGHT_KEY] = torch.ones_like(w)
    moved[WEIGHT_KEY] = torch.ones_like(w)
    assert not torch.allclose(_losses(exp, data)["loss"], _losses(exp, moved)["loss"])


@pytest.mark.parametrize("algorithm", ["qmix", "masac"])
def test_lbs_needs_independent_learners(tmp_path, algorithm):
    exp = make_experiment(tmp_path, algorithm)
    with pytest.raises(ValueError, match="plugin 'lbs' shares experience between independent learners"):
        hetplug_benchmarl.wrap(exp, ["lbs"])


@pytest.mark.parametrize("name", ["none", "per", "shep", "lbs", "hetdps", "shppo"])
def test_every_hydra_hetplug_yaml_builds_a_callback(name):
    import yaml

    from hetplug_benchmarl.models import CONF
    from hetplug_benchmarl.run import callback_from_config

    cb = callback_from_config(yaml.safe_load((CONF / "hetplug" / f"{name}.yaml").read_text()))
    assert cb.plugins == ([] if name == "none" else [name])


# ---------------------------------------------------------------------- Group-HER
HER = {
    "group_her": True,
    "her_moran_threshold": -2.0,
    "her_min_length": 3,
    "her_max_fraction": 1.0,
    "her_reward": 1.0,
}


def test_group_her_copies_are_stored_after_the_originals(tmp_path):
    """Every step qualifies (threshold below any Moran's I): each env's segment gets one
    copy, cut after its first 3 steps, with the HER reward at step 2 and done there."""
    exp = make_experiment(tmp_path, "iql", iters=1)
    cb = hetplug_benchmarl.wrap(exp, ["shep"], shep=HER)
    exp.run()
    buf = exp.replay_buffers["agents"]
    sampler = buf._sampler
    assert cb.priorities("agents").numel() == 2 * ENVS
    assert (
        sampler.length[:ENVS].tolist() == [STEPS] * ENVS
        and sampler.length[ENVS : 2 * ENVS].tolist() == [3] * ENVS
    )
    original = buf.storage.get(sampler.index[0])  # env 0, T steps
    copy = buf.storage.get(sampler.index[ENVS])  # its copy
    key = ("next", "agents", "reward")
    bonus = copy.get(key) - original.get(key)
    torch.testing.assert_close(bonus[2], torch.ones_like(bonus[2]))
    torch.testing.assert_close(bonus[:2], torch.zeros_like(bonus[:2]))
    assert copy.get(("next", "agents", "done"))[2].all()
    torch.testing.assert_close(copy.get(("agents", "observation")), original.get(("agents", "observation")))
    data = buf.sample()
    assert (data[STEP_KEY] < sampler.length[data[SLOT_KEY]]).all()  # never past a copy's end


def test_group_her_on_policy_copies_get_their_own_advantages(tmp_path):
    exp = make_experiment(tmp_path, on_policy="mappo", iters=2)
    cb = hetplug_benchmarl.wrap(exp, ["shep"], shep=HER)
    exp.run()
    buf = exp.replay_buffers["agents"]
    sampler = buf._sampler
    assert cb.priorities("agents").numel() == 2 * ENVS  # this rollout and its copies only
    assert len(buf) == 2 * ENVS * STEPS
    adv = ("agents", "advantage")
    original, copy = buf.storage.get(sampler.index[0]), buf.storage.get(sampler.index[ENVS])
    assert not torch.allclose(original.get(adv)[:3], copy.get(adv)[:3])  # relabelled reward and done


def test_checkpoint_restores_hetdps_groups(tmp_path):
    """A restored run continues with the same grouping: the manager's state (under
    "hetplug") and the slot model's routing (in the loss state) come back together."""
    exp = make_slot_experiment(tmp_path)
    exp.config.checkpoint_at_end = True
    cb = hetplug_benchmarl.wrap(exp, ["hetdps"], hetdps={**HETDPS, "preference": 0.0})
    exp.run()
    plan = cb.plans["agents"][-1][1]
    assert len(set(plan)) == 3
    ckpt = next((exp.folder_name / "checkpoints").glob("*.pt"))
    exp.config.restore_file = str(ckpt)
    exp2 = make_slot_experiment(tmp_path)
    exp2.config.restore_file = str(ckpt)
    exp2 = Experiment(task=exp2.task, algorithm_config=exp2.algorithm_config, model_config=exp2.model_config,
                      critic_model_config=exp2.critic_model_config, seed=0, config=exp2.config)  # fmt: skip
    cb2 = hetplug_benchmarl.wrap(exp2, ["hetdps"], hetdps={**HETDPS, "preference": 0.0})
    plugin = cb2.plugin_manager("agents").get_plugin("hetdps")
    assert tuple(plugin.routing("cpu").tolist()) == plan
    slot = [
        m for m in exp2.group_policies["agents"].modules() if isinstance(m, hetplug_benchmarl.slots.SlotMLP)
    ][0]
    assert tuple(slot.routing.tolist()) == plan
    assert len(plugin.estimator.pool) == len(cb.plugin_manager("agents").get_plugin("hetdps").estimator.pool)
