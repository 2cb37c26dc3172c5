"""Bad inputs, table-driven (issue 19): every public component, hook, option and state
loader refuses a bad input clearly and leaves its state intact.

Each case builds a fresh object (a component, or a plugin manager with one configured
plugin that has already seen some data), snapshots everything it holds, makes one bad
call and asserts:

* the exception type, exactly: ``TypeError`` for a value of the wrong type, ``ValueError``
  for a value outside its domain, ``RuntimeError`` for a hook called out of order;
* that the message names the field and the value (the ``says`` fragments);
* that the object's full state is bit-for-bit what it was (:mod:`tests.snapshots`).

A case with ``error=None`` is documented behaviour (an empty batch is a no-op): it must
not raise, must leave the state as it was, and its result is checked by ``then``.

The classes are the issue's: ``load`` (non-atomic loads), ``degenerate`` (empty and
degenerate batches), ``domain`` (values outside their domain), ``type`` (types and
options), ``plan`` (sharing plans), ``hook`` (hook misuse). The seventh, saved state that
changes after saving, is tested by round trips in test_state_round_trips.py.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch

import hetplug
from hetplug.distance import DistanceEstimator, SamplePool, gaussian_w2, pairwise_gaussian_w2
from hetplug.distance.cvae import CVAEConfig
from hetplug.distance.wasserstein import mean_pairwise_gaussian_w2
from hetplug.lbs import AgentBuffers, LargeBatchSharing, LBSConfig
from hetplug.replay import PrioritizedSampler, SamplerConfig
from hetplug.replay.large_batch import large_batch_select
from hetplug.replay.per import PERConfig
from hetplug.sharing import DynamicSharingManager, ParameterSlots, SharingPlan, SlotMLP
from hetplug.sharing.manager import SharingConfig
from hetplug.sharing.plan import SlotOp
from hetplug.sharing.plugin import HetDPSConfig
from hetplug.shep import SHEPConfig
from hetplug.shep.scoring import describe
from hetplug.shppo import InferenceNet, LatentNet, SHPPOActor
from hetplug.shppo.modules import HeteLayer
from hetplug.shppo.plugin import SHPPOConfig
from hetplug.spatial import GridCells, action_diversity_entropy, bin_actions, morans_i, occupancy_entropy
from hetplug.state import read_versioned

from ..snapshots import assert_same, deep_state

N, T, CAP, A, OBS = 3, 5, 8, 4, 6
SPEC = hetplug.HostSpec(n_agents=N, max_steps=T, capacity=CAP, n_actions=A)
LBS_SPEC = hetplug.HostSpec(n_agents=N, max_steps=1, capacity=CAP, n_actions=A)
CLASSES = ("load", "degenerate", "domain", "type", "plan", "hook")
NAN, INF = float("nan"), float("inf")
#: tiny HetDPS: a CVAE fit takes milliseconds
HETDPS = {"interval": 1, "cvae": {"epochs": 1, "hidden": 8, "latent_dim": 2, "batch_size": 32},
          "fit_samples": 16, "distance_samples": 8, "pool_capacity": 64, "preference": -1.0}  # fmt: skip
NO_CUDA = not torch.cuda.is_available()


@dataclasses.dataclass
class Case:
    id: str
    kind: str
    build: Callable[[], Any]
    call: Callable[[Any], Any]
    error: type[Exception] | None
    says: tuple[str, ...] = ()
    then: Callable[[Any], None] | None = None


CASES: list[Case] = []


def case(kind, id, build, call, error, *says, then=None):
    assert kind in CLASSES
    CASES.append(Case(id, kind, build, call, error, says, then))


# ---------------------------------------------------------------------- builders
def batch(b=4, t=T, n=N, seed=0, **changes):
    g = torch.Generator().manual_seed(seed)
    fields = dict(
        reward=torch.rand(b, t, generator=g),
        mask=torch.ones(b, t, dtype=torch.bool),
        done=torch.zeros(b, t, dtype=torch.bool),
        obs=torch.rand(b, t, n, OBS, generator=g),
        actions=torch.randint(0, A, (b, t, n), generator=g),
        positions=torch.rand(b, t, n, 2, generator=g) * 2 - 1,
        alive=torch.ones(b, t, n, dtype=torch.bool),
    )
    fields.update(changes)
    return hetplug.TrajectoryBatch(**fields)


def poke(t: torch.Tensor, value, index=0) -> torch.Tensor:
    """A copy of ``t`` with one entry (its first, flattened) set to ``value``."""
    out = t.clone()
    out.view(-1)[index] = value
    return out


def configured(name, options=None, spec=SPEC):
    pm = hetplug.get_plugin_manager([name], {name: options or {}})
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
    return pm


def td_fn(sources, slots):
    return (sources.float() + slots.float() + 1.0).expand(N, -1) / 10


def prioritiser(name, seed=0, options=None):
    """A ``per`` or ``shep`` manager that has stored, sampled and re-prioritised."""
    opts = {"grid_shape": [4, 4]} if name == "shep" else {}
    pm = configured(name, {**opts, **(options or {})})
    b = batch(b=6, seed=seed, td_error=torch.rand(6, T, generator=torch.Generator().manual_seed(seed)))
    pm.hook.hetplug_trajectories_collected(batch=b)
    pm.hook.hetplug_replay_add(batch=b)
    s = pm.hook.hetplug_replay_sample(batch_size=3, generator=torch.Generator().manual_seed(seed), td_fn=None)
    pm.hook.hetplug_update_priorities(indices=s.indices, td_error=torch.rand(3, T) + seed, mask=None)
    return pm


def per_pm(seed=0):
    return prioritiser("per", seed)


def shep_pm(seed=0):
    return prioritiser("shep", seed)


def lbs_pm(seed=0, options=None):
    pm = configured("lbs", options, spec=LBS_SPEC)
    pm.hook.hetplug_replay_add(batch=batch(b=6 - seed, t=1, seed=seed))
    g = torch.Generator().manual_seed(seed)
    pm.hook.hetplug_replay_sample(batch_size=2, generator=g, td_fn=td_fn)
    return pm


def slot_parts(seed=0):
    torch.manual_seed(seed)
    model = SlotMLP(N, OBS, 2, hidden=(8,), n_slots=N)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.rand(4, N, OBS)).square().mean().backward()
    opt.step()
    target = [p.detach().clone() for p in model.parameters()]
    return model, opt, ParameterSlots(model.parameters(), opt, targets=target, routing=model.routing)


def hetdps_pm(seed=0, options=None):
    pm = configured("hetdps", {**HETDPS, **(options or {})})
    pm.hook.hetplug_bind(host=hetplug.HostObjects(parameter_slots=slot_parts(seed)[2]))
    pm.hook.hetplug_trajectories_collected(batch=batch(b=4, seed=seed))
    torch.manual_seed(seed)
    pm.hook.hetplug_after_update(update=1)
    return pm


def shppo_pm(seed=0, obs=OBS, options=None):
    pm = configured("shppo", {"latent_dim": 2, **(options or {})})
    torch.manual_seed(seed)
    pm.hook.hetplug_bind(host=hetplug.HostObjects(latent_net=LatentNet(obs, latent_dim=2, hidden=8)))
    b = batch(seed=seed, obs=torch.rand(4, T, N, obs, generator=torch.Generator().manual_seed(seed)))
    pm.hook.hetplug_auxiliary_losses(batch=b, update=1)
    return pm


def sampler(seed=0, capacity=CAP):
    s = PrioritizedSampler(capacity)
    s.add(torch.rand(5, generator=torch.Generator().manual_seed(seed)) + 0.1)
    s.sample(2, torch.Generator().manual_seed(seed))
    return s


def sharing(seed=0):
    lbs = LargeBatchSharing(N, CAP, {"p1": "prioritized"})
    lbs.add(5 - seed)
    lbs.sample(2, td_fn, torch.Generator().manual_seed(seed))
    return lbs


def buffers(seed=0):
    buf = AgentBuffers(N, CAP)
    buf.add({"obs": torch.rand(5 - seed, N, OBS, generator=torch.Generator().manual_seed(seed))})
    return buf


def pool(seed=0):
    p = SamplePool(10, N, 3, 2)
    g = torch.Generator().manual_seed(seed)
    p.add(torch.rand(6 - seed, N, 3, generator=g), torch.rand(6 - seed, N, 2, generator=g))
    return p


def estimator(seed=0, hidden=8):
    est = DistanceEstimator(N, 3, 2, config={"hidden": hidden, "latent_dim": 2, "epochs": 1}, pool_capacity=16,
                            seed=seed)  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    est.add(torch.rand(8, N, 3, generator=g), torch.rand(8, N, 2, generator=g))
    est.fit()
    return est


def manager(seed=0):
    m = DynamicSharingManager(4, {"preference": -1.0})
    d = torch.tensor([[0, 1, 5, 5], [1, 0, 5, 5], [5, 5, 0, 1], [5, 5, 1, 0.0]]) * (1 + seed)
    m.update(d)
    return m


def grid():
    return GridCells((-1, -1), (1, 1), (4, 4))


def plan(**changes):
    fields = dict(assignment=(0, 1, 1), previous=(0, 0, 0), labels=(0, 1, 1), case="split",
                  operations=(SlotOp("copy", 1, (0,), (1.0,)),), n_slots=3)  # fmt: skip
    fields.update(changes)
    return SharingPlan(**fields)


def nothing():
    """Stateless targets (functions, constructors): the state is the inputs, left unmutated."""
    return None


def plugin(name):
    return lambda pm: pm.get_plugin(name)


def empty(result):
    assert result is not None and result.numel() == 0 and result.dtype == torch.long


def none(result):
    assert result is None or result == [] or result == [None] or result == {}


# ---------------------------------------------------------------------- class: load
def load(getter):
    return lambda target, state: getter(target).load_state_dict(state)


def mutated(state: dict, path: tuple, value) -> dict:
    """A deep copy of ``state`` with ``path`` set to ``value`` (``DROP``: removed)."""
    out = copy.deepcopy(state)
    if not path:
        return value(out)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value(node[path[-1]]) if callable(value) else value
    return out


DROP = object()


def load_cases(name, build, source, getter, mutations):
    """Cases loading ``source()``'s state (a compatible object that holds other data, so a
    partial load would show) into ``build()``'s, each with one mutation."""
    for id, path, value, error, *says in mutations:

        def call(target, path=path, value=value):
            state = getter(source()).state_dict()
            return getter(target).load_state_dict(mutated(state, path, value))

        case("load", f"{name}-{id}", build, call, error, *says)


