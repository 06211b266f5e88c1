import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.figure import Figure

from sfnet.outputs.plots import (
    ACTIVATION_CMAP,
    draw_bpt,
    plot_correlation_matrix,
    plot_equations,
    plot_feature,
    to_rgb,
)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, 3, 24, 24), dtype=np.uint8)


def _assert_png(path):
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.02  # not a blank canvas


def test_feature_figure_with_bpt_png_and_pdf(tmp_path):
    rng = np.random.default_rng(0)
    x, y, a = rng.normal(-0.4, 0.3, 500), rng.normal(0, 0.4, 500), rng.random(500)
    p = plot_feature(
        tmp_path / "f.png", "SL17", _images(9), np.linspace(1, 0.5, 9), (x, y, a), 0.63
    )
    _assert_png(p)
    q = plot_feature(tmp_path / "f.pdf", "SL17", _images(9), np.linspace(1, 0.5, 9), (x, y, a))
    assert q.read_bytes()[:5] == b"%PDF-" and q.stat().st_size > 2000


def test_feature_grid_with_fewer_than_nine(tmp_path):
    _assert_png(plot_feature(tmp_path / "g.png", "Z61", _images(4), np.ones(4)))


def test_bpt_draws_strongest_on_top_and_colormap_ends():
    rng = np.random.default_rng(2)
    a = rng.random(200)
    fig = Figure()
    ax = fig.add_subplot()
    sc = draw_bpt(ax, rng.normal(-0.5, 0.2, 200), rng.normal(0, 0.3, 200), a)
    drawn = np.asarray(sc.get_array())
    assert drawn[-1] == pytest.approx(a.max()) and np.all(np.diff(drawn) >= 0)
    assert len(ax.lines) == 2  # Kauffmann 2003 and Kewley 2001
    np.testing.assert_allclose(ACTIVATION_CMAP(0.0)[:3], [0, 0, 0])
    r, g, b, _ = ACTIVATION_CMAP(1.0)
    assert r > 0.9 and g > 0.8 and b < 0.4  # bright yellow


def test_correlation_and_equation_figures(tmp_path):
    corr = np.array([[1.0, -0.4, 0.2], [-0.4, 1.0, 0.7], [0.2, 0.7, 1.0]])
    _assert_png(plot_correlation_matrix(tmp_path / "c.png", corr, ["SL1", "SL2", "SL3"]))
    imgs = _images(2)
    rows = [
        ("12 + log(O/H)", 8.9, [("Z61", 0.12), ("Z256", -0.2)]),
        ("log [NII]/H-alpha", -0.4, [("Z61", 0.05), ("Z256", -0.01)]),
    ]
    _assert_png(plot_equations(tmp_path / "e.png", rows, {"Z61": imgs[0], "Z256": imgs[1]}))


def test_to_rgb_checks_shape():
    assert to_rgb(np.zeros((3, 5, 7), np.uint8)).shape == (5, 7, 3)
    with pytest.raises(ValueError, match="3, H, W"):
        to_rgb(np.zeros((5, 7, 3), np.uint8))


def test_training_curves_figure():
    from sfnet.outputs.plots import training_curves_figure

    metrics = [
        {"epoch": e, "train_loss": 1 / e, "val_rmse": {"a": 0.2 / e, "b": 0.3 / e}, "lr": 0.1 / e}
        for e in (1, 2, 3)
    ]
    fig = training_curves_figure(metrics)
    loss, rmse, lr = fig.axes
    assert list(loss.lines[0].get_xdata()) == [1, 2, 3]
    assert [line.get_label() for line in rmse.lines] == ["a", "b"]
    np.testing.assert_allclose(lr.lines[0].get_ydata(), [0.1, 0.05, 0.1 / 3])
