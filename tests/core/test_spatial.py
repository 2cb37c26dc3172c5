"""Cell partitions and descriptors against esda/libpysal, scipy and closed forms."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats
import torch

from hetplug.spatial import (
    GraphCells,
    GridCells,
    SpatialWeights,
    action_diversity_entropy,
    bin_actions,
    morans_i,
    occupancy_entropy,
)

from ..conftest import SHARED

esda = pytest.importorskip("esda")
libpysal = pytest.importorskip("libpysal")


def esda_moran(y: np.ndarray, w, transformation: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(esda.Moran(y, w, transformation=transformation, permutations=0).I)


@pytest.mark.parametrize("shape", [(3, 3), (5, 7), (8, 8), (1, 6), (7, 1), (32, 32)])
@pytest.mark.parametrize("contiguity", ["rook", "queen"])
@pytest.mark.parametrize("transformation", ["r", "b", "o"])
def test_morans_i_matches_esda_on_grids(shape, contiguity, transformation):
    """Moran's I on a grid (the lattice stencil path) equals esda.Moran(y, lat2W(...)).I
    within 1e-10 in float64 for random fields, counts with ties and large values."""
    rng = np.random.default_rng(hash((shape, contiguity, transformation)) % 2**32)
    cells = GridCells((0, 0), shape, shape, contiguity=contiguity)
    w = libpysal.weights.lat2W(*shape, rook=contiguity == "rook")
    ys = rng.random((6, math.prod(shape)))
    ys[1] = rng.integers(0, 5, ys.shape[1])  # counts with ties
    ys[2] = rng.normal(size=ys.shape[1]) * 1e3
    assert cells.weights.lattice == (shape, contiguity)
    ours = morans_i(torch.tensor(ys), cells, transformation)
    assert ours.shape == (6,)
    for y, value in zip(ys, ours, strict=True):
        assert value.item() == pytest.approx(esda_moran(y, w, transformation), abs=1e-10)


def test_grid_weights_equal_libpysal_lat2w():
    for contiguity in ("rook", "queen"):
        cells = GridCells((0, 0), (1, 1), (4, 6), contiguity=contiguity)
        ref = libpysal.weights.lat2W(4, 6, rook=contiguity == "rook").sparse.toarray()
        assert np.array_equal(cells.weights.to_dense().numpy(), ref)


@pytest.mark.parametrize("transformation", ["r", "b", "o"])
@pytest.mark.parametrize("seed", range(4))
def test_morans_i_matches_esda_on_random_sparse_weights(transformation, seed):
    """Asymmetric random weights with islands (rows and columns of zeros) agree with esda."""
    rng = np.random.default_rng(seed)
    m = 12 + seed * 5
    a = sp.random(m, m, density=0.25, random_state=seed, format="lil")
    a.setdiag(0)
    island = int(rng.integers(m))
    a[island, :] = 0
    a[:, island] = 0
    a = a.tocsr()
    a.eliminate_zeros()
    w = libpysal.weights.WSP(a).to_W(silence_warnings=True)
    assert island in w.islands
    weights = SpatialWeights.from_dense(a)
    y = rng.random((5, m))
    assert weights.lattice is None
    ours = morans_i(torch.tensor(y), weights, transformation)
    for row, value in zip(y, ours, strict=True):
        assert value.item() == pytest.approx(esda_moran(row, w, transformation), abs=1e-10)


def _oracle_rows():
    path = SHARED / "oracles" / "moran_esda_3x3.txt"
    if not path.exists():
        pytest.skip(f"oracle file {path} not present (../shared missing)")
    rows = []
    section = None
    for line in path.read_text().splitlines():
        head = re.match(r"== 3x3 grid, (rook|queen) contiguity, transform='(\w)'", line)
        if head:
            section = head.groups()
            continue
        m = re.match(r"\s*(\w+)\s+y=\[([\d, ]+)\]\s+I=np.float64\(([-\d.e]+)\)", line)
        if m and section:
            y = [float(v) for v in m.group(2).split(",")]
            rows.append((section[0], section[1], m.group(1), y, float(m.group(3))))
    assert len(rows) == 24
    return rows


def test_morans_i_matches_shared_oracle_file():
    for contiguity, transformation, name, y, expected in _oracle_rows():
        cells = GridCells((0, 0), (3, 3), (3, 3), contiguity=contiguity)
        got = morans_i(torch.tensor(y, dtype=torch.float64), cells, transformation).item()
        assert got == pytest.approx(expected, abs=1e-10), (contiguity, transformation, name)


def _sparse_copy(weights: SpatialWeights) -> SpatialWeights:
    """The same weights without the lattice tag: morans_i takes the sparse product."""
    return SpatialWeights(weights.rows, weights.cols, weights.values, weights.num_cells)


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 2), (2, 1), (3, 3), (4, 9), (1, 6), (6,), (2, 3, 4), (16, 16), (33, 31)]
)
@pytest.mark.parametrize("contiguity", ["rook", "queen"])
def test_lattice_stencil_equals_sparse_path(shape, contiguity, device):
    """The stencil over [..., *shape] equals the sparse general-weights path on the same grid,
    for every transformation, both dtypes, leading batch dims, a constant field and
    grids with islands (1x1: no edges, so 0 like esda's NaN) and 1-D and 3-D grids."""
    g = torch.Generator().manual_seed(len(shape) * 100 + sum(shape))
    cells = GridCells([0] * len(shape), shape, shape, contiguity=contiguity, device=device)
    sparse = _sparse_copy(cells.weights)
    m = cells.num_cells
    y = torch.rand(3, 5, m, generator=g, dtype=torch.float64)
    y[0, 1] = 0.25  # constant field
    y[1] = torch.randint(0, 4, (5, m), generator=g).double()  # ties
    y = y.to(device)
    for transformation in ("r", "b", "o"):
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            fast = morans_i(y.to(dtype), cells, transformation)
            ref = morans_i(y.to(dtype), sparse, transformation)
            assert fast.shape == (3, 5) and fast.dtype == dtype
            torch.testing.assert_close(fast, ref, atol=tol, rtol=0)
            assert fast[0, 1].item() == 0.0


def test_lattice_stencil_in_blocks_and_reused_buffers(monkeypatch):
    """Fields processed in several CPU blocks, and calls of different batch sizes that reuse
    the per-thread buffers, give the sparse path's values (the buffers' pad cells stay 0)."""
    import hetplug.spatial.stencil as stencil

    cells = GridCells((0, 0), (1, 1), (6, 5), contiguity="queen")
    sparse = _sparse_copy(cells.weights)
    g = torch.Generator().manual_seed(3)
    # A 5x6 grid has as many padded cells (42) as the 6x5 one, with the pads elsewhere.
    other = GridCells((0, 0), (1, 1), (5, 6), contiguity="rook")
    other_sparse = _sparse_copy(other.weights)
    monkeypatch.setattr(stencil, "BLOCK_BYTES", 3 * 42 * 8)  # 3 fields of 7 x 6 padded float64 cells
    for batch in (10, 1, 3, 7, 0):
        y = torch.rand(batch, 30, generator=g, dtype=torch.float64)
        for transformation in ("r", "b"):
            for grid, ref in ((cells, sparse), (other, other_sparse)):
                torch.testing.assert_close(
                    morans_i(y, grid, transformation), morans_i(y, ref, transformation), atol=1e-12, rtol=0
                )


def test_lattice_stencil_leaves_autograd_to_the_sparse_path():
    """Values that require grad take the differentiable sparse product (the stencil writes
    into reused buffers); the gradient equals a finite difference."""
    cells = GridCells((0, 0), (1, 1), (4, 4))
    y = torch.rand(16, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    morans_i(y, cells).backward()
    with torch.no_grad():
        e = torch.zeros(16, dtype=torch.float64)
        e[5] = 1e-6
        fd = (morans_i(y + e, cells) - morans_i(y - e, cells)) / 2e-6
    assert y.grad[5].item() == pytest.approx(fd.item(), rel=1e-5)


def test_lattice_stencil_on_non_contiguous_fields():
    """Fields given as a transposed view (not contiguous) give the same I as a copy."""
    cells = GridCells((0, 0), (1, 1), (4, 5), contiguity="queen")
    y = torch.rand(20, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).T
    assert not y.is_contiguous()
    torch.testing.assert_close(morans_i(y, cells), morans_i(y.contiguous(), _sparse_copy(cells.weights)))


def test_grid_weights_keep_their_lattice_tag():
    cells = GridCells((0, 0), (1, 1), (4, 6), contiguity="queen")
    assert cells.weights.to("cpu").lattice == ((4, 6), "queen")
    assert SpatialWeights.from_dense(cells.weights.to_dense()).lattice is None


def test_morans_i_constant_field_is_zero_not_nan(device):
    cells = GridCells((0, 0), (1, 1), (4, 4))
    for value in (0.0, 0.1, 1 / 16, 123.456):
        for dtype in (torch.float32, torch.float64):
            y = torch.full((3, 16), value, dtype=dtype, device=device)
            out = morans_i(y, cells)
            assert torch.equal(out, torch.zeros(3, dtype=dtype, device=device))


def test_morans_i_without_edges_is_zero():
    weights = SpatialWeights.from_dense(torch.zeros(4, 4))
    assert morans_i(torch.rand(4, dtype=torch.float64), weights).item() == 0.0


def test_morans_i_dense_tensor_and_batched_dims(device):
    cells = GridCells((0, 0), (1, 1), (5, 5), contiguity="queen")
    y = torch.rand(2, 3, 4, 25, dtype=torch.float64, device=device)
    batched = morans_i(y, cells, "r")
    assert batched.shape == (2, 3, 4)
    dense = morans_i(y[1, 2, 3], cells.weights.to_dense(), "r")
    assert batched[1, 2, 3].item() == pytest.approx(dense.item(), abs=1e-12)


def test_occupancy_entropy_closed_forms(device):
    uniform = torch.full((16,), 1 / 16, device=device)
    assert occupancy_entropy(uniform).item() == pytest.approx(math.log(16), rel=1e-6)
    assert occupancy_entropy(uniform, normalize=True).item() == pytest.approx(1.0, rel=1e-6)
    one_hot = torch.zeros(16, device=device)
    one_hot[3] = 1
    assert occupancy_entropy(one_hot).item() == 0.0
    p = torch.rand(7, 16, dtype=torch.float64)
    p = p / p.sum(-1, keepdim=True)
    ref = scipy.stats.entropy(p.numpy(), axis=-1)
    assert np.allclose(occupancy_entropy(p).numpy(), ref)


def test_density_counts_alive_agents_and_clamps_outside(device):
    cells = GridCells((0.0, 0.0), (2.0, 2.0), (2, 2), device=device)
    pos = torch.tensor([[0.5, 0.5], [1.5, 0.5], [5.0, 5.0], [-3.0, 0.2]], device=device)
    # cells (row-major over (x, y)): (0,0)->0, (1,0)->2, clamp (1,1)->3, clamp (0,0)->0
    assert cells.assign(pos).tolist() == [0, 2, 3, 0]
    dens = cells.density(pos)
    assert dens.tolist() == [0.5, 0.0, 0.25, 0.25]
    alive = torch.tensor([True, True, False, False], device=device)
    assert cells.density(pos, alive).tolist() == [0.5, 0.0, 0.5, 0.0]
    assert cells.density(pos, torch.zeros(4, dtype=torch.bool, device=device)).sum().item() == 0.0


def test_density_matches_numpy_histogram_batched():
    rng = np.random.default_rng(0)
    cells = GridCells((-1, -1), (1, 1), (8, 5))
    pos = rng.uniform(-1, 1, (3, 4, 50, 2))
    dens = cells.density(torch.tensor(pos)).reshape(3, 4, 8, 5).numpy()
    for a in range(3):
        for b in range(4):
            hist, _, _ = np.histogram2d(
                pos[a, b, :, 0], pos[a, b, :, 1], bins=(8, 5), range=((-1, 1), (-1, 1))
            )
            assert np.allclose(dens[a, b], hist / 50)


def test_positions_with_wrong_last_dim_raise():
    cells = GridCells((0, 0), (1, 1), (4, 4))
    with pytest.raises(ValueError, match=r"positions must have shape \[\.\.\., N, 2\]"):
        cells.density(torch.rand(5, 3))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(low=(0,), high=(1, 1), shape=(2, 2)), r"low must be 2 numbers, got low=\(0,\)"),
        (dict(low=(0, 0), high=(0, 1), shape=(2, 2)), "high must exceed low"),
        (dict(low=(0, 0), high=(1, 1), shape=(0, 2)), "shape"),
        (dict(low=(0, 0), high=(1, 1), shape=(2, 2), contiguity="bishop"), "contiguity"),
    ],
)
def test_grid_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GridCells(**kwargs)