SAMPLER_KEYS = ("capacity", "config", "priorities", "max_priority", "size", "cursor", "sample_calls")
sampler_mutations = [
    *[(f"missing-{k}", (k,), DROP, ValueError, "sampler state is missing", repr(k)) for k in SAMPLER_KEYS],
    ("nan-priority", ("priorities",), lambda p: poke(p, NAN), ValueError, "state['priorities']", "nan"),
    ("negative-priority", ("priorities",), lambda p: poke(p, -1.0), ValueError, "state['priorities']", "-1.0"),
    ("inf-priority", ("priorities",), lambda p: poke(p, INF), ValueError, "state['priorities']", "inf"),
    ("priorities-shape", ("priorities",), torch.ones(4), ValueError, "state['priorities']", "[4]"),
    ("priorities-dtype", ("priorities",), torch.ones(CAP, dtype=torch.long), TypeError, "state['priorities']", "torch.int64"),
    ("priorities-list", ("priorities",), [1.0] * CAP, TypeError, "state['priorities']", "list"),
    ("size-above-capacity", ("size",), CAP + 1, ValueError, "state['size']", "9"),
    ("size-negative", ("size",), -1, ValueError, "state['size']", "-1"),
    ("size-string", ("size",), "5", TypeError, "state['size']", "'5'"),
    ("cursor-out-of-range", ("cursor",), CAP, ValueError, "state['cursor']", "8"),
    ("cursor-not-size", ("cursor",), 2, ValueError, "state['cursor']", "2"),
    ("other-capacity", ("capacity",), 16, ValueError, "state['capacity']", "16"),
    ("config-alpha", ("config", "alpha"), -1.0, ValueError, "alpha", "-1.0"),
    ("config-unknown", ("config", "alpah"), 0.5, ValueError, "alpah"),
    ("max-priority-nan", ("max_priority",), torch.tensor(NAN, dtype=torch.float64), ValueError, "max_priority", "nan"),
    ("sample-calls-negative", ("sample_calls",), -3, ValueError, "sample_calls", "-3"),
    ("progress-above-one", ("progress",), 2.0, ValueError, "progress", "2.0"),
    ("progress-tensor-above-one", ("progress",), torch.tensor(1.5, dtype=torch.float64), ValueError, "progress", "1.5"),
    ("progress-tensor-of-a-vector", ("progress",), torch.zeros(2), ValueError, "progress", "(2,)"),
]  # fmt: skip
load_cases("sampler", sampler, lambda: sampler(1), lambda s: s, sampler_mutations)
case(
    "load",
    "sampler-not-a-mapping",
    sampler,
    lambda s: s.load_state_dict([1, 2]),
    TypeError,
    "sampler state",
    "list",
)

per_mutations = [
    ("missing-sampler", ("sampler",), DROP, ValueError, "per state is missing", "'sampler'"),
    ("nan-priority", ("sampler", "priorities"), lambda p: poke(p, NAN), ValueError, "state['priorities']", "nan"),
    ("size-above-capacity", ("sampler", "size"), 99, ValueError, "state['size']", "99"),
    ("truncated-sampler", ("sampler", "cursor"), DROP, ValueError, "'cursor'"),
    ("env-steps-negative", ("env_steps",), -1, ValueError, "env_steps", "-1"),
    ("env-steps-float", ("env_steps",), 2.5, TypeError, "env_steps", "2.5"),
    ("env-steps-float-tensor", ("env_steps",), torch.tensor(2.5), TypeError, "env_steps", "torch.float32"),
    ("env-steps-negative-tensor", ("env_steps",), torch.tensor(-4), ValueError, "env_steps", "-4"),
    ("format-version", ("format_version",), 99, ValueError, "format_version=99"),
]  # fmt: skip
load_cases("per", per_pm, lambda: per_pm(1), plugin("per"), per_mutations)
case(
    "load",
    "per-none",
    per_pm,
    lambda pm: pm.get_plugin("per").load_state_dict(None),
    TypeError,
    "per state",
    "NoneType",
)

shep_mutations = [
    *[(f"missing-{k}", (k,), DROP, ValueError, "shep state is missing", repr(k))
      for k in ("sampler", "shift", "cohesion", "mask", "max_td", "env_steps")],
    ("partial-tables", ("episodes",), DROP, ValueError, "'episodes'"),
    ("shift-shape", ("shift",), torch.zeros(CAP, T + 1), ValueError, "state['shift']", f"[{CAP}, {T + 1}]"),
    ("shift-nan", ("shift",), lambda x: poke(x, NAN), ValueError, "state['shift']", "nan"),
    ("mask-float", ("mask",), torch.ones(CAP, T), TypeError, "state['mask']", "torch.float32"),
    ("episode-out-of-range", ("episode",), lambda x: poke(x, 99), ValueError, "state['episode']", "99"),
    ("step-mass-negative", ("step_mass",), lambda x: poke(x, -2.0), ValueError, "state['step_mass']", "-2.0"),
    ("min-mass-nan", ("min_mass",), lambda x: poke(x, NAN), ValueError, "state['min_mass']", "nan"),
    ("max-td-negative", ("max_td",), torch.tensor(-1.0), ValueError, "state['max_td']", "-1.0"),
    ("sampler-nan", ("sampler", "priorities"), lambda p: poke(p, NAN), ValueError, "state['priorities']", "nan"),
    ("sampler-cursor", ("sampler", "cursor"), -1, ValueError, "state['cursor']", "-1"),
    ("her-credit-string", ("her_credit",), "lots", TypeError, "her_credit", "'lots'"),
    ("env-steps-negative", ("env_steps",), -5, ValueError, "env_steps", "-5"),
    ("format-version", ("format_version",), 2, ValueError, "format_version=2"),
]  # fmt: skip
load_cases("shep", shep_pm, lambda: shep_pm(1), plugin("shep"), shep_mutations)

LBS_KEYS = ("n_agents", "capacity", "config", "p1", "p1_max", "size", "cursor")
lbs_mutations = [
    ("missing-sharing", ("sharing",), DROP, ValueError, "lbs state is missing", "'sharing'"),
    *[(f"missing-{k}", ("sharing", k), DROP, ValueError, "lbs state is missing", repr(k)) for k in LBS_KEYS],
    ("p1-nan", ("sharing", "p1"), lambda x: poke(x, NAN), ValueError, "state['p1']", "nan"),
    ("p1-agent-count", ("sharing", "p1"), torch.ones(N + 1, CAP, dtype=torch.float64), ValueError, "state['p1']", f"[{N + 1}, {CAP}]"),
    ("other-agent-count", ("sharing", "n_agents"), N + 1, ValueError, "state['n_agents']", str(N + 1)),
    ("size-above-capacity", ("sharing", "size"), CAP + 1, ValueError, "state['size']", str(CAP + 1)),
    ("cursor-negative", ("sharing", "cursor"), -1, ValueError, "state['cursor']", "-1"),
    ("config-weighting", ("sharing", "config", "weighting"), "median", ValueError, "weighting", "'median'"),
    ("format-version", ("format_version",), 7, ValueError, "format_version=7"),
]  # fmt: skip
load_cases("lbs", lbs_pm, lambda: lbs_pm(1), plugin("lbs"), lbs_mutations)
load_cases("large-batch-sharing", sharing, lambda: sharing(1), lambda s: s, [
    ("p1-negative", ("p1",), lambda x: poke(x, -1.0), ValueError, "state['p1']", "-1.0"),
    ("p1-max-nan", ("p1_max",), torch.tensor(NAN, dtype=torch.float64), ValueError, "state['p1_max']", "nan"),
    ("capacity", ("capacity",), CAP * 2, ValueError, "state['capacity']", str(CAP * 2)),
])  # fmt: skip

buffer_mutations = [
    *[(f"missing-{k}", (k,), DROP, ValueError, "agent buffers state is missing", repr(k))
      for k in ("n_agents", "capacity", "storage", "size", "cursor")],
    ("storage-agent-count", ("storage", "obs"), torch.zeros(N + 1, CAP, OBS), ValueError, "storage", f"{(N + 1, CAP, OBS)}"),
    ("storage-not-tensor", ("storage", "obs"), [0.0], TypeError, "storage", "list"),
    ("size-above-capacity", ("size",), 99, ValueError, "state['size']", "99"),
    ("cursor-negative", ("cursor",), -1, ValueError, "state['cursor']", "-1"),
    ("other-agent-count", ("n_agents",), 7, ValueError, "state['n_agents']", "7"),
]  # fmt: skip
load_cases("agent-buffers", buffers, lambda: buffers(1), lambda b: b, buffer_mutations)

pool_mutations = [
    *[(f"missing-{k}", (k,), DROP, ValueError, "sample pool state is missing", repr(k)) for k in ("x", "y", "cursor")],
    ("x-dims", ("x",), torch.zeros(5, N, 4), ValueError, "state['x']", "[5, 3, 4]"),
    ("x-nan", ("x",), lambda x: poke(x, NAN), ValueError, "x", "nan"),
    ("y-fewer-samples", ("y",), lambda y: y[:-1], ValueError, "y", "as many samples"),
    ("cursor-out-of-range", ("cursor",), 10, ValueError, "state['cursor']", "10"),
    ("more-than-capacity", (), lambda s: {**s, "x": torch.zeros(11, N, 3), "y": torch.zeros(11, N, 2)}, ValueError,
     "capacity=10", "11"),
]  # fmt: skip
load_cases("sample-pool", pool, lambda: pool(1), lambda p: p, pool_mutations)

estimator_mutations = [
    *[(f"missing-{k}", (k,), DROP, ValueError, "distance estimator state is missing", repr(k))
      for k in ("model", "optimizer", "pool", "generator", "noise_generator", "fitted")],
    ("model-of-other-dims", ("model",), lambda _: estimator(1, hidden=16).model.state_dict(), ValueError, "state['model']", "[16"),
    ("model-missing-key", ("model", "enc_in.weight"), DROP, ValueError, "state['model']", "enc_in.weight"),
    ("optimizer-of-other-dims", ("optimizer",), lambda _: estimator(1, hidden=16).optimizer.state_dict(), ValueError, "state['optimizer']"),
    ("generator-garbage", ("generator",), torch.zeros(3, dtype=torch.uint8), ValueError, "state['generator']", "(3,)"),
    ("pool-cursor", ("pool", "cursor"), DROP, ValueError, "'cursor'"),
    ("fitted-string", ("fitted",), "yes", TypeError, "fitted", "'yes'"),
]  # fmt: skip
load_cases("estimator", estimator, lambda: estimator(1), lambda e: e, estimator_mutations)

