"""Checkpoints: ``hetplug.th`` beside EPyMARL's model files restores the plugins' state and
the stored episodes; a checkpoint without it, or of another format, is refused clearly."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch

import hetplug
import hetplug_epymarl
from hetplug_epymarl import checkpoint

from ..snapshots import assert_same, deep_state, shared_tensors
from .cases import HETDPS, KEY3, ON_POLICY, shep


@pytest.mark.slow
def test_checkpoint_restores_priorities_and_episodes(host, tmp_path):
    hp = shep()
    first = host.run("qmix", hp, save_model=True)
    models = sorted(tmp_path.glob("results/sacred/**/models"))[-1]
    # t_max below the saved step: the restored run loads and stops before training.
    second = host.run("qmix", hp, t_max=100, checkpoint_path=str(models))
    assert second is not first and second.updates == first.updates
    a, b = first.pm.get_plugin("shep"), second.pm.get_plugin("shep")
    torch.testing.assert_close(b.sampler.priorities, a.sampler.priorities)
    torch.testing.assert_close(a.sampler.priorities, first.priorities())  # as last reported
    for k, v in first.buffer.data.transition_data.items():
        torch.testing.assert_close(second.buffer.data.transition_data[k], v)
    assert a.env_steps == b.env_steps and a.sampler._sample_calls == b.sampler._sample_calls


def test_loading_a_checkpoint_saved_without_hetplug_fails_clearly(host, tmp_path, capfd):
    host.run("qmix", None, t_max=100, save_model=True)
    models = sorted(tmp_path.glob("results/sacred/**/models"))[-1]
    msg = "hetplug.th not found: the checkpoint was saved without hetplug"
    host.fails(capfd, msg, "qmix", ["per"], t_max=50, checkpoint_path=str(models))


def test_shppo_state_is_restored_from_a_checkpoint(shppo_run, host):
    first, _, root = shppo_run
    models = sorted(root.glob("results/sacred/**/models"))[-1]
    second = host.run("mappo", {"plugins": ["shppo"], "shppo": {"latent_dim": 2}}, key=KEY3, t_max=100,
                      checkpoint_path=str(models), **ON_POLICY["mappo"])  # fmt: skip
    saved_dir = sorted(models.iterdir(), key=lambda p: int(p.name))[-1]
    saved = torch.load(saved_dir / "hetplug.th", weights_only=False)["plugins"]["shppo"]
    plugin = second.pm.get_plugin("shppo")
    for k, v in plugin.inference.state_dict().items():
        torch.testing.assert_close(v, saved["inference"][k], rtol=0, atol=0)
    assert plugin._latent_opt.state_dict()["state"].keys() == saved["latent_optimizer"]["state"].keys()
    agent = torch.load(saved_dir / "agent.th")
    for k, v in plugin.latent_net.state_dict().items():
        torch.testing.assert_close(v, agent[f"latent_net.{k}"], rtol=0, atol=0)
    assert first is not second and second.updates == int(
        torch.load(saved_dir / "hetplug.th", weights_only=False)["updates"]
    )
    assert hetplug_epymarl.last_session() is second


def test_hetplug_th_carries_its_format_and_another_is_refused(shppo_run, tmp_path):
    """hetplug.th is versioned like plugin states (hetplug.state); a file of another
    format_version fails before anything is restored, naming the file and the version."""
    session, _, root = shppo_run
    models = sorted(root.glob("results/sacred/**/models"))[-1]
    saved_dir = sorted(models.iterdir(), key=lambda p: int(p.name))[-1]
    state = torch.load(saved_dir / "hetplug.th", weights_only=False)
    assert state["format_version"] == 1 and state["plugins"]["shppo"]["format_version"] == 1
    path = shutil.copytree(saved_dir, tmp_path / "future")
    torch.save({**state, "format_version": 99}, path / "hetplug.th")
    updates = session.updates
    with pytest.raises(ValueError, match=r"future/hetplug.th state has format_version=99"):
        checkpoint.load(session, str(path))
    assert session.updates == updates


def test_a_bad_hetplug_th_changes_nothing_and_the_saved_state_is_a_snapshot(host):
    """Issue 19 through what ``hetplug.th`` holds (``Session.state_dict`` /
    ``load_state_dict``): a bad state (an update counter of the wrong type, a truncated
    state or buffer, a counter out of range, a NaN priority) is refused before the plugins,
    the stored episodes or the counter change; the saved state does not follow what the
    run does next, and loading it gives that moment back exactly."""
    session = host.run("qmix", shep())
    saved = session.state_dict()
    frozen = deep_state(saved)

    def now():
        return deep_state((session.pm, session.buffer.contents_state_dict(), session.updates))

    live = now()
    nan = copy.deepcopy(saved)
    nan["plugins"]["shep"]["sampler"]["priorities"].view(-1)[0] = float("nan")
    buffer = saved["buffer"]
    bad = [
        ({**saved, "updates": 2.5}, TypeError, r"hetplug.th state\['updates'\] must be an integer"),
        ({"updates": saved["updates"], "buffer": buffer}, ValueError, "missing 'plugins'"),
        ({**saved, "buffer": {k: v for k, v in buffer.items() if k != "buffer_index"}}, ValueError,
         "missing 'buffer_index'"),
        ({**saved, "buffer": {**buffer, "buffer_index": 10**6}}, ValueError, r"state\['buffer_index'\]"),
        ({**saved, "buffer": {**buffer, "transition_data": {k: v.double() for k, v in
                                                             buffer["transition_data"].items()}}},
         TypeError, "must be a torch"),
        (nan, ValueError, r"state\['priorities'\].*nan"),
    ]  # fmt: skip
    for state, error, says in bad:
        with pytest.raises(error, match=says):
            session.load_state_dict(state)
        assert_same(live, now(), f"the session after a refused load ({says})")
    # the run goes on: priorities and episodes change
    sampler = session.pm.get_plugin("shep").sampler
    sampler.update(torch.tensor([0]), torch.tensor([123.0], dtype=torch.float64))
    session.buffer.data.transition_data["reward"].add_(1.0)
    session.updates += 1
    assert_same(frozen, deep_state(saved), "the saved state after the run went on")
    session.load_state_dict(saved)
    assert_same(live, now(), "the session after loading the saved state")
    assert_same(frozen, deep_state(saved), "the saved state after loading it")


@pytest.mark.parametrize(
    "config, hp, kwargs",
    [
        ("qmix", {"plugins": ["per"]}, {}),
        ("iql_ns", ["lbs"], {}),
        ("qmix", {"plugins": ["hetdps"], "hetdps": HETDPS}, {"key": KEY3}),
        ("mappo", {"plugins": ["shppo"], "shppo": {"latent_dim": 2}}, {"key": KEY3, **ON_POLICY["mappo"]}),
    ],
    ids=["per", "lbs", "hetdps", "shppo"],
)
def test_every_plugins_hetplug_th_state_is_a_snapshot_and_checked_whole(host, config, hp, kwargs):
    """For every plugin: what ``hetplug.th`` holds shares no tensor with the run; a bad state
    (counter of the wrong type, a plugin's state of another format or missing) changes
    nothing; loading the saved state gives the state of that moment back (for HetDPS and
    SHPPO what the plugin saves: the slot agent and the LatentNet are EPyMARL's models)."""
    session = host.run(config, hp, **kwargs)
    (plugin,) = [name for name, p in session.pm.list_name_plugin() if hasattr(p, "state_dict")]
    saved = session.state_dict()
    assert not shared_tensors(session.pm, saved), "hetplug.th's state holds live tensors"

    def view():
        pm = session.pm if plugin in ("per", "lbs") else hetplug.plugin_state(session.pm)
        return deep_state((pm, session.updates))

    at_save, whole = view(), deep_state((session.pm, session.updates))
    bad = [
        ({**saved, "updates": "7"}, TypeError, r"hetplug.th state\['updates'\] must be an integer"),
        ({**saved, "plugins": {plugin: {"format_version": 99}}}, ValueError, f"{plugin} state has format_version=99"),
        ({**saved, "plugins": {}}, ValueError, f"got none for {plugin}"),
    ]  # fmt: skip
    for state, error, says in bad:
        with pytest.raises(error, match=says):
            session.load_state_dict(state)
        assert_same(
            whole, deep_state((session.pm, session.updates)), f"the session after a refused load ({says})"
        )
    session.load_state_dict(saved)
    assert_same(at_save, view(), "the session after loading the saved state")
