import numpy as np
import pytest
import torch

from sfnet.data.batches import channel_stats, iter_batches, random_flips, split_indices


def test_split_is_seeded_disjoint_and_80_20():
    tr, va = split_indices(1000, 0.2, seed=0)
    assert len(va) == 200 and len(tr) == 800
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).size == 1000
    tr2, va2 = split_indices(1000, 0.2, seed=0)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, split_indices(1000, 0.2, seed=1)[1])
    with pytest.raises(ValueError, match="at least 2"):
        split_indices(1, 0.2, seed=0)


def test_random_flips_flip_each_image_as_drawn():
    x = torch.arange(4 * 1 * 2 * 3, dtype=torch.float32).view(4, 1, 2, 3)
    draws = torch.rand(4, 2, generator=torch.Generator().manual_seed(7)) < 0.5
    out = random_flips(x.clone(), torch.Generator().manual_seed(7))
    for i in range(4):
        want = x[i]
        if draws[i, 0]:
            want = want.flip(2)
        if draws[i, 1]:
            want = want.flip(1)
        assert torch.equal(out[i], want)


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