manager_mutations = [
    *[(f"missing-{k}", (k,), DROP, ValueError, "sharing manager state is missing", repr(k))
      for k in ("assignment", "rng", "n_regroupings")],
    ("assignment-out-of-range", ("assignment",), [0, 0, 9, 0], ValueError, "state['assignment']", "9"),
    ("assignment-agent-count", ("assignment",), [0, 1], ValueError, "state['assignment']", "[0, 1]"),
    ("assignment-string", ("assignment",), "0011", TypeError, "state['assignment']", "'0011'"),
    ("rng-garbage", ("rng",), {"bit_generator": "nope"}, ValueError, "state['rng']", "nope"),
    ("regroupings-negative", ("n_regroupings",), -1, ValueError, "n_regroupings", "-1"),
]  # fmt: skip
load_cases("manager", manager, lambda: manager(1), lambda m: m, manager_mutations)

hetdps_mutations = [
    ("missing-manager", ("manager",), DROP, ValueError, "hetdps state is missing", "'manager'"),
    ("manager-assignment", ("manager", "assignment"), [0, 0, 99], ValueError, "state['assignment']", "99"),
    ("unknown-distance", ("estimators",), lambda e: {**e, "policy": e["meta"]}, ValueError, "'policy'", "grouping_distance"),
    ("dims-garbage", ("dims", "meta"), "big", ValueError, "state['dims']['meta']", "'big'"),
    ("estimator-of-other-dims", ("estimators", "meta", "model"),
     lambda _: hetdps_pm(1, {"cvae": {**HETDPS["cvae"], "hidden": 4}}).get_plugin("hetdps").estimator.model.state_dict(),
     ValueError, "state['model']", "[4"),
    ("estimator-truncated", ("estimators", "meta", "noise_generator"), DROP, ValueError, "'noise_generator'"),
    ("format-version", ("format_version",), 3, ValueError, "format_version=3"),
]  # fmt: skip
load_cases("hetdps", hetdps_pm, lambda: hetdps_pm(1), plugin("hetdps"), hetdps_mutations)

shppo_mutations = [
    ("inference-args", ("inference_args",), "big", ValueError, "state['inference_args']", "'big'"),
    ("inference-of-other-dims", ("inference",), lambda _: shppo_pm(1, options={"hidden": 16}).get_plugin("shppo").inference.state_dict(),
     ValueError, "state['inference']", "[16"),
    ("missing-inference-optimizer", ("inference_optimizer",), DROP, ValueError, "'inference_optimizer'"),
    ("latent-optimizer-of-other-dims", ("latent_optimizer",),
     lambda _: shppo_pm(1, obs=OBS + 2).get_plugin("shppo")._latent_opt.state_dict(), ValueError, "state['latent_optimizer']"),
    ("format-version", ("format_version",), "1", ValueError, "format_version='1'"),
]  # fmt: skip
load_cases("shppo", shppo_pm, lambda: shppo_pm(1), plugin("shppo"), shppo_mutations)


def two_plugins():
    pm = configured_many(["per", "hetdps"])
    return pm


def configured_many(names, seed=0):
    pm = hetplug.get_plugin_manager(names, {"hetdps": HETDPS} if "hetdps" in names else None)
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": SPEC})
    b = batch(b=4, seed=seed)
    pm.hook.hetplug_trajectories_collected(batch=b)
    pm.hook.hetplug_replay_add(batch=b)
    torch.manual_seed(seed)
    pm.hook.hetplug_after_update(update=1)
    return pm


def second_bad():
    state = hetplug.plugin_state(configured_many(["per", "hetdps"], seed=1))
    state["hetdps"]["manager"]["assignment"] = [0, 0, 99]
    return state


def second_plugin_bad(pm):
    hetplug.load_plugin_state(pm, second_bad())  # per is valid, hetdps refuses: nothing loads


case("load", "check-plugin-state-second-bad", two_plugins, lambda pm: hetplug.check_plugin_state(pm, second_bad()),
     ValueError, "state['assignment']", "99")  # fmt: skip
case("load", "check-plugin-state-not-mapping", two_plugins, lambda pm: hetplug.check_plugin_state(pm, "per"),
     TypeError, "state must be a mapping", "'per'")  # fmt: skip


case(
    "load", "plugin-state-second-bad", two_plugins, second_plugin_bad, ValueError, "state['assignment']", "99"
)
case("load", "plugin-state-missing-entry", two_plugins,
     lambda pm: hetplug.load_plugin_state(pm, {"per": hetplug.plugin_state(pm)["per"]}), ValueError, "hetdps")  # fmt: skip
case("load", "plugin-state-unregistered", two_plugins,
     lambda pm: hetplug.load_plugin_state(pm, {**hetplug.plugin_state(pm), "shep": {}}), ValueError, "shep")  # fmt: skip
case("load", "plugin-state-not-mapping", two_plugins, lambda pm: hetplug.load_plugin_state(pm, ["per"]), TypeError,
     "state must be a mapping", "['per']")  # fmt: skip
case(
    "load",
    "read-versioned-list",
    nothing,
    lambda _: read_versioned([1], "per"),
    TypeError,
    "per state",
    "list",
)
case("load", "read-versioned-bool", nothing, lambda _: read_versioned({"format_version": True}, "per"), ValueError,
     "format_version=True")  # fmt: skip

# ---------------------------------------------------------------------- class: degenerate
for name, build in (("per", per_pm), ("shep", shep_pm)):
    case("degenerate", f"{name}-collected-b0", build, lambda pm: pm.hook.hetplug_trajectories_collected(batch=batch(b=0)),
         None, then=none)  # fmt: skip
    case(
        "degenerate",
        f"{name}-add-b0",
        build,
        lambda pm: pm.hook.hetplug_replay_add(batch=batch(b=0)),
        None,
        then=empty,
    )
    case("degenerate", f"{name}-update-b0", build,
         lambda pm: pm.hook.hetplug_update_priorities(indices=torch.zeros(0, dtype=torch.long), td_error=torch.zeros(0, T), mask=None),
         None, then=lambda r: r.numel() == 0)  # fmt: skip
    case("degenerate", f"{name}-add-t-above-max-steps", build, lambda pm: pm.hook.hetplug_replay_add(batch=batch(t=T + 1)),
         ValueError, "batch.max_steps", f"max_steps={T}", f"batch.max_steps={T + 1}")  # fmt: skip
    case("degenerate", f"{name}-update-t-above-max-steps", build,
         lambda pm: pm.hook.hetplug_update_priorities(indices=torch.tensor([0]), td_error=torch.ones(1, T + 1), mask=None),
         ValueError, "td_error", f"max_steps={T}", f"({1}, {T + 1})")  # fmt: skip
    case("degenerate", f"{name}-update-t0", build,
         lambda pm: pm.hook.hetplug_update_priorities(indices=torch.tensor([0]), td_error=torch.ones(1, 0), mask=None),
         ValueError, "td_error", "(1, 0)")  # fmt: skip
    case("degenerate", f"{name}-update-float-mask", build,
         lambda pm: pm.hook.hetplug_update_priorities(indices=torch.tensor([0]), td_error=torch.ones(1, T), mask=torch.ones(1, T)),
         TypeError, "mask", "torch.float32")  # fmt: skip
    case("degenerate", f"{name}-update-int-mask", build,
         lambda pm: pm.hook.hetplug_update_priorities(indices=torch.tensor([0]), td_error=torch.ones(1, T),
                                                      mask=torch.ones(1, T, dtype=torch.int64)),
         TypeError, "mask", "torch.int64")  # fmt: skip
    case(
        "degenerate",
        f"{name}-sample-zero",
        build,
        lambda pm: pm.hook.hetplug_replay_sample(batch_size=0, generator=None, td_fn=None),
        ValueError,
        "batch_size",
        "0",
    )
case("degenerate", "per-add-more-than-capacity", per_pm, lambda pm: pm.hook.hetplug_replay_add(batch=batch(b=CAP + 1)),
     ValueError, "capacity=8", "9")  # fmt: skip
case("degenerate", "shep-add-more-than-capacity", shep_pm, lambda pm: pm.hook.hetplug_replay_add(batch=batch(b=CAP + 1)),
     ValueError, "capacity=8", "batch.batch_size=9")  # fmt: skip
case(
    "degenerate",
    "lbs-add-b0",
    lbs_pm,
    lambda pm: pm.hook.hetplug_replay_add(batch=batch(b=0, t=1)),
    None,
    then=empty,
)
case("degenerate", "lbs-add-t-above-max-steps", lbs_pm, lambda pm: pm.hook.hetplug_replay_add(batch=batch(t=2)),
     ValueError, "batch.max_steps", "max_steps=1")  # fmt: skip
case("degenerate", "lbs-add-more-than-capacity", lbs_pm, lambda pm: pm.hook.hetplug_replay_add(batch=batch(b=CAP + 1, t=1)),
     ValueError, "capacity=8", "batch.batch_size=9")  # fmt: skip
case("degenerate", "hetdps-collected-b0", hetdps_pm, lambda pm: pm.hook.hetplug_trajectories_collected(batch=batch(b=0)),
     None, then=none)  # fmt: skip
case("degenerate", "hetdps-collected-t1", hetdps_pm, lambda pm: pm.hook.hetplug_trajectories_collected(batch=batch(t=1)),
     None, then=none)  # fmt: skip
case("degenerate", "hetdps-collected-all-false-mask", hetdps_pm,
     lambda pm: pm.hook.hetplug_trajectories_collected(batch=batch(mask=torch.zeros(4, T, dtype=torch.bool))),
     None, then=none)  # fmt: skip
case("degenerate", "shppo-aux-b0", shppo_pm, lambda pm: pm.hook.hetplug_auxiliary_losses(batch=batch(b=0), update=2),
     None, then=lambda r: r == [{}])  # fmt: skip
case("degenerate", "shppo-aux-all-false-mask", shppo_pm,
     lambda pm: pm.hook.hetplug_auxiliary_losses(batch=batch(mask=torch.zeros(4, T, dtype=torch.bool)), update=2),
     None, then=lambda r: r == [{}])  # fmt: skip
case("degenerate", "batch-t0", nothing, lambda _: batch(t=0), ValueError, "T >= 1", "(4, 0)")
case(
    "degenerate",
    "batch-float-mask",
    nothing,
    lambda _: batch(mask=torch.ones(4, T)),
    TypeError,
    "mask",
    "torch.float32",
)
case("degenerate", "batch-int-mask", nothing, lambda _: batch(mask=torch.ones(4, T, dtype=torch.int32)), TypeError,
     "mask", "torch.int32")  # fmt: skip
