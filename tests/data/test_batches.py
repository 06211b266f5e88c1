import numpy as np
import pytest
import torch

from sfnet.data.batches import (
    Normalization,
    augment,
    channel_stats,
    device_batches,
    draw_flips,
    iter_batches,
    split_indices,
)


def test_split_is_seeded_disjoint_and_80_20():
    tr, va = split_indices(1000, 0.2, seed=0)
    assert len(va) == 200 and len(tr) == 800
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).size == 1000
    tr2, va2 = split_indices(1000, 0.2, seed=0)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, split_indices(1000, 0.2, seed=1)[1])
    with pytest.raises(ValueError, match="at least 2"):
        split_indices(1, 0.2, seed=0)


def test_augment_flips_each_image_as_drawn_and_normalizes_bit_identically():
    """The device-side step equals flipping each drawn image, then normalizing (the old
    CPU pipeline), bit for bit, and draws the same flips from the same seeded generator."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (6, 3, 5, 7), dtype=np.uint8))
    norm = Normalization((0.2, 0.3, 0.4), (0.1, 0.2, 0.3))
    draws = torch.rand(6, 2, generator=torch.Generator().manual_seed(7)) < 0.5
    flips = draw_flips(6, torch.Generator().manual_seed(7))
    assert torch.equal(flips, draws) and draws.any() and not draws.all()
    want = norm.apply(x).clone()
    for i in range(6):
        if draws[i, 0]:
            want[i] = want[i].flip(2)
        if draws[i, 1]:
            want[i] = want[i].flip(1)
    out = augment(x, norm, flips)
    assert out.dtype == torch.float32 and torch.equal(out, want)
    assert torch.equal(augment(x, norm, None), norm.apply(x))
    cl = augment(x, norm, flips, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, want)


def test_device_batches_on_the_cpu_are_the_batches_in_order():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(3, axis=1)
    rows = np.array([9, 2, 5, 0, 7, 1, 3])
    got = list(device_batches(images, rows, 3, "cpu"))
    assert [r.tolist() for r, _ in got] == [[9, 2, 5], [0, 7, 1], [3]]
    assert torch.cat([x[:, 0, 0, 0] for _, x in got]).tolist() == rows.tolist()
    assert all(x.dtype == torch.uint8 for _, x in got)


def test_channel_stats_match_numpy():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)
    norm = channel_stats(images, np.arange(20), batch=7)
    x = images / 255.0
    np.testing.assert_allclose(norm.mean, x.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(norm.std, x.std(axis=(0, 2, 3)), rtol=1e-6)
    z = norm.apply(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_iter_batches_returns_rows_in_order(prefetch):
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(3, axis=1)
    rows = np.array([9, 2, 5, 0, 7, 1, 3])
    got = list(iter_batches(images, rows, batch_size=3, prefetch=prefetch))
    assert [r.tolist() for r, _ in got] == [[9, 2, 5], [0, 7, 1], [3]]
    assert torch.cat([x[:, 0, 0, 0] for _, x in got]).tolist() == rows.tolist()
