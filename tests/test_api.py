"""The public Python API: names importable from ``sfnet``, training and a Run from Python."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import sfnet
from sfnet.config import ConfigError
from sfnet.errors import DataError
from tests.conftest import make_toy_images


def test_every_public_name_imports_and_has_a_docstring():
    assert len(sfnet.__all__) >= 10
    for name in sfnet.__all__:
        obj = getattr(sfnet, name)
        doc = (obj.__doc__ or "").strip()
        assert len(doc) > 20, f"sfnet.{name} has no docstring"
        assert name in dir(sfnet)
    for name in ("SparseFeatureNet", "TopK", "open_dataset", "synthesize", "train_run", "Run"):
        assert name in sfnet.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = sfnet.nope


def test_import_is_lazy_and_modules_stay_modules():
    code = (
        "import sys, types, sfnet\n"
        "assert 'torch' not in sys.modules, 'import sfnet loaded torch'\n"
        "import sfnet.train\n"
        "from sfnet.train import fit\n"
        "assert isinstance(sfnet.train, types.ModuleType) and sfnet.train.fit is fit is sfnet.fit\n"
        "assert sfnet.train_run.__module__ == 'sfnet.workflows.train'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def run(small_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    return sfnet.train_run(
        small_npz, k=4, out=out, epochs=1, batch_size=32, lr=0.01, device="cpu", workers=0
    )


def test_train_returns_a_loadable_run_and_refuses_unknown_options(run, small_npz, tmp_path):
    assert isinstance(run, sfnet.Run) and run.meta.k == 4 and run.meta.crop == 32
    assert run.config.train.epochs == 1 and run.config.train.num_workers == 0
    again = sfnet.Run.load(run.dir)
    assert again.meta.target_names == ["radius", "redness"]
    with pytest.raises(ConfigError, match="'epoch'"):
        sfnet.train_run(small_npz, out=tmp_path / "x", epoch=3)
    with pytest.raises(ConfigError, match="epochs"):
        sfnet.train_run(small_npz, out=tmp_path / "y", epochs=0)


def test_predict_accepts_dataset_array_and_pil_image_alike(run, small_npz):
    data = sfnet.open_dataset(small_npz)
    images = np.asarray(data.images[np.arange(6)])
    by_data = run.predict(data)
    by_path = run.predict(small_npz)
    by_array = run.predict(images)
    assert len(by_data) == len(data) and list(by_data["objID"][:3]) == list(data.objid[:3])
    pd.testing.assert_frame_equal(by_data, by_path)
    np.testing.assert_allclose(by_array["pred_radius"], by_data["pred_radius"][:6], rtol=1e-5)
    pil = Image.fromarray(images[2].transpose(1, 2, 0))
    one = run.predict(pil)
    assert len(one) == 1
    np.testing.assert_allclose(one["pred_redness"], by_data["pred_redness"][2], rtol=1e-5)
    # a larger image is centre-cropped to the run's 32 px, a smaller one is refused by name
    padded = np.pad(images, ((0, 0), (0, 0), (4, 4), (4, 4)))
    np.testing.assert_allclose(run.predict(padded)["pred_radius"], by_array["pred_radius"])
    with pytest.raises(DataError, match="smaller than the crop 32"):
        run.predict(images[:, :, :16, :16])
    with pytest.raises(DataError, match=r"\(N, 3, H, W\) uint8"):
        run.predict(images.astype(np.float32))


def test_predict_as_astropy_table_carries_units(run, small_npz):
    t = run.predict(small_npz, as_table=True)
    assert t.colnames[:6] == ["objID", "split", "measured_radius", "measured_redness",
                              "passes_cuts", "status"]  # fmt: skip
    assert t.colnames[6:8] == ["pred_radius", "pred_redness"]
    assert "feature_4" in t.colnames and t["feature_1"].dtype == np.int16
    t2 = run.predict(small_npz, format="astropy")
    assert len(t2) == len(t)
    with pytest.raises(Exception, match="pandas' or 'astropy'"):
        run.predict(small_npz, format="excel")


def test_features_sparse_and_pooled(run, small_npz):
    data = sfnet.open_dataset(small_npz)
    sparse = run.features(data)
    cols = [c for c in sparse.columns if c != "objID"]
    assert cols and all(c.startswith("Z") for c in cols)
    values = sparse[cols].to_numpy()
    assert ((values > 0).sum(axis=1) <= 4).all()  # at most k active per galaxy
    pred = run.predict(data)
    first = pred["feature_1"].iloc[0]
    assert sparse[f"Z{first}"].iloc[0] == pytest.approx(pred["activation_1"].iloc[0])
    pooled = run.features(small_npz, pooled=True)
    assert pooled.shape == (len(data), 513)


def test_analysis_table_equations_and_figures(run):
    table = run.feature_table(3)
    assert len(table) == 3 and {"label", "f_activated", "w_radius"} <= set(table.columns)
    assert table["f_activated"].is_monotonic_decreasing
    md = run.equations_markdown(2)
    assert "radius = " in md and "redness = " in md
    eqs = run.equations()
    assert {e.name for e in eqs.equations} == {"radius", "redness"}
    fig = run.feature_figure()
    assert fig.axes and table["label"][0] in fig.axes[1].get_title() + fig.axes[0].get_title()
    fig = run.feature_figure(table["label"][1])
    assert len(fig.axes) == 9  # no line fluxes in this catalog: the grid alone
    curves = run.training_curves()
    assert len(curves.axes) == 3 and len(curves.axes[1].lines) == 2


def test_open_dataset_from_array_applies_the_cuts_of_a_catalog():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 3, 40, 40), dtype=np.uint8)
    catalog = pd.DataFrame(
        {"objID": np.arange(10, 15), "oh_p50": [8.9, -9999, 8.7, 8.6, 8.5], "lgm_tot_p50": 10.0}
    )
    data = sfnet.open_dataset(images, catalog, crop=32)
    assert list(data.objid) == [10, 12, 13, 14]
    assert data.images.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(data.images[1], images[2, :, 4:36, 4:36])
    np.testing.assert_allclose(data.y[:, 0], [8.9, 8.7, 8.6, 8.5], rtol=1e-6)
    bare = sfnet.open_dataset(images)
    assert list(bare.objid) == [0, 1, 2, 3, 4] and np.isnan(bare.y).all()
    with pytest.raises(DataError, match="catalog has 2 rows for 5 images"):
        sfnet.open_dataset(images, catalog.iloc[:2])


def test_train_on_in_memory_galaxies_keeps_them_with_the_run(small_npz, tmp_path):
    images, y = make_toy_images(40)
    y = y[:, 0]
    catalog = pd.DataFrame({"objID": np.arange(40), "oh_p50": 8.0 + y / 20})
    data = sfnet.open_dataset(images, catalog)
    run = sfnet.train_run(data, out=tmp_path / "mem", epochs=1, batch_size=16, device="cpu")
    assert (tmp_path / "mem" / "data.npz").is_file()
    assert run.data().fingerprint == run.meta.data_fingerprint
    assert len(run.feature_table(2)) == 2
    with pytest.raises(DataError, match="no \\(finite\\) targets"):
        sfnet.train_run(sfnet.open_dataset(images), out=tmp_path / "none")


def test_moved_modules_are_one_line_fixes():
    """Every export names an existing module attribute (the table is the only map)."""
    for name, target in sfnet._EXPORTS.items():
        module, _, attr = target.partition(":")
        assert getattr(importlib.import_module(module), attr) is getattr(sfnet, name)


def test_one_run_class_and_one_loader():
    src = Path(sfnet.__file__).parent
    defs = [
        p
        for p in src.rglob("*.py")
        if "class Run(" in p.read_text() or "class Run:" in p.read_text()
    ]
    assert [p.name for p in defs] == ["runs.py"]
    assert sfnet.Run is importlib.import_module("sfnet.runs").Run
    assert not (src / "api.py").exists()
    assert sfnet.open_dataset.__module__ == "sfnet.data.galaxies"
    assert not hasattr(sfnet.Run, "load_data")  # one data accessor: Run.data()


def test_evaluate_is_the_validation_rmse_of_the_last_epoch(run):
    scores = run.evaluate()
    assert scores["n"] == run.meta.n_val
    last = run.metrics()[-1]["val_rmse"]
    for name in ("radius", "redness"):
        assert scores["rmse"][name] == pytest.approx(last[name], rel=1e-4, abs=1e-5)
    table = run.predict()
    assert (table["split"] == "val").sum() == run.meta.n_val and table["passes_cuts"].all()


def test_explain_from_python_returns_the_figure_and_the_json(run):
    run.activations()  # the analysis explain scales A_f with
    oid = run.data().objid[5]
    fig, info = run.explain(oid)
    assert fig.axes and info["objID"] == str(oid) and info["status"] == "passes cuts"
    total = info["intercept"]["radius"] + sum(f["contribution"]["radius"] for f in info["features"])
    assert total == pytest.approx(info["prediction"]["radius"], abs=1e-4)
    assert info["measured"]["radius"] == pytest.approx(float(run.data().y[5, 0]))


def test_every_run_method_is_documented_with_an_example():
    import inspect

    public = [n for n, m in inspect.getmembers(sfnet.Run) if not n.startswith("_") and callable(m)]
    for name in ("split", "metrics", "data", "evaluate", "explain", "predict", "load"):
        assert name in public
    for name in public:
        assert "Example" in (getattr(sfnet.Run, name).__doc__ or ""), f"Run.{name}"
    for notebook in ("quickstart.ipynb", "real_sample.ipynb"):
        text = (Path(__file__).parents[1] / "examples" / notebook).read_text()
        for used in set(re.findall(r"\brun\.(\w+)\(", text)):
            assert used in public, f"{notebook} uses run.{used}, not a documented Run method"
    assert "on_epoch" in sfnet.train_run.__doc__ and "val_rmse" in sfnet.train_run.__doc__


def test_no_tqdm_warning_in_a_notebook_without_ipywidgets():
    fake_notebook = (
        "import sys, types, warnings\n"
        "warnings.simplefilter('always')\n"
        "class Shell:\n    config = {'IPKernelApp': {}}\n"
        "ip = types.ModuleType('IPython'); ip.get_ipython = lambda: Shell()\n"
        "disp = types.ModuleType('IPython.display'); disp.display = print; ip.display = disp\n"
        "sys.modules.update({'IPython': ip, 'IPython.display': disp, 'ipywidgets': None,\n"
        "                    'ipykernel.zmqshell': types.ModuleType('zmqshell')})\n"
    )
    ours = "from sfnet.progress import progress_bar\nprogress_bar(True, 2, 'x').close()\n"
    for code, warned in (
        (fake_notebook + "import tqdm.auto\n", True),
        (fake_notebook + ours, False),
    ):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-500:]
        assert ("IProgress not found" in res.stderr) is warned, res.stderr[-500:]


def test_train_run_reports_each_epoch_keeps_string_ids_and_leaves_nothing_behind(tmp_path, capsys):
    from sfnet.analysis.activations import SparseActivations
    from sfnet.errors import RunFolderError

    images, y = make_toy_images(40)
    ids = [f"{i:06d}" for i in range(40)]  # zero-padded: stays text
    catalog = pd.DataFrame({"objID": ids, "oh_p50": 8.0 + y[:, 0] / 20})
    data = sfnet.open_dataset(images, catalog)
    seen = []
    run = sfnet.train_run(
        data, out=tmp_path / "mem", epochs=2, batch_size=16, device="cpu", workers=0,
        progress=True, on_epoch=seen.append,
    )  # fmt: skip
    assert [r["epoch"] for r in seen] == [1, 2] and "oh_p50" in seen[-1]["val_rmse"]
    assert "val RMSE oh_p50=" in capsys.readouterr().err
    # string objIDs survive every file of the run (no pickle needed to read them back)
    assert len(run.feature_table(2)) == 2
    acts = SparseActivations.load(run.dir / "activations.npz")
    assert acts.objid.dtype.kind == "U" and set(acts.objid) <= set(ids)
    table = run.predict()
    assert table["objID"].tolist() == ids and table["split"].isin(["train", "val"]).all()
    fig, info = run.explain("000007")
    assert info["objID"] == "000007"
    # a failed start leaves no hidden data file beside the run
    with pytest.raises(RunFolderError):
        sfnet.train_run(data, out=tmp_path / "mem", epochs=1, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mem"]