case(
    "degenerate",
    "batch-float-done",
    nothing,
    lambda _: batch(done=torch.zeros(4, T)),
    TypeError,
    "done",
    "torch.float32",
)
case("degenerate", "batch-mask-shape", nothing, lambda _: batch(mask=torch.ones(4, T + 1, dtype=torch.bool)), ValueError,
     "mask", f"(4, {T + 1})")  # fmt: skip
case("degenerate", "sampler-add-empty", sampler, lambda s: s.add(torch.zeros(0)), None, then=empty)
case("degenerate", "sampler-add-count-0", sampler, lambda s: s.add(count=0), None, then=empty)
case("degenerate", "sampler-update-empty", sampler, lambda s: s.update(torch.zeros(0, dtype=torch.long), torch.zeros(0)),
     None, then=none)  # fmt: skip
case(
    "degenerate",
    "sampler-add-nothing",
    sampler,
    lambda s: s.add(),
    ValueError,
    "priorities=None",
    "count=None",
)
case(
    "degenerate",
    "sampler-empty-sample",
    lambda: PrioritizedSampler(4),
    lambda s: s.sample(2),
    ValueError,
    "empty sampler",
)
case("degenerate", "sampler-without-replacement", sampler, lambda s: s.sample(9, replacement=False), ValueError,
     "batch_size=9", "5 stored")  # fmt: skip
case("degenerate", "large-batch-k0", nothing, lambda _: large_batch_select(torch.zeros(0), 2), ValueError,
     "priorities", "(0,)")  # fmt: skip
case("degenerate", "large-batch-zero-row", nothing, lambda _: large_batch_select(torch.zeros(2, 3), 2), ValueError,
     "priorities", "row 0")  # fmt: skip
case("degenerate", "lbs-sharing-add-0", sharing, lambda s: s.add(0), None, then=empty)
case("degenerate", "lbs-sharing-empty-sample", lambda: LargeBatchSharing(N, CAP), lambda s: s.sample(2, td_fn), ValueError,
     "empty")  # fmt: skip
case("degenerate", "agent-buffers-n0", buffers, lambda b: b.add({"obs": torch.zeros(0, N, OBS)}), ValueError,
     "transitions", "n=0")  # fmt: skip
case("degenerate", "agent-buffers-empty-gather", lambda: AgentBuffers(N, CAP),
     lambda b: b.gather(torch.tensor([0]), torch.tensor([0])), ValueError, "empty")  # fmt: skip
case(
    "degenerate",
    "pool-add-empty",
    pool,
    lambda p: p.add(torch.zeros(0, N, 3), torch.zeros(0, N, 2)),
    None,
    then=none,
)
case("degenerate", "estimator-fit-empty-pool", lambda: DistanceEstimator(N, 3, 2), lambda e: e.fit(), ValueError,
     "pool is empty")  # fmt: skip
case("degenerate", "estimator-distances-before-fit", lambda: DistanceEstimator(N, 3, 2), lambda e: e.distance_matrix(),
     RuntimeError, "fit the DistanceEstimator")  # fmt: skip
case("degenerate", "entropy-of-no-agent", nothing, lambda _: occupancy_entropy(torch.zeros(3, 16)), None,
     then=lambda h: torch.equal(h, torch.zeros(3)))  # fmt: skip
case("degenerate", "moran-of-a-constant-field", nothing, lambda _: morans_i(torch.full((2, 16), 0.25), grid()), None,
     then=lambda i: torch.equal(i, torch.zeros(2)))  # fmt: skip

# ---------------------------------------------------------------------- class: domain
nan_positions = poke(batch().positions, NAN)
inf_positions = poke(batch().positions, INF, 5)
for name, build in (("shep", shep_pm),):
    for hook in ("trajectories_collected", "replay_add"):
        call = getattr

        def run(pm, hook=hook, **fields):
            return getattr(pm.hook, f"hetplug_{hook}")(batch=batch(**fields))

        case("domain", f"{name}-{hook}-nan-positions", build, lambda pm, run=run: run(pm, positions=nan_positions),
             ValueError, "batch.positions", "nan")  # fmt: skip
        case("domain", f"{name}-{hook}-inf-positions", build, lambda pm, run=run: run(pm, positions=inf_positions),
             ValueError, "batch.positions", "inf")  # fmt: skip
        case("domain", f"{name}-{hook}-action-out-of-range", build,
             lambda pm, run=run: run(pm, actions=poke(batch().actions, A)), ValueError, "batch.actions", f"[0, {A})", f"={A}")  # fmt: skip
        case("domain", f"{name}-{hook}-negative-action", build,
             lambda pm, run=run: run(pm, actions=poke(batch().actions, -1)), ValueError, "batch.actions", "-1")  # fmt: skip
        case("domain", f"{name}-{hook}-negative-alive", build,
             lambda pm, run=run: run(pm, alive=poke(torch.ones(4, T, N), -0.5)), ValueError, "batch.alive", "-0.5")  # fmt: skip
        case("domain", f"{name}-{hook}-nan-reward", build,
             lambda pm, run=run: run(pm, reward=poke(batch().reward, NAN)), ValueError, "batch.reward", "nan")  # fmt: skip
        case("domain", f"{name}-{hook}-nan-opponents", build,
             lambda pm, run=run: run(pm, opponent_positions=torch.full((4, T, 2, 2), NAN)), ValueError,
             "batch.opponent_positions", "nan")  # fmt: skip
    case("domain", f"{name}-add-nan-td", build,
         lambda pm: pm.hook.hetplug_replay_add(batch=batch(td_error=poke(torch.ones(4, T), NAN))),
         ValueError, "batch.td_error", "nan")  # fmt: skip
for name, build in (("per", per_pm), ("shep", shep_pm)):
    case("domain", f"{name}-update-nan-td", build,
         lambda pm: pm.hook.hetplug_update_priorities(indices=torch.tensor([0, 1]), td_error=poke(torch.ones(2, T), NAN), mask=None),
         ValueError, "td_error", "nan")  # fmt: skip
    case("domain", f"{name}-update-inf-td", build,
         lambda pm: pm.hook.hetplug_update_priorities(indices=torch.tensor([0, 1]), td_error=poke(torch.ones(2, T), -INF), mask=None),
         ValueError, "td_error", "-inf")  # fmt: skip
    case("domain", f"{name}-update-index-out-of-range", build,
         lambda pm: pm.hook.hetplug_update_priorities(indices=torch.tensor([0, 6]), td_error=torch.ones(2, T), mask=None),
         ValueError, "indices", "[0, 6)", "indices[1]=6")  # fmt: skip
    case("domain", f"{name}-update-negative-index", build,
         lambda pm: pm.hook.hetplug_update_priorities(indices=torch.tensor([-1]), td_error=torch.ones(1, T), mask=None),
         ValueError, "indices", "-1")  # fmt: skip
case("domain", "per-add-nan-td", per_pm, lambda pm: pm.hook.hetplug_replay_add(batch=batch(td_error=poke(torch.ones(4, T), NAN))),
     ValueError, "batch.td_error", "nan")  # fmt: skip
case("domain", "hetdps-nan-obs", hetdps_pm, lambda pm: pm.hook.hetplug_trajectories_collected(batch=batch(obs=poke(batch().obs, NAN))),
     ValueError, "batch.obs", "nan")  # fmt: skip
case("domain", "hetdps-inf-reward", hetdps_pm,
     lambda pm: pm.hook.hetplug_trajectories_collected(batch=batch(reward=poke(batch().reward, INF))), ValueError, "batch.reward", "inf")  # fmt: skip
case("domain", "hetdps-action-out-of-range", hetdps_pm,
     lambda pm: pm.hook.hetplug_trajectories_collected(batch=batch(actions=poke(batch().actions, A + 3))),
     ValueError, "batch.actions", f"={A + 3}")  # fmt: skip
case("domain", "hetdps-negative-action", hetdps_pm,
     lambda pm: pm.hook.hetplug_trajectories_collected(batch=batch(actions=poke(batch().actions, -2))),
     ValueError, "batch.actions", "-2")  # fmt: skip
case("domain", "hetdps-wrong-agent-count", hetdps_pm,
     lambda pm: pm.hook.hetplug_trajectories_collected(batch=batch(n=N + 1)), ValueError, "batch.obs", f"n_agents={N}")  # fmt: skip
case("domain", "shppo-nan-obs", shppo_pm, lambda pm: pm.hook.hetplug_auxiliary_losses(batch=batch(obs=poke(batch().obs, NAN)), update=2),
     ValueError, "batch.obs", "nan")  # fmt: skip
case("domain", "shppo-inf-reward", shppo_pm,
     lambda pm: pm.hook.hetplug_auxiliary_losses(batch=batch(reward=poke(batch().reward, INF)), update=2), ValueError, "batch.reward", "inf")  # fmt: skip
case("domain", "shppo-nan-returns", shppo_pm,
     lambda pm: pm.hook.hetplug_auxiliary_losses(batch=batch(extra={"returns": poke(torch.ones(4, T), NAN)}), update=2),
     ValueError, "returns", "nan")  # fmt: skip
case("domain", "shppo-returns-shape", shppo_pm,
     lambda pm: pm.hook.hetplug_auxiliary_losses(batch=batch(extra={"returns": torch.ones(4, T, 2)}), update=2),
     ValueError, "returns", f"(4, {T}, 2)")  # fmt: skip
case("domain", "lbs-nan-td-fn", lbs_pm,
     lambda pm: pm.hook.hetplug_replay_sample(batch_size=2, generator=None, td_fn=lambda s, t: torch.full((N, s.shape[0]), NAN)),
     ValueError, "td_fn(sources, slots)", "nan")  # fmt: skip
case("domain", "lbs-td-fn-shape", lbs_pm,
     lambda pm: pm.hook.hetplug_replay_sample(batch_size=2, generator=None, td_fn=lambda s, t: torch.ones(N, 1)),
     ValueError, "td_fn(sources, slots)", f"[{N}, {N * 2}]")  # fmt: skip
case("domain", "lbs-wrong-agent-count", lbs_pm, lambda pm: pm.hook.hetplug_replay_add(batch=batch(t=1, n=N + 2)),
     ValueError, "batch.obs", f"n_agents={N}")  # fmt: skip
