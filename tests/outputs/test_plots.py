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


# ----------------------------------------------------------- figures a referee accepts


def _galaxy(size: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth galaxy on a noisy sky, (3, size, size) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = 180 * np.exp(-(xx**2 + yy**2) / (2 * (size / 8) ** 2))
    img = blob[None] + rng.normal(25, 4, (3, size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def _colorbars(fig) -> list:
    """The colour-bar axes of a figure (matplotlib links each to its Colorbar)."""
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def _texts(fig) -> list:
    return [t for t in fig.findobj(lambda o: hasattr(o, "get_fontsize") and o.get_text())]


def test_cutout_problems_flags_planted_broken_images():
    from sfnet.outputs.plots import cutout_problems

    good = _galaxy()
    assert cutout_problems(good) == []
    empty = np.zeros_like(good)
    empty[:, 14:18, 14:18] = 120  # a speck on a black (off-footprint) frame
    assert "mostly empty" in cutout_problems(empty)
    striped = good.copy()
    striped[:, 9, :] = 250  # one bright readout row
    assert cutout_problems(striped) == ["stripes"]
    col = good.copy()
    col[:, :, 20] = 0
    assert cutout_problems(col) == ["stripes"]
    saturated = good.copy()
    saturated[:, 8:24, 8:24] = 255
    assert "saturated" in cutout_problems(saturated)


def test_top_galaxies_carry_objid_a_f_and_a_flag_when_broken_and_tex_is_escaped(tmp_path):
    from sfnet.outputs.plots import SMALL, feature_figure

    imgs = np.stack([_galaxy(seed=i) for i in range(3)])
    imgs[2] = 0
    imgs[2, :, 14:18, 14:18] = 120
    ids = ["1237648704043942146", r"$\undefinedmacro$", "7"]
    rng = np.random.default_rng(0)
    bpt = (rng.normal(-0.4, 0.3, 50), rng.normal(0, 0.4, 50), rng.random(50))
    fig = feature_figure("Z440", imgs, np.array([1.0, 0.8, 0.5]), bpt, 0.4, objids=ids)
    grid = [ax for ax in fig.axes if ax.images][:3]
    assert [ax.get_xlabel() for ax in grid] == [ids[0], r"\$\undefinedmacro\$", "7"]
    assert [t.get_text() for t in grid[1].texts] == ["A_f 0.80"]
    assert any("mostly empty" in t.get_text() for t in grid[2].texts)
    assert grid[2].spines["left"].get_edgecolor()[:3] == (1.0, 0.0, 0.0)
    colorbars = _colorbars(fig)
    assert len(colorbars) == 1 and "A_f of Z440" in colorbars[0].get_ylabel()
    assert min(t.get_fontsize() for t in _texts(fig)) >= SMALL - 1
    _assert_png(plot_feature(tmp_path / "tex.png", r"$\bad$", imgs, np.ones(3), objids=ids))


def test_training_curves_are_log_scale_with_units_and_the_spike_marked():
    from sfnet.outputs.plots import training_curves_figure

    rmse = [3e3, 0.3, 0.2, 0.15]
    metrics = [
        {"epoch": e, "train_loss": loss, "val_rmse": {"oh_p50": r}, "lr": 0.1}
        for e, (loss, r) in enumerate(zip([50.0, 1.0, 0.8, 0.7], rmse, strict=True), start=1)
    ]
    loss, val, _ = training_curves_figure(metrics, {"oh_p50": "dex"}).axes
    assert val.get_yscale() == "log" and loss.get_yscale() == "log"
    assert val.get_ylabel() == "validation RMSE [dex]"
    assert [t.get_text() for t in val.texts] == ["spike 3e+03"]
    mixed = training_curves_figure(
        [{**m, "val_rmse": {"a": 0.1, "b": 0.2}} for m in metrics], {"a": "dex", "b": "kpc"}
    ).axes[1]
    assert [line.get_label() for line in mixed.lines] == ["a [dex]", "b [kpc]"]
    assert mixed.get_yscale() == "linear"  # no spike, less than a decade: plain numbers


def test_maps_histograms_and_explanation_have_labelled_colour_bars_and_axes():
    from sfnet.outputs.plots import (
        explanation_figure,
        feature_maps_figure,
    )

    imgs = np.stack([_galaxy(seed=i) for i in range(2)])
    maps = np.random.default_rng(1).random((2, 32, 32))
    fig = feature_maps_figure("Z7", imgs, maps, np.array([1.0, 0.5]), "1x1 at 32 px", ["1", "2"])
    cbars = _colorbars(fig)
    assert len(cbars) == 1 and "activation of Z7" in cbars[0].get_ylabel()
    feats = [("Z7", "Z7\nactivation 1", maps[0], imgs[:1])]
    wf = [(8.7, [("Z7", 0.1)], 8.9)]
    fig = explanation_figure(
        "objID 1", imgs[0], ["oh_p50"], maps[:1], wf, feats, "1x1 at 32 px", {"oh_p50": "dex"}
    )
    labels = [ax.get_ylabel() for ax in _colorbars(fig)]
    assert labels and all(labels)  # every colour bar says what it shows
    assert "contribution per map cell [dex]" in labels
    assert any(ax.get_xlabel() == "predicted oh_p50 [dex]" for ax in fig.axes)


def test_histograms_say_what_both_axes_count(tmp_path):
    from sfnet.outputs.plots import plot_activation_histograms

    path = tmp_path / "h.png"
    import matplotlib.figure as mfig

    seen = []
    orig = mfig.Figure.savefig

    def spy(self, *a, **k):
        seen.extend(self.axes)
        return orig(self, *a, **k)

    mfig.Figure.savefig = spy
    try:
        plot_activation_histograms(path, {"Z1": np.random.default_rng(0).random(40)}, {"Z1": 0.3})
    finally:
        mfig.Figure.savefig = orig
    (ax,) = seen
    assert ax.get_ylabel() == "galaxies" and "A_f" in ax.get_xlabel()
