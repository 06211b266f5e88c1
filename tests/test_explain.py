"""``sfnet explain`` end to end: the run's own galaxies, a new image folder, clear errors."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sfnet.cli import main
from sfnet.explain import write_explanations


def _check(js_path, names=("radius", "red")):
    e = json.loads(js_path.read_text())
    assert set(e["prediction"]) == set(names)
    assert 1 <= len(e["features"]) <= 2
    for t in names:  # the waterfall adds up: intercept + contributions = prediction
        total = e["intercept"][t] + sum(f["contribution"][t] for f in e["features"])
        assert total == pytest.approx(e["prediction"][t], abs=1e-4)
        cmap = np.asarray(e["contribution_map"][t])
        assert cmap.shape == (2, 2)
        assert e["intercept"][t] + cmap.mean() == pytest.approx(e["prediction"][t], abs=1e-4)
    for f in e["features"]:
        assert np.mean(f["map"]) == pytest.approx(f["activation"], rel=1e-4)
        assert f["label"].startswith("Z") and len(f["top_activating"]) <= 3
    assert e["map_resolution"] == "2x2 at 64 px"
    return e


def test_explain_cli_on_the_runs_own_galaxies(map_run, tmp_path, capsys):
    out = tmp_path / "ex"
    assert (
        main(["explain", str(map_run), "--objid", "5003", "--objid", "5010", "--out", str(out)])
        == 0
    )
    for oid in ("5003", "5010"):
        assert (out / f"{oid}.png").stat().st_size > 5000
        e = _check(out / f"{oid}.json")
        assert e["objID"] == oid and e["measured"] is not None
        for f in e["features"]:  # strengths are scaled by the analysed maximum
            assert 0 < f["strength"] <= 1.0 + 1e-6 and f["top_activating"]
    assert "5003.png" in capsys.readouterr().out


def test_explain_a_galaxy_outside_the_catalog(map_run, tmp_path):
    from tests.conftest import make_toy_images

    imgs, _ = make_toy_images(2, size=64, seed=99)
    folder = tmp_path / "new"
    (folder / "images").mkdir(parents=True)
    for oid, im in zip(("77", "78"), imgs, strict=True):
        Image.fromarray(np.transpose(im, (1, 2, 0))).save(folder / "images" / f"{oid}.png")
    # a bare image folder
    ((png, js),) = write_explanations(
        map_run, ["78"], images=str(folder / "images"), out_dir=tmp_path / "a"
    )
    e = _check(js)
    assert e["measured"] is None and png.is_file()
    # a dataset folder whose catalog has no targets
    pd.DataFrame({"objID": [77, 78]}).to_csv(folder / "galaxies.csv", index=False)
    ((_, js2),) = write_explanations(map_run, [78], data=str(folder), out_dir=tmp_path / "b")
    assert json.loads(js2.read_text())["prediction"] == e["prediction"]


def test_unknown_objid_and_unanalysed_run_are_clear_errors(map_run, tmp_path, capsys):
    assert main(["explain", str(map_run), "--objid", "123456789", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "objID 123456789 not found" in err
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.toml", "model.json", "model.safetensors"):
        (bare / name).write_bytes((map_run / name).read_bytes())
    assert main(["explain", str(bare), "--objid", "5003"]) == 2
    assert "sfnet analyze" in capsys.readouterr().err