case(
    "domain",
    "sampler-add-nan",
    sampler,
    lambda s: s.add(torch.tensor([1.0, NAN])),
    ValueError,
    "priorities",
    "nan",
)
case(
    "domain",
    "sampler-add-negative",
    sampler,
    lambda s: s.add(torch.tensor([-0.5])),
    ValueError,
    "priorities",
    "-0.5",
)
case("domain", "sampler-update-inf", sampler, lambda s: s.update(torch.tensor([0]), torch.tensor([INF])), ValueError,
     "priorities", "inf")  # fmt: skip
case("domain", "sampler-update-index", sampler, lambda s: s.update(torch.tensor([7]), torch.tensor([1.0])), ValueError,
     "indices", "7")  # fmt: skip
case("domain", "sampler-progress", sampler, lambda s: s.set_progress(1.5), ValueError, "fraction", "1.5")
case(
    "domain",
    "grid-nan-positions",
    grid,
    lambda g: g.assign(torch.tensor([[0.0, NAN]])),
    ValueError,
    "positions",
    "nan",
)
case(
    "domain",
    "grid-inf-positions",
    grid,
    lambda g: g.density(torch.tensor([[INF, 0.0]])),
    ValueError,
    "positions",
    "inf",
)
case("domain", "grid-negative-alive", grid, lambda g: g.density(torch.zeros(2, 2), torch.tensor([1.0, -1.0])), ValueError,
     "alive", "-1.0")  # fmt: skip
case("domain", "describe-nan-positions", nothing, lambda _: describe(grid(), torch.full((1, 2, 2), NAN)), ValueError,
     "positions", "nan")  # fmt: skip
case("domain", "describe-action-out-of-range", nothing,
     lambda _: describe(grid(), torch.zeros(1, 2, 2), actions=torch.tensor([[0, 5]]), n_actions=4), ValueError, "actions", "5")  # fmt: skip
case("domain", "action-entropy-negative-action", nothing, lambda _: action_diversity_entropy(torch.tensor([[0, -1]]), 4),
     ValueError, "actions", "-1")  # fmt: skip
case("domain", "action-entropy-action-too-large", nothing, lambda _: action_diversity_entropy(torch.tensor([[0, 4]]), 4),
     ValueError, "actions", "[0, 4)", "=4")  # fmt: skip
case("domain", "action-entropy-n-actions-0", nothing, lambda _: action_diversity_entropy(torch.tensor([[0]]), 0),
     ValueError, "n_actions", "n_actions=0")  # fmt: skip
case("domain", "action-entropy-negative-alive", nothing,
     lambda _: action_diversity_entropy(torch.tensor([[0, 1]]), 4, alive=torch.tensor([[1.0, -2.0]])), ValueError, "alive", "-2.0")  # fmt: skip
case("domain", "entropy-of-negative-density", nothing, lambda _: occupancy_entropy(torch.tensor([1.5, -0.5])), ValueError,
     "density", "distribution", "-0.5")  # fmt: skip
case("domain", "entropy-of-unnormalised-density", nothing, lambda _: occupancy_entropy(torch.tensor([[0.5, 0.5], [1.0, 1.0]])),
     ValueError, "density[1]", "2.0")  # fmt: skip
case("domain", "entropy-of-nan-density", nothing, lambda _: occupancy_entropy(torch.tensor([NAN, 1.0])), ValueError,
     "density", "nan")  # fmt: skip
case(
    "domain",
    "moran-nan-values",
    nothing,
    lambda _: morans_i(poke(torch.rand(16), NAN), grid()),
    ValueError,
    "values",
    "nan",
)
case("domain", "bin-actions-nan", nothing, lambda _: bin_actions(torch.tensor([[NAN]]), [-1.0], [1.0], 5), ValueError,
     "actions", "nan")  # fmt: skip
case("domain", "bin-actions-low-above-high", nothing, lambda _: bin_actions(torch.zeros(1, 1), [1.0], [-1.0], 5),
     ValueError, "high", "(-1.0,)")  # fmt: skip
case("domain", "w2-negative-sigma", nothing, lambda _: gaussian_w2(torch.zeros(2), -torch.ones(2), torch.zeros(2), torch.ones(2)),
     ValueError, "sigma1", "-1.0")  # fmt: skip
case("domain", "w2-nan-mu", nothing, lambda _: pairwise_gaussian_w2(torch.full((3, 2), NAN), torch.ones(3, 2)), ValueError,
     "mu", "nan")  # fmt: skip
case("domain", "mean-w2-negative-sigma", nothing,
     lambda _: mean_pairwise_gaussian_w2(torch.zeros(2, 3, 2), poke(torch.ones(2, 3, 2), -3.0)), ValueError, "sigma", "-3.0")  # fmt: skip
case("domain", "manager-nan-distance", manager, lambda m: m.update(poke(torch.zeros(4, 4), NAN, 1)), ValueError,
     "distance[0, 1]", "nan")  # fmt: skip
case("domain", "manager-negative-distance", manager, lambda m: m.update(-torch.ones(4, 4) + torch.eye(4)), ValueError,
     "distance[0, 1]", "-1.0")  # fmt: skip
case("domain", "manager-asymmetric", manager, lambda m: m.update(poke(torch.zeros(4, 4), 2.0, 1)), ValueError,
     "symmetric", "2.0")  # fmt: skip
case(
    "domain",
    "pool-nan",
    pool,
    lambda p: p.add(torch.full((2, N, 3), NAN), torch.zeros(2, N, 2)),
    ValueError,
    "x",
    "nan",
)
case("domain", "estimator-fit-inf", estimator, lambda e: e.fit(torch.full((2, N, 3), INF), torch.zeros(2, N, 2)),
     ValueError, "x", "inf")  # fmt: skip
case("domain", "buffers-gather-out-of-range", buffers, lambda b: b.gather(torch.tensor([N]), torch.tensor([0])),
     ValueError, "sources", f"={N}")  # fmt: skip
case("domain", "buffers-gather-slot", buffers, lambda b: b.gather(torch.tensor([0]), torch.tensor([7])), ValueError,
     "slots", "7")  # fmt: skip
case("domain", "host-spec-n-actions-0", nothing, lambda _: hetplug.HostSpec(n_agents=2, max_steps=3, capacity=4, n_actions=0),
     ValueError, "n_actions", "n_actions=0")  # fmt: skip
case("domain", "host-spec-capacity-0", nothing, lambda _: hetplug.HostSpec(n_agents=2, max_steps=3, capacity=0),
     ValueError, "capacity", "capacity=0")  # fmt: skip
case("domain", "host-spec-int-dtype", nothing, lambda _: hetplug.HostSpec(n_agents=2, max_steps=3, capacity=4, dtype=torch.int64),
     ValueError, "dtype", "torch.int64")  # fmt: skip
case("domain", "shppo-host-gamma", lambda: hetplug.get_plugin_manager(["shppo"]),
     lambda pm: pm.hook.hetplug_configure.call_historic(kwargs={"spec": dataclasses.replace(SPEC, extra={"gamma": 1.5})}),
     ValueError, "gamma", "1.5")  # fmt: skip

# ---------------------------------------------------------------------- class: type (values and options)
config_cases = [
    (SamplerConfig, {"alpha": "0.6"}, TypeError, "alpha", "'0.6'"),
    (SamplerConfig, {"beta_steps": 2.0}, TypeError, "beta_steps", "2.0"),
    (SamplerConfig, {"check_inputs": "false"}, TypeError, "check_inputs", "'false'"),
    (SamplerConfig, {"weight_normalization": 1}, TypeError, "weight_normalization", "1"),
    (SamplerConfig, {"fanout": True}, TypeError, "fanout", "True"),
    (PERConfig, {"eps": "small"}, TypeError, "eps", "'small'"),
    (PERConfig, {"priority_exponent": None}, TypeError, "priority_exponent", "None"),
    (PERConfig, {"is_beta_steps": "10"}, TypeError, "is_beta_steps", "'10'"),
    (SHEPConfig, {"grid_shape": "8x8"}, TypeError, "grid_shape", "'8x8'"),
    (
        SHEPConfig,
        {"grid_shape": "big"},
        TypeError,
        "grid_shape must be a list of integers",
        "grid_shape='big'",
    ),
    (SHEPConfig, {"grid_shape": 8}, TypeError, "grid_shape", "grid_shape=8"),
    (SHEPConfig, {"grid_shape": [8, 8.0]}, TypeError, "grid_shape", "8.0"),
    (SHEPConfig, {"grid_shape": [8, 0]}, ValueError, "grid_shape", "[8, 0]"),
    (SHEPConfig, {"grid_low": "44"}, TypeError, "grid_low", "'44'"),
    (SHEPConfig, {"grid_low": [0, 0, 0]}, ValueError, "grid_low", "[0, 0, 0]"),
    (SHEPConfig, {"grid_high": [-2, 1]}, ValueError, "grid_high", "(-2.0, 1.0)"),
    (SHEPConfig, {"group_her": "false"}, TypeError, "group_her", "'false'"),
    (SHEPConfig, {"intrinsic_reward": "yes"}, TypeError, "intrinsic_reward", "'yes'"),
    (SHEPConfig, {"normalize_entropies": 1}, TypeError, "normalize_entropies", "1"),
    (SHEPConfig, {"delta_window": True}, TypeError, "delta_window", "True"),
    (SHEPConfig, {"intrinsic_delta_coef": "0.1,0"}, TypeError, "intrinsic_delta_coef", "'0.1,0'"),
    (SHEPConfig, {"intrinsic_moran_coef": [0.1]}, ValueError, "intrinsic_moran_coef", "[0.1]"),
    (SHEPConfig, {"action_low": "-1"}, TypeError, "action_low", "'-1'"),
    (SHEPConfig, {"her_min_length": 2.5}, TypeError, "her_min_length", "2.5"),
    (SHEPConfig, {"priority_form": "max"}, ValueError, "priority_form", "'max'"),
    (LBSConfig, {"budget": "4"}, TypeError, "budget", "'4'"),
    (LBSConfig, {"importance_correction": "yes"}, TypeError, "importance_correction", "'yes'"),
    (LBSConfig, {"p1": 1}, TypeError, "p1", "1"),
    (LBSConfig, {"check_inputs": 0}, TypeError, "check_inputs", "0"),
    (CVAEConfig, {"hidden": 32.0}, TypeError, "hidden", "32.0"),
    (CVAEConfig, {"lr": "3e-4"}, TypeError, "lr", "'3e-4'"),
    (SharingConfig, {"interval": 2.5}, TypeError, "interval", "2.5"),
    (SharingConfig, {"preference": [1]}, TypeError, "preference", "[1]"),
    (SharingConfig, {"preference": "mean"}, ValueError, "preference", "'mean'"),
    (SharingConfig, {"start": "half"}, ValueError, "start", "'half'"),
    (HetDPSConfig, {"cvae": "big"}, TypeError, "cvae", "'big'"),
    (HetDPSConfig, {"cvae": {"hidden": "32"}}, TypeError, "hidden", "'32'"),
    (HetDPSConfig, {"grouping_distance": 3}, TypeError, "grouping_distance", "3"),
    (HetDPSConfig, {"grouping_distance": {"meta": "1"}}, TypeError, "grouping_distance['meta']", "'1'"),
    (HetDPSConfig, {"reward_repeat": "2"}, ValueError, "reward_repeat", "'2'"),
    (HetDPSConfig, {"seed": -1}, ValueError, "seed", "-1"),
    (SHPPOConfig, {"zero_latents": "false"}, TypeError, "zero_latents", "'false'"),
    (SHPPOConfig, {"latent_dim": "3"}, TypeError, "latent_dim", "'3'"),
    (SHPPOConfig, {"pooling": 2}, TypeError, "pooling", "2"),
    (SHPPOConfig, {"gamma": 1.5}, ValueError, "gamma", "1.5"),
    (SHPPOConfig, {"check_inputs": "no"}, TypeError, "check_inputs", "'no'"),
]
for cls, kwargs, error, *says in config_cases:
    key = next(iter(kwargs))
    case(
        "type",
        f"{cls.__name__}-{key}-{kwargs[key]!r}",
        nothing,
        lambda _, cls=cls, kw=kwargs: cls(**kw),
        error,
        *says,
    )

