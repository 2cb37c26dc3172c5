"""Property-based tests (hypothesis) against simple references: the prioritised sampler
(sum and min trees, probabilities, IS weights, clipping) against brute-force proportional
sampling; the spatial descriptors (occupancy entropy, Moran's I) against direct double
loops, themselves checked against esda's numbers (../shared/oracles); sharing plans
against applying each copy and merge by hand. Examples are few and small (seconds)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from hetplug.replay import PrioritizedSampler
from hetplug.sharing import ParameterSlots, SharingPlan
from hetplug.sharing.plan import SlotOp
from hetplug.spatial import GridCells, morans_i, occupancy_entropy

from ..conftest import SHARED

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FAST = settings(max_examples=40, deadline=None, derandomize=True)
priority = st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False)


# ---------------------------------------------------------------------- the sampler
def reference_probabilities(p: list[float], alpha: float, cap: float | None) -> np.ndarray:
    """Brute force: p_i proportional to P_i^alpha; with a cap, clip the largest at the cap
    and share the rest again until nothing exceeds it (uniform over the positive items when
    the cap cannot be met)."""
    mass = np.array([x**alpha if x > 0 else (1.0 if alpha == 0 else 0.0) for x in p], dtype=np.float64)
    probs = mass / mass.sum()
    if cap is None:
        return probs
    positive = mass > 0
    if positive.sum() * cap < 1:
        return positive / positive.sum()
    clipped = np.zeros(len(p), dtype=bool)
    while True:
        free = ~clipped
        rest = 1.0 - cap * clipped.sum()
        probs = np.where(clipped, cap, mass * rest / mass[free].sum())
        over = free & (probs > cap * (1 + 1e-12))
        if not over.any():
            return probs
        clipped |= over


@st.composite
def sampler_runs(draw):
    capacity = draw(st.integers(1, 40))
    options = {
        "alpha": draw(st.sampled_from([0.0, 0.5, 0.6, 1.0, 2.0])),
        "fanout": draw(st.sampled_from([None, 2, 3, 4])),
        "flat_max": draw(st.sampled_from([0, 4, 16384])),  # 0 and 4: the tree walk
    }
    ops = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()) or not ops:
            n = draw(st.integers(1, capacity))
            ops.append(("add", draw(st.lists(priority, min_size=n, max_size=n))))
        else:
            n = draw(st.integers(1, 5))
            ops.append(
                ("update", draw(st.lists(st.tuples(st.integers(0, 10**6), priority), min_size=n, max_size=n)))
            )
    return capacity, options, ops


def replay(capacity, options, ops, **extra):
    """The sampler after ``ops``, and the brute-force priorities of its slots."""
    s = PrioritizedSampler(capacity, **options, **extra)
    stored: list[float] = []
    cursor = 0
    for op, values in ops:
        if op == "add":
            s.add(torch.tensor(values, dtype=torch.float64))
            for v in values:
                if len(stored) < capacity:
                    stored.append(v)
                else:
                    stored[cursor] = v
                cursor = (cursor + 1) % capacity
        else:
            idx = [i % len(stored) for i, _ in values]
            s.update(torch.tensor(idx), torch.tensor([v for _, v in values], dtype=torch.float64))
            for i, (_, v) in zip(idx, values, strict=True):
                stored[i] = v  # the last of repeated indices wins
    return s, stored


@FAST
@given(sampler_runs())
def test_sum_and_min_trees_match_brute_force(run):
    capacity, options, ops = run
    s, stored = replay(capacity, options, ops)
    alpha = options["alpha"]
    mass = [x**alpha for x in stored]
    assert len(s) == len(stored)
    assert torch.equal(s.priorities, torch.tensor(stored, dtype=torch.float64))
    assert float(s._sums[-1].sum()) == pytest.approx(sum(mass), rel=1e-9, abs=1e-12)
    positive = [m for m in mass if m > 0]
    assert float(s._mins[-1].amin()) == (pytest.approx(min(positive), rel=1e-12) if positive else math.inf)
    if sum(mass) > 0:
        want = reference_probabilities(stored, alpha, None)
        assert np.allclose(s.probabilities().numpy(), want, rtol=1e-9, atol=1e-12)


@FAST
@given(sampler_runs(), st.integers(1, 16), st.sampled_from(["max", "batch", "none"]), st.floats(0.0, 1.0))
def test_draws_report_the_brute_force_probabilities_and_weights(run, batch, normalization, beta):
    capacity, options, ops = run
    s, stored = replay(capacity, options, ops, weight_normalization=normalization, beta=beta, beta_final=beta)
    probs = reference_probabilities(stored, options["alpha"], None)
    if not np.isfinite(probs).all() or probs.sum() == 0:
        return  # every priority zero: refused (tested elsewhere)
    out = s.sample(batch, torch.Generator().manual_seed(0))
    idx = out.indices.numpy()
    assert (probs[idx] > 0).all(), "an item without mass was drawn"
    assert np.allclose(out.probabilities.numpy(), probs[idx], rtol=1e-9)
    raw = (len(stored) * probs[idx]) ** -beta
    if normalization == "max":
        raw = raw / (len(stored) * probs[probs > 0].min()) ** -beta
    elif normalization == "batch":
        raw = raw / raw.max()
    assert np.allclose(out.weights.numpy(), raw, rtol=1e-9)


@FAST
@given(st.lists(priority, min_size=1, max_size=30), st.floats(0.01, 1.0), st.sampled_from([0.6, 1.0]))
def test_clipped_probabilities_match_water_filling(values, cap, alpha):
    s = PrioritizedSampler(len(values), alpha=alpha, max_probability=cap)
    s.add(torch.tensor(values, dtype=torch.float64))
    if sum(values) == 0:
        return
    got = s.probabilities().numpy()
    assert np.allclose(got, reference_probabilities(values, alpha, cap), atol=1e-9)
    assert got.sum() == pytest.approx(1.0)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.lists(st.floats(1e-6, 10.0), min_size=2, max_size=6), st.integers(0, 3))
def test_draw_frequencies_follow_the_probabilities(values, fanout_choice):
    """Proportional sampling, measured: frequencies over many draws match p_i (priorities
    away from the subnormals, where 5e-324 + 5e-324 has no meaningful ratio)."""
    s = PrioritizedSampler(len(values), alpha=1.0, fanout=[None, 2, 3, 4][fanout_choice], flat_max=0)
    s.add(torch.tensor(values, dtype=torch.float64))
    draws = s.sample(20000, torch.Generator().manual_seed(1)).indices
    freq = torch.bincount(draws, minlength=len(values)).double() / draws.numel()
    assert np.allclose(freq.numpy(), reference_probabilities(values, 1.0, None), atol=0.02)


# ---------------------------------------------------------------------- descriptors
def brute_weights(shape: tuple[int, ...], contiguity: str) -> np.ndarray:
    """Rook or queen adjacency of a grid, by a double loop over its cells."""
    cells = list(np.ndindex(*shape))
    w = np.zeros((len(cells), len(cells)))
    for i, a in enumerate(cells):
        for j, b in enumerate(cells):
            steps = [abs(x - y) for x, y in zip(a, b, strict=True)]
            if i != j and max(steps) == 1 and (contiguity == "queen" or sum(steps) == 1):
                w[i, j] = 1.0
    return w


def brute_moran(y: np.ndarray, w: np.ndarray, transformation: str) -> float:
    """Eq. (2) by a double loop: I = M / S0 * sum_ij w_ij z_i z_j / sum_i z_i^2 (0 for a
    constant field, as hetplug defines esda's NaN)."""
    if transformation == "r":
        rows = w.sum(1, keepdims=True)
        w = np.divide(w, rows, out=np.zeros_like(w), where=rows > 0)
    m = len(y)
    z = y - y.mean()
    den = sum(z[i] * z[i] for i in range(m))
    if den <= 1e-20 * max(1.0, np.abs(y).max()) ** 2:
        return 0.0
    num = sum(w[i, j] * z[i] * z[j] for i in range(m) for j in range(m))
    return m / w.sum() * num / den


def test_the_brute_force_moran_matches_esda():
    """The double loop reproduces every esda value of ../shared/oracles/moran_esda_3x3.txt."""
    text = (SHARED / "oracles" / "moran_esda_3x3.txt").read_text()
    checked = 0
    for block in re.split(r"\n== ", text)[1:]:
        head = re.match(r"3x3 grid, (\w+) contiguity, transform='(\w)'", block)
        if head is None:
            continue
        w = brute_weights((3, 3), head.group(1))
        for y, value in re.findall(r"y=(\[[^\]]*\])\s+I=np\.float64\(([-\d.e]+)\)", block):
            assert brute_moran(np.array(eval(y), dtype=float), w, head.group(2)) == pytest.approx(
                float(value)
            )
            checked += 1
    assert checked >= 20


@FAST
@given(
    st.tuples(st.integers(1, 4), st.integers(1, 4)),
    st.sampled_from(["rook", "queen"]),
    st.sampled_from(["r", "b"]),
    st.data(),
)
def test_morans_i_matches_the_double_loop(shape, contiguity, transformation, data):
    m = shape[0] * shape[1]
    y = np.array(data.draw(st.lists(st.floats(-5, 5, allow_nan=False), min_size=m, max_size=m)))
    w = brute_weights(shape, contiguity)
    if w.sum() == 0:
        return  # a single cell has no neighbours: I is 0 (tested in test_spatial)
    cells = GridCells((0, 0), (1, 1), shape, contiguity=contiguity)
    got = float(morans_i(torch.tensor(y, dtype=torch.float64), cells, transformation))
    want = brute_moran(y, w, transformation)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    sparse = float(morans_i(torch.tensor(y, dtype=torch.float64), torch.tensor(w), transformation))
    assert sparse == pytest.approx(want, rel=1e-9, abs=1e-9)  # the sparse path, same value


@FAST
@given(
    st.tuples(st.integers(1, 5), st.integers(1, 5)),
    st.lists(st.tuples(st.floats(-1.5, 1.5), st.floats(-1.5, 1.5)), min_size=1, max_size=12),
)
def test_density_and_occupancy_entropy_match_counting(shape, positions):
    cells = GridCells((-1, -1), (1, 1), shape)
    density = cells.density(torch.tensor(positions, dtype=torch.float64))
    counts = np.zeros(shape)
    for x, y in positions:  # each agent's cell, clamped to the border cells
        i = min(max(int(math.floor((x + 1) / 2 * shape[0])), 0), shape[0] - 1)
        j = min(max(int(math.floor((y + 1) / 2 * shape[1])), 0), shape[1] - 1)
        counts[i, j] += 1
    p = counts.reshape(-1) / len(positions)
    assert np.allclose(density.numpy(), p)
    h = -sum(q * math.log(q) for q in p if q > 0)
    assert float(occupancy_entropy(density)) == pytest.approx(h, abs=1e-12)
    assert float(occupancy_entropy(density, normalize=True)) == pytest.approx(
        h / math.log(len(p)) if len(p) > 1 else 0.0, abs=1e-12
    )


# ---------------------------------------------------------------------- sharing plans
@st.composite
def plans(draw):
    n_slots = draw(st.integers(1, 5))
    n_agents = draw(st.integers(1, 6))
    dsts = draw(st.lists(st.integers(0, n_slots - 1), unique=True, max_size=n_slots))
    ops = []
    for d in dsts:
        k = draw(st.integers(1, n_slots))
        sources = draw(st.lists(st.integers(0, n_slots - 1), unique=True, min_size=k, max_size=k))
        raw = draw(st.lists(st.floats(0.05, 1.0), min_size=k, max_size=k))
        weights = [r / sum(raw) for r in raw]
        weights[-1] = 1.0 - sum(weights[:-1])
        kind = "copy" if k == 1 else "merge"
        ops.append(SlotOp(kind, d, tuple(sources), (1.0,) if kind == "copy" else tuple(weights)))
    assignment = tuple(draw(st.lists(st.integers(0, n_slots - 1), min_size=n_agents, max_size=n_agents)))
    return SharingPlan(assignment, (0,) * n_agents, (0,) * n_agents, "merge", tuple(ops), n_slots)


@FAST
@given(plans(), st.integers(0, 2**16))
def test_plan_application_matches_copying_and_merging_by_hand(plan, seed):
    g = torch.Generator().manual_seed(seed)
    n = plan.n_slots
    weight = torch.nn.Parameter(torch.randn(n, 3, 2, generator=g, dtype=torch.float64))
    bias = torch.nn.Parameter(torch.randn(n, 2, generator=g, dtype=torch.float64))
    opt = torch.optim.Adam([weight, bias])
    (weight.sum() + bias.square().sum()).backward()
    opt.step()
    target = torch.randn(n, 4, generator=g, dtype=torch.float64)
    routing = torch.zeros(len(plan.assignment), dtype=torch.long)
    before = [
        t.detach().clone()
        for t in (weight, bias, target, opt.state[weight]["exp_avg"], opt.state[bias]["exp_avg_sq"])
    ]
    step = opt.state[weight]["step"].clone()
    ParameterSlots([weight, bias], opt, targets=[target], routing=routing).apply(plan)
    after = [weight, bias, target, opt.state[weight]["exp_avg"], opt.state[bias]["exp_avg_sq"]]
    for old, new in zip(before, after, strict=True):
        want = old.clone()
        for op in plan.operations:  # each operation reads the slots as they were before
            want[op.dst] = sum(w * old[s] for s, w in zip(op.sources, op.weights, strict=True))
        assert torch.allclose(new.detach(), want, rtol=1e-12, atol=1e-12)
    assert routing.tolist() == list(plan.assignment)
    assert torch.equal(opt.state[weight]["step"], step)  # scalars are left alone