def test_graph_cells_geodesic_neighbourhoods():
    # A path graph 0-1-2-3: geodesic distance |i - j|.
    idx = torch.arange(4)
    dist = (idx[:, None] - idx[None, :]).abs().double()
    cells = GraphCells.from_geodesic(dist, radius=1.0, assign=lambda p: p[..., 0].long())
    expected = np.diag(np.ones(3), 1) + np.diag(np.ones(3), -1)
    assert np.array_equal(cells.weights.to_dense().numpy(), expected)
    node = torch.tensor([[0.0], [0.0], [3.0], [2.0]])
    assert cells.density(node).tolist() == [0.5, 0.0, 0.25, 0.25]
    w = libpysal.weights.W({i: [j for j in range(4) if abs(i - j) == 1] for i in range(4)})
    y = np.array([1.0, 4.0, 2.0, 8.0])
    assert morans_i(torch.tensor(y), cells).item() == pytest.approx(esda_moran(y, w, "r"), abs=1e-9)
    with pytest.raises(ValueError, match="outside"):
        cells.assign(torch.tensor([[7.0]]))


def test_action_diversity_entropy():
    actions = torch.tensor([[0, 1, 2, 3], [1, 1, 1, 1], [0, 0, 1, 1]])
    h = action_diversity_entropy(actions, n_actions=5)
    assert h[0].item() == pytest.approx(math.log(4))
    assert h[1].item() == 0.0
    assert h[2].item() == pytest.approx(math.log(2))
    alive = torch.tensor([[True, True, False, False]] * 3)
    h = action_diversity_entropy(actions, n_actions=5, alive=alive)
    assert h.tolist() == pytest.approx([math.log(2), 0.0, 0.0])
    norm = action_diversity_entropy(actions, 4, normalize=True)
    assert norm[0].item() == pytest.approx(1.0)
    with pytest.raises(TypeError, match="integer categories"):
        action_diversity_entropy(torch.rand(3, 4), 4)


def test_bin_actions_joint_ids():
    a = torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [0.1, -0.9]]])
    ids = bin_actions(a, low=(-1, -1), high=(1, 1), bins=2)
    assert ids.tolist() == [[0, 3, 2]]