parse_cases = [
    ({"plugins": ["shep"], "shep": {"group_her": "yes"}}, TypeError, "hetplug.shep", "group_her", "'yes'"),
    ({"plugins": ["shep"], "shep": {"grid_shape": "8x8"}}, TypeError, "hetplug.shep", "grid_shape", "'8x8'"),
    (
        {"plugins": ["per"], "per": {"priority_exponent": "high"}},
        TypeError,
        "hetplug.per",
        "priority_exponent",
        "'high'",
    ),
    ({"plugins": ["per"], "replay_window": "2"}, TypeError, "hetplug.replay_window", "'2'"),
    ({"plugins": ["per"], "replay_window": True}, TypeError, "hetplug.replay_window", "True"),
    ({"plugins": ["shep"], "positions": {"slice": "0:2"}}, TypeError, "hetplug.positions.slice", "'0:2'"),
    ({"plugins": ["shep"], "positions": {"slice": [2, 0]}}, ValueError, "hetplug.positions.slice", "[2, 0]"),
    ({"plugins": ["shep"], "positions": {"agent": "0"}}, TypeError, "hetplug.positions.agent", "'0'"),
    ({"plugins": ["shep"], "positions": {"extractor": 3}}, TypeError, "hetplug.positions.extractor", "3"),
    ({"plugins": ["shep"], "positions": "obs"}, TypeError, "hetplug.positions", "'obs'"),
    ({"plugins": 42}, TypeError, "hetplug.plugins", "42"),
    ({"plugins": [""]}, ValueError, "hetplug.plugins", "['']"),
    ({"plugins": ["hetdps"], "hetdps": {"interval": "10"}}, TypeError, "hetplug.hetdps", "interval", "'10'"),
    ({"plugins": ["shppo"], "shppo": {"latent_dim": 2.0}}, TypeError, "hetplug.shppo", "latent_dim", "2.0"),
    ({"plugins": ["lbs"], "lbs": {"budget": -1}}, ValueError, "hetplug.lbs", "budget", "-1"),
]
for value, error, *says in parse_cases:
    case(
        "type",
        f"parse-config-{says[-2]}-{says[-1]}",
        nothing,
        lambda _, v=value: hetplug.parse_config(v),
        error,
        *says,
    )

host_spec_cases = [
    ({"n_agents": "4"}, TypeError, "n_agents", "'4'"),
    ({"n_agents": True}, TypeError, "n_agents", "True"),
    ({"capacity": 8.0}, TypeError, "capacity", "8.0"),
    ({"max_steps": None}, TypeError, "max_steps", "None"),
    ({"device": "gpu"}, ValueError, "device", "'gpu'"),
    ({"device": 0}, TypeError, "device", "0"),
    ({"dtype": "float32"}, TypeError, "dtype", "'float32'"),
    ({"rollout_storage": "false"}, TypeError, "rollout_storage", "'false'"),
    ({"extra": [("gamma", 0.9)]}, TypeError, "extra", "[('gamma', 0.9)]"),
    ({"n_actions": True}, TypeError, "n_actions", "True"),
    ({"total_env_steps": 1e6}, TypeError, "total_env_steps", "1000000.0"),
]
for kwargs, error, *says in host_spec_cases:
    key = next(iter(kwargs))
    case("type", f"host-spec-{key}-{kwargs[key]!r}", nothing,
         lambda _, kw=kwargs: hetplug.HostSpec(**{"n_agents": 2, "max_steps": 3, "capacity": 4, **kw}), error, *says)  # fmt: skip
if NO_CUDA:
    case("type", "host-spec-cuda-without-cuda", nothing,
         lambda _: hetplug.HostSpec(n_agents=2, max_steps=3, capacity=4, device="cuda"), ValueError, "device", "'cuda'", "no CUDA")  # fmt: skip
    case("type", "sampler-cuda-without-cuda", nothing, lambda _: PrioritizedSampler(4, device="cuda:0"), ValueError,
         "device", "'cuda:0'")  # fmt: skip

batch_cases = [
    ({"reward": [[0.0] * T] * 4}, TypeError, "reward", "list"),
    ({"reward": torch.zeros(4, T, dtype=torch.long)}, TypeError, "reward", "torch.int64"),
    ({"actions": torch.zeros(4, T, N, dtype=torch.bool)}, TypeError, "actions", "torch.bool"),
    (
        {"positions": torch.zeros(4, T, N, 2, dtype=torch.complex64)},
        TypeError,
        "positions",
        "torch.complex64",
    ),
    ({"extra": [1]}, TypeError, "extra", "[1]"),
    ({"extra": {"x": [1]}}, TypeError, "extra['x']", "list"),
    ({"extra": {1: torch.zeros(4, T)}}, TypeError, "extra", "1"),
    ({"success": torch.ones(5, dtype=torch.bool)}, ValueError, "success", "(5,)"),
]
for kwargs, error, *says in batch_cases:
    key = next(iter(kwargs))
    case("type", f"batch-{key}-{says[-1]}", nothing, lambda _, kw=kwargs: batch(**kw), error, *says)

component_type_cases = [
    ("sampler-capacity-string", nothing, lambda _: PrioritizedSampler("8"), TypeError, "capacity", "'8'"),
    ("sampler-capacity-float", nothing, lambda _: PrioritizedSampler(8.0), TypeError, "capacity", "8.0"),
    ("sampler-device-garbage", nothing, lambda _: PrioritizedSampler(8, device="gpu0"), ValueError, "device", "'gpu0'"),
    ("sampler-batch-size-float", sampler, lambda s: s.sample(2.0), TypeError, "batch_size", "2.0"),
    ("sampler-batch-size-bool", sampler, lambda s: s.sample(True), TypeError, "batch_size", "True"),
    ("sampler-string-generator", sampler, lambda s: s.sample(2, "seed"), TypeError, "generator", "'seed'"),
    ("sampler-replacement-string", sampler, lambda s: s.sample(2, replacement="no"), TypeError, "replacement", "'no'"),
    ("sampler-float-indices", sampler, lambda s: s.update(torch.tensor([1.0]), torch.ones(1)), TypeError, "indices", "torch.float32"),
    ("sampler-bool-indices", sampler, lambda s: s.update(torch.tensor([True]), torch.ones(1)), TypeError, "indices", "torch.bool"),
    ("sampler-list-priorities", sampler, lambda s: s.add([1.0]), TypeError, "priorities", "[1.0]"),
    ("sampler-bool-priorities", sampler, lambda s: s.add(torch.tensor([True])), TypeError, "priorities", "torch.bool"),
    ("sampler-count-string", sampler, lambda s: s.add(count="3"), TypeError, "count", "'3'"),
    ("grid-shape-string", nothing, lambda _: GridCells((0, 0), (1, 1), "8x8"), TypeError, "shape", "'8x8'"),
    ("grid-low-string", nothing, lambda _: GridCells("44", (1, 1), (4, 4)), TypeError, "low", "'44'"),
    ("grid-device", nothing, lambda _: GridCells((0, 0), (1, 1), (4, 4), device="tpu"), ValueError, "device", "'tpu'"),
    ("grid-bool-positions", grid, lambda g: g.assign(torch.zeros(2, 2, dtype=torch.bool)), TypeError, "positions", "torch.bool"),
    ("grid-list-positions", grid, lambda g: g.assign([[0.0, 0.0]]), TypeError, "positions", "list"),
    ("moran-weights-string", nothing, lambda _: morans_i(torch.rand(16), "rook"), TypeError, "weights", "str"),
    ("moran-transformation", nothing, lambda _: morans_i(torch.rand(16), grid(), "row"), ValueError, "transformation", "'row'"),
    ("entropy-int-density", nothing, lambda _: occupancy_entropy(torch.ones(3, dtype=torch.long)), TypeError, "density", "torch.int64"),
    ("action-entropy-float-actions", nothing, lambda _: action_diversity_entropy(torch.rand(2, 3), 4), TypeError, "actions", "torch.float32"),
    ("action-entropy-n-actions-string", nothing, lambda _: action_diversity_entropy(torch.zeros(2, 3, dtype=torch.long), "4"),
     TypeError, "n_actions", "'4'"),
    ("bin-actions-bins-float", nothing, lambda _: bin_actions(torch.zeros(1, 1), [-1.0], [1.0], 2.5), TypeError, "bins", "2.5"),
    ("describe-cells-string", nothing, lambda _: describe("grid", torch.zeros(1, 2, 2)), TypeError, "cells", "str"),
    ("latent-net-complex-obs", lambda: LatentNet(OBS), lambda net: net(torch.zeros(2, N, OBS, dtype=torch.complex64)),
     TypeError, "obs", "torch.complex64"),
    ("latent-net-list-obs", lambda: LatentNet(OBS), lambda net: net([[0.0] * OBS]), TypeError, "obs", "list"),
    ("latent-net-obs-features", lambda: LatentNet(OBS), lambda net: net(torch.zeros(2, N, OBS + 1)), ValueError, "obs",
     f"{OBS} features", f"(2, {N}, {OBS + 1})"),
    ("actor-complex-obs", lambda: SHPPOActor(OBS, A, hidden=8), lambda a: a(torch.zeros(1, N, OBS, dtype=torch.complex64), torch.zeros(1, N, 3)),
     TypeError, "obs", "torch.complex64"),
    ("actor-hete-position-string", nothing, lambda _: SHPPOActor(OBS, A, hete_position="middle"), ValueError, "hete_position", "'middle'"),
    ("actor-hete-position-float", nothing, lambda _: SHPPOActor(OBS, A, hete_position=1.0), TypeError, "hete_position", "1.0"),
    ("actor-rnn-string", nothing, lambda _: SHPPOActor(OBS, A, rnn="yes"), TypeError, "rnn", "'yes'"),
    ("hete-layer-latent-list", lambda: HeteLayer(4, 2), lambda h: h(torch.zeros(1, 4), [[0.0, 0.0, 0.0]]), TypeError, "latent", "list"),
    ("inference-pooling", nothing, lambda _: InferenceNet(4, pooling="max"), ValueError, "pooling", "'max'"),
    ("inference-n-agents-string", nothing, lambda _: InferenceNet(4, n_agents="3"), TypeError, "n_agents", "'3'"),
    ("estimator-mode", nothing, lambda _: DistanceEstimator(N, 3, 2, mode=1), TypeError, "mode", "1"),
    ("estimator-device", nothing, lambda _: DistanceEstimator(N, 3, 2, device="gpu"), ValueError, "device", "'gpu'"),
    ("estimator-seed-float", nothing, lambda _: DistanceEstimator(N, 3, 2, seed=1.5), TypeError, "seed", "1.5"),
    ("pool-capacity-string", nothing, lambda _: SamplePool("10", N, 3, 2), TypeError, "capacity", "'10'"),
    ("pool-bool-x", pool, lambda p: p.add(torch.zeros(2, N, 3, dtype=torch.bool), torch.zeros(2, N, 2)), TypeError, "x", "torch.bool"),
    ("buffers-float-sources", buffers, lambda b: b.gather(torch.tensor([0.0]), torch.tensor([0])), TypeError, "sources", "torch.float32"),
    ("buffers-transitions-list", buffers, lambda b: b.add([torch.zeros(1, N, OBS)]), TypeError, "transitions", "list"),
    ("buffers-check-inputs", nothing, lambda _: AgentBuffers(N, CAP, check_inputs="yes"), TypeError, "check_inputs", "'yes'"),
    ("lbs-sharing-td-fn-string", sharing, lambda s: s.sample(2, "td"), TypeError, "td_fn", "'td'"),
    ("lbs-sharing-count-float", sharing, lambda s: s.add(2.0), TypeError, "count", "2.0"),
    ("lbs-sharing-device", nothing, lambda _: LargeBatchSharing(N, CAP, device="cuda:x"), ValueError, "device", "'cuda:x'"),
    ("large-batch-size-float", nothing, lambda _: large_batch_select(torch.ones(3), 2.0), TypeError, "batch_size", "2.0"),
    ("large-batch-float-mask", nothing, lambda _: large_batch_select(torch.ones(3), 2, mask=torch.ones(3)), TypeError, "mask", "torch.float32"),
    ("manager-distance-string", manager, lambda m: m.update("far"), TypeError, "distance", "'far'"),
    ("manager-due-string", manager, lambda m: m.due("3"), TypeError, "update", "'3'"),
    ("slots-int-params", nothing, lambda _: ParameterSlots([torch.zeros(3, 2, dtype=torch.long)]), TypeError, "params[0]", "torch.int64"),
    ("slots-int32-routing", nothing, lambda _: ParameterSlots([torch.zeros(3, 2)], routing=torch.zeros(2, dtype=torch.int32)),
     TypeError, "routing[0]", "torch.int32"),
    ("slots-optimizer-string", nothing, lambda _: ParameterSlots([torch.zeros(3, 2)], optimizers=["adam"]), TypeError, "optimizers[0]", "'adam'"),
    ("plugin-manager-plugins-int", nothing, lambda _: hetplug.get_plugin_manager(42), TypeError, "plugins", "42"),
    ("plugin-manager-plugins-none", nothing, lambda _: hetplug.get_plugin_manager([None]), TypeError, "plugins", "[None]"),
    ("plugin-manager-options-list", nothing, lambda _: hetplug.get_plugin_manager(["per"], [("per", {})]), TypeError, "options"),
    ("plugin-manager-options-not-mapping", nothing, lambda _: hetplug.get_plugin_manager(["per"], {"per": "fast"}), TypeError,
     "per", "'fast'"),
]  # fmt: skip
for id, build, call, error, *says in component_type_cases:
    case("type", id, build, call, error, *says)

# ---------------------------------------------------------------------- class: plan
plan_cases = [
    ("op-kind", lambda _: SlotOp("swap", 1, (0,), (1.0,)), ValueError, "kind", "'swap'"),
    ("op-negative-dst", lambda _: SlotOp("copy", -1, (0,), (1.0,)), ValueError, "dst", "-1"),
    ("op-dst-string", lambda _: SlotOp("copy", "1", (0,), (1.0,)), TypeError, "dst", "'1'"),
    ("op-no-source", lambda _: SlotOp("merge", 1, (), ()), ValueError, "weights", "()"),
    ("op-negative-source", lambda _: SlotOp("copy", 1, (-2,), (1.0,)), ValueError, "sources", "-2"),
    ("op-float-source", lambda _: SlotOp("copy", 1, (0.0,), (1.0,)), TypeError, "sources", "0.0"),
    ("op-nan-weight", lambda _: SlotOp("merge", 2, (0, 1), (NAN, 0.5)), ValueError, "weights", "nan"),
    ("op-weights-not-summing-to-1", lambda _: SlotOp("merge", 2, (0, 1), (0.3, 0.3)), ValueError, "sum to 1", "(0.3, 0.3)"),
    ("op-negative-weight", lambda _: SlotOp("merge", 2, (0, 1), (1.5, -0.5)), ValueError, "weights", "-0.5"),
    ("op-weight-string", lambda _: SlotOp("merge", 2, (0, 1), ("0.5", 0.5)), TypeError, "weights", "'0.5'"),
    ("op-copy-two-sources", lambda _: SlotOp("copy", 2, (0, 1), (0.5, 0.5)), ValueError, "sources", "(0, 1)"),
    ("op-repeated-source", lambda _: SlotOp("merge", 2, (1, 1), (0.5, 0.5)), ValueError, "sources", "(1, 1)"),
    ("plan-assignment-out-of-range", lambda _: plan(assignment=(0, 5, 1)), ValueError, "assignment", "(0, 5, 1)"),
    ("plan-negative-assignment", lambda _: plan(assignment=(0, -1, 1)), ValueError, "assignment", "-1"),
    ("plan-copy-to-nonexistent-slot", lambda _: plan(operations=(SlotOp("copy", 7, (0,), (1.0,)),)), ValueError, "slot=7", "n_slots=3"),
    ("plan-copy-from-nonexistent-slot", lambda _: plan(operations=(SlotOp("copy", 1, (9,), (1.0,)),)), ValueError, "slot=9"),
    ("plan-two-writes-to-a-slot", lambda _: plan(operations=(SlotOp("copy", 1, (0,), (1.0,)), SlotOp("copy", 1, (2,), (1.0,)))),
     ValueError, "slot=1", "twice"),
    ("plan-agent-counts-differ", lambda _: plan(previous=(0, 0)), ValueError, "previous", "(0, 0)"),
    ("plan-n-slots-0", lambda _: plan(n_slots=0), ValueError, "n_slots", "0"),
    ("plan-case", lambda _: plan(case="grow"), ValueError, "case", "'grow'"),
    ("plan-operation-dict", lambda _: plan(operations=({"dst": 1},)), TypeError, "operation", "{'dst': 1}"),
    ("plan-assignment-string", lambda _: plan(assignment="011"), TypeError, "assignment", "'011'"),
]  # fmt: skip
for id, call, error, *says in plan_cases:
    case("plan", id, nothing, call, error, *says)


def slots():
    return slot_parts()[2]


def edited(**changes):
    """A valid plan edited after it was built (bypassing its checks)."""
    p = plan()
    for key, value in changes.items():
        object.__setattr__(p, key, value)
    return p


def bad_weights_op():
    op = SlotOp("merge", 1, (0, 2), (0.5, 0.5))
    object.__setattr__(op, "weights", (NAN, 0.5))
    return op


apply_cases = [
    ("apply-plan-of-other-n-slots", lambda s: s.apply(dataclasses.replace(plan(), n_slots=4)), ValueError, "plan.n_slots", "4"),
    ("apply-plan-for-other-agent-count", lambda s: s.apply(plan(assignment=(0, 1), previous=(0, 0), labels=(0, 1))),
     ValueError, "plan.assignment", "[0, 1]"),
    ("apply-edited-to-nonexistent-slot", lambda s: s.apply(edited(operations=(SlotOp("copy", 1, (0,), (1.0,)), _raw_op(dst=5)))),
     ValueError, "slot=5"),
    ("apply-edited-nan-weights", lambda s: s.apply(edited(operations=(bad_weights_op(),))), ValueError, "weights", "nan"),
    ("apply-edited-assignment", lambda s: s.apply(edited(assignment=(0, 3, 1))), ValueError, "assignment", "(0, 3, 1)"),
    ("apply-a-dict", lambda s: s.apply({"assignment": [0, 1, 1]}), TypeError, "plan", "'assignment'"),
]  # fmt: skip


def _raw_op(dst):
    op = SlotOp("copy", 2, (0,), (1.0,))
    object.__setattr__(op, "dst", dst)
    return op


for id, call, error, *says in apply_cases:
    case("plan", id, slots, call, error, *says)
case("plan", "hetdps-bind-slots-of-other-size", hetdps_pm,
     lambda pm: pm.get_plugin("hetdps").bind(ParameterSlots([torch.nn.Parameter(torch.zeros(N + 2, 2))])),
     ValueError, "slots.n_slots", f"n_slots={N}", f"={N + 2}")  # fmt: skip
case("plan", "hetdps-bind-not-slots", hetdps_pm, lambda pm: pm.get_plugin("hetdps").bind([torch.zeros(3)]), TypeError,
     "slots", "list")  # fmt: skip

# ---------------------------------------------------------------------- class: hook
case("hook", "historic-hook-called-directly", lambda: hetplug.get_plugin_manager(["per"]),
     lambda pm: pm.hook.hetplug_configure(spec=SPEC), TypeError, "hetplug_configure", "call_historic")  # fmt: skip
for name, build, spec in (("per", per_pm, SPEC), ("shep", shep_pm, SPEC), ("lbs", lbs_pm, LBS_SPEC),
                          ("hetdps", hetdps_pm, SPEC), ("shppo", shppo_pm, SPEC)):  # fmt: skip
    case("hook", f"{name}-configure-twice-other-capacity", build,
         lambda pm, name=name, spec=spec: pm.get_plugin(name).hetplug_configure(dataclasses.replace(spec, capacity=99)),
         ValueError, "capacity", f"capacity={spec.capacity}", "capacity=99", "get_plugin_manager")  # fmt: skip
    case("hook", f"{name}-configure-with-a-dict", lambda name=name: hetplug.get_plugin_manager([name]),
         lambda pm: pm.hook.hetplug_configure.call_historic(kwargs={"spec": {"n_agents": 3, "capacity": 8}}),
         TypeError, "spec", "hetplug.HostSpec", "'capacity': 8")  # fmt: skip
    case("hook", f"{name}-configure-again-same-spec", build,
         lambda pm, name=name, spec=spec: pm.get_plugin(name).hetplug_configure(spec), None, then=none)  # fmt: skip
    for bad in ("3", 3.0, True):
        hook = "auxiliary_losses" if name == "shppo" else "after_update"
        kwargs = {"batch": batch()} if name == "shppo" else {}
        case("hook", f"{name}-{hook}-update-{bad!r}", build,
             lambda pm, hook=hook, bad=bad, kw=kwargs: getattr(pm.hook, f"hetplug_{hook}")(update=bad, **kw),
             TypeError, "update", f"update={bad!r}")  # fmt: skip
    case("hook", f"{name}-update-negative", build,
         lambda pm, name=name: (pm.hook.hetplug_auxiliary_losses(batch=batch(), update=-1) if name == "shppo"
                                else pm.hook.hetplug_after_update(update=-1)),
         ValueError, "update", "update=-1")  # fmt: skip

unconfigured = [
    ("per", "replay_add", {"batch": batch()}),
    ("per", "replay_sample", {"batch_size": 2, "generator": None, "td_fn": None}),
    ("per", "update_priorities", {"indices": torch.tensor([0]), "td_error": torch.ones(1, T), "mask": None}),
    ("per", "after_update", {"update": 1}),
    ("per", "trajectories_collected", {"batch": batch()}),
    ("shep", "trajectories_collected", {"batch": batch()}),
    ("shep", "replay_add", {"batch": batch()}),
    ("shep", "replay_sample", {"batch_size": 2, "generator": None, "td_fn": None}),
    ("lbs", "replay_add", {"batch": batch(t=1)}),
    ("lbs", "replay_sample", {"batch_size": 2, "generator": None, "td_fn": td_fn}),
    ("hetdps", "trajectories_collected", {"batch": batch()}),
    ("hetdps", "after_update", {"update": 1}),
]
for name, hook, kwargs in unconfigured:
    case("hook", f"{name}-{hook}-before-configure", lambda name=name: hetplug.get_plugin_manager([name]),
         lambda pm, hook=hook, kw=kwargs: getattr(pm.hook, f"hetplug_{hook}")(**kw),
         RuntimeError, f"the {name} plugin is not configured", "call_historic")  # fmt: skip
for name in ("per", "shep", "lbs", "hetdps"):
    case("hook", f"{name}-state-dict-before-configure", lambda name=name: hetplug.get_plugin_manager([name]),
         lambda pm, name=name: pm.get_plugin(name).load_state_dict({}), RuntimeError, "not configured", "call_historic")  # fmt: skip
case("hook", "shppo-auxiliary-before-bind", lambda: configured("shppo"),
     lambda pm: pm.hook.hetplug_auxiliary_losses(batch=batch(), update=1), RuntimeError, "no LatentNet", "bind(latent_net)")  # fmt: skip
case("hook", "shppo-load-before-bind", lambda: configured("shppo"),
     lambda pm: pm.get_plugin("shppo").load_state_dict(shppo_pm(1).get_plugin("shppo").state_dict()),
     RuntimeError, "bind the LatentNet")  # fmt: skip
case("hook", "shppo-bind-a-dict", lambda: configured("shppo"), lambda pm: pm.hook.hetplug_bind(host={"latent_net": None}),
     TypeError, "host", "hetplug.HostObjects")  # fmt: skip
case("hook", "shppo-bind-not-a-latent-net", lambda: configured("shppo"),
     lambda pm: pm.hook.hetplug_bind(host=hetplug.HostObjects(latent_net=torch.nn.Linear(2, 2))), TypeError, "latent_net", "Linear")  # fmt: skip
case("hook", "hetdps-bind-without-slots", lambda: configured("hetdps"),
     lambda pm: pm.hook.hetplug_bind(host=hetplug.HostObjects()), ValueError, "parameter_slots")  # fmt: skip
for name, build in (
    ("per", per_pm),
    ("shep", shep_pm),
    ("lbs", lbs_pm),
    ("hetdps", hetdps_pm),
    ("shppo", shppo_pm),
):
    hook = (
        "auxiliary_losses"
        if name == "shppo"
        else ("replay_add" if name != "hetdps" else "trajectories_collected")
    )
    kwargs = {"update": 1} if name == "shppo" else {}
    case("hook", f"{name}-{hook}-a-dict-batch", build,
         lambda pm, hook=hook, kw=kwargs: getattr(pm.hook, f"hetplug_{hook}")(batch={"reward": [0.0]}, **kw),
         TypeError, "batch", "hetplug.TrajectoryBatch", "dict")  # fmt: skip
for name, build in (("per", per_pm), ("shep", shep_pm), ("lbs", lbs_pm)):
    case("hook", f"{name}-sample-batch-size-string", build,
         lambda pm: pm.hook.hetplug_replay_sample(batch_size="4", generator=None, td_fn=td_fn), TypeError, "batch_size", "'4'")  # fmt: skip
    case("hook", f"{name}-sample-string-generator", build,
         lambda pm: pm.hook.hetplug_replay_sample(batch_size=2, generator="seed", td_fn=td_fn), TypeError, "generator", "'seed'")  # fmt: skip
for name, build in (("per", per_pm), ("shep", shep_pm)):
    case("hook", f"{name}-update-float-indices", build,
         lambda pm: pm.hook.hetplug_update_priorities(indices=torch.tensor([0.0]), td_error=torch.ones(1, T), mask=None),
         TypeError, "indices", "torch.float32")  # fmt: skip
    case("hook", f"{name}-update-td-list", build,
         lambda pm: pm.hook.hetplug_update_priorities(indices=torch.tensor([0]), td_error=[[1.0] * T], mask=None),
         TypeError, "td_error", "list")  # fmt: skip
case("hook", "hetdps-routing-before-configure", lambda: hetplug.get_plugin_manager(["hetdps"]),
     lambda pm: pm.get_plugin("hetdps").routing(), RuntimeError, "not configured")  # fmt: skip


# ---------------------------------------------------------------------- the test
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.kind}:{c.id}")
def test_bad_input_is_refused_clearly_and_changes_nothing(case: Case):
    target = case.build()
    before = deep_state(target)
    if case.error is None:  # documented behaviour, e.g. an empty batch is a no-op
        result = case.call(target)
        if case.then is not None:
            assert case.then(result) is not False, f"unexpected result {result!r:.200}"
    else:
        with pytest.raises(Exception) as err:
            case.call(target)
        assert type(err.value) is case.error, f"{type(err.value).__name__}: {err.value}"
        message = str(err.value)
        for fragment in case.says:
            assert fragment in message, f"{fragment!r} not in: {message}"
    assert_same(before, deep_state(target))


def test_the_table_covers_every_class_and_component():
    """Every class of the issue, and every public component and hook, has cases."""
    counts = {kind: sum(c.kind == kind for c in CASES) for kind in CLASSES}
    assert all(n >= 10 for n in counts.values()), counts
    ids = " ".join(c.id for c in CASES)
    for name in ("sampler", "per", "shep", "lbs", "large-batch", "agent-buffers", "pool", "estimator", "manager",
                 "hetdps", "shppo", "plan", "apply", "grid", "entropy", "moran", "describe", "w2", "latent-net",
                 "actor", "inference", "host-spec", "batch", "parse-config", "plugin-state", "historic"):  # fmt: skip
        assert name in ids, name
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


def test_documented_behaviour_of_odd_values():
    """What is accepted on purpose: positions outside the grid fall into its border cells;
    integer, bool, half or double observations are cast by SHPPO's networks; a batch
    whose mask is all false is stored (with the smallest priority) and never crashes."""
    cells = grid()
    assert cells.assign(torch.tensor([[5.0, -7.0], [0.9, 0.9]])).tolist() == [12, 15]
    net = LatentNet(OBS, latent_dim=2)
    reference = net(torch.ones(2, N, OBS))
    for dtype in (torch.long, torch.bool, torch.float16, torch.float64):
        mu, sigma = net(torch.ones(2, N, OBS, dtype=dtype))
        assert mu.dtype == torch.float32 and torch.allclose(mu, reference[0], atol=1e-3)
    for name in ("per", "shep"):
        pm = prioritiser(name)
        b = batch(mask=torch.zeros(4, T, dtype=torch.bool))
        pm.hook.hetplug_trajectories_collected(batch=b)
        slots = pm.hook.hetplug_replay_add(batch=b)
        assert slots.shape == (4,)
        assert pm.hook.hetplug_replay_sample(batch_size=3, generator=None, td_fn=None).indices.shape == (3,)
    with pytest.raises(ValueError, match="every stored priority is zero"):
        pm = configured("shep", {"grid_shape": [4, 4]})
        pm.hook.hetplug_replay_add(batch=batch(mask=torch.zeros(4, T, dtype=torch.bool)))
        pm.hook.hetplug_replay_sample(batch_size=2, generator=None, td_fn=None)
    unchecked = GridCells((-1, -1), (1, 1), (4, 4)).assign(torch.tensor([[NAN, INF]]), check=False)
    assert 0 <= int(unchecked.min()) and int(unchecked.max()) < 16  # never an index out of range
