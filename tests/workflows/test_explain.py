"""``sfnet explain`` end to end: the run's own galaxies, a new image folder, clear errors."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sfnet.analysis.activations import SparseActivations
from sfnet.cli import main
from sfnet.workflows.explain import write_explanations
from tests.conftest import REPORT_LINES


@pytest.fixture
def run_dir(analysed_runs):
    """The shared analysed bpt_lines run: 64 px (2x2 maps), k = 4, four targets."""
    return analysed_runs[0]


def _check(js_path, names=REPORT_LINES):
    e = json.loads(js_path.read_text())
    assert set(e["prediction"]) == set(names)
    assert 1 <= len(e["features"]) <= 4
    for t in names:  # the waterfall adds up: intercept + contributions = prediction
        total = e["intercept"][t] + sum(f["contribution"][t] for f in e["features"])
        assert total == pytest.approx(e["prediction"][t], abs=1e-4)
        cmap = np.asarray(e["contribution_map"][t])
        assert cmap.shape == (2, 2)
        assert e["intercept"][t] + cmap.mean() == pytest.approx(e["prediction"][t], abs=1e-4)
    for f in e["features"]:
        assert np.mean(f["map"]) == pytest.approx(f["activation"], rel=1e-4)
        assert f["label"].startswith("SL") and len(f["top_activating"]) <= 3
    assert e["map_resolution"] == "2x2 at 64 px"
    return e


def test_explain_cli_on_the_runs_own_galaxies(run_dir, tmp_path, capsys):
    # two analysed (validation) galaxies: their A_f are scaled by a maximum that includes them
    oids = [str(o) for o in SparseActivations.load(run_dir / "activations.npz").objid[:2]]
    out = tmp_path / "ex"
    argv = ["explain", str(run_dir), "--objid", oids[0], "--objid", oids[1], "--out", str(out)]
    assert main(argv) == 0
    for oid in oids:
        assert (out / f"{oid}.png").stat().st_size > 5000
        e = _check(out / f"{oid}.json")
        assert e["objID"] == oid and e["measured"] is not None
        for f in e["features"]:  # strengths are scaled by the analysed maximum
            assert 0 < f["strength"] <= 1.0 + 1e-6 and f["top_activating"]
    assert f"{oids[0]}.png" in capsys.readouterr().out


def test_explain_a_galaxy_outside_the_catalog(run_dir, tmp_path):
    from tests.conftest import make_toy_images

    imgs, _ = make_toy_images(2, size=64, seed=99)
    folder = tmp_path / "new"
    (folder / "images").mkdir(parents=True)
    for oid, im in zip(("77", "78"), imgs, strict=True):
        Image.fromarray(np.transpose(im, (1, 2, 0))).save(folder / "images" / f"{oid}.png")
    # a bare image folder
    ((png, js),) = write_explanations(
        run_dir, ["78"], images=str(folder / "images"), out_dir=tmp_path / "a"
    )
    e = _check(js)
    assert e["measured"] is None and png.is_file()
    # a dataset folder whose catalog has no targets
    pd.DataFrame({"objID": [77, 78]}).to_csv(folder / "galaxies.csv", index=False)
    ((_, js2),) = write_explanations(run_dir, [78], data=str(folder), out_dir=tmp_path / "b")
    assert json.loads(js2.read_text())["prediction"] == e["prediction"]


def test_explain_never_replaces_a_file_it_did_not_write(run_dir, tmp_path, capsys):
    from tests.conftest import make_toy_images

    (im,), _ = make_toy_images(1, size=64, seed=5)
    cutouts = tmp_path / "cutouts"  # the user's own images, and --out pointed at them
    cutouts.mkdir()
    Image.fromarray(np.transpose(im, (1, 2, 0))).save(cutouts / "42.png")
    (cutouts / "43.json").write_text('{"mine": 1}')
    before = {p.name: p.read_bytes() for p in cutouts.iterdir()}
    for oid in ("42", "43"):
        argv = ["explain", str(run_dir), "--objid", oid, "--images", str(cutouts)]
        assert main([*argv, "--out", str(cutouts)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "not an explanation sfnet wrote" in err
    assert {p.name: p.read_bytes() for p in cutouts.iterdir()} == before
    # an earlier explanation is sfnet's own: rewritten in place
    ((png, js),) = write_explanations(run_dir, ["42"], images=str(cutouts), out_dir=tmp_path / "o")
    first = js.read_bytes()
    ((png2, js2),) = write_explanations(
        run_dir, ["42"], images=str(cutouts), out_dir=tmp_path / "o"
    )
    assert (png2, js2) == (png, js) and js2.read_bytes() == first


def test_unknown_objid_and_unanalysed_run_are_clear_errors(run_dir, tmp_path, capsys):
    assert main(["explain", str(run_dir), "--objid", "123456789", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "objID 123456789: not in" in err and "catalog rows" not in err  # an .npz: no catalog
    assert "123456789.jpg|png|fits" not in err
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.toml", "model.json", "model.safetensors"):
        (bare / name).write_bytes((run_dir / name).read_bytes())
    assert main(["explain", str(bare), "--objid", str(10**17 + 3)]) == 2
    assert "sfnet analyze" in capsys.readouterr().err


def _survey(root, objids, fluxes, errors):
    """A dataset folder with bpt_lines catalog columns and 64 px images for ``objids``."""
    from sfnet.physics import BPT_LINES
    from tests.conftest import make_toy_images

    (root / "images").mkdir(parents=True)
    imgs, _ = make_toy_images(len(objids), size=64, seed=5)
    for oid, im in zip(objids, imgs, strict=True):
        Image.fromarray(np.transpose(im, (1, 2, 0))).save(root / "images" / f"{oid}.png")
    cols = {"objID": list(objids) + [999]}  # 999: a catalog row without an image
    for j, line in enumerate(BPT_LINES):
        cols[line] = [f[j] for f in fluxes] + [10.0]
        cols[f"{line}_err"] = list(errors) + [1.0]
    pd.DataFrame(cols).to_csv(root / "galaxies.csv", index=False)
    return root


def test_explain_any_galaxy_with_an_image_measured_or_not(run_dir, tmp_path):
    good, nan = [20.0, 30.0, 15.0, 10.0], [np.nan] * 4
    folder = _survey(tmp_path / "S", [1, 2, 3], [good, good, nan], [1.0, 50.0, 1.0])
    paths = write_explanations(run_dir, [1, 2, 3], data=str(folder), out_dir=tmp_path / "o")
    passes, fails, unmeasured = (json.loads(js.read_text()) for _, js in paths)
    assert passes["status"] == "passes cuts"
    assert passes["measured"]["log_nii_6584_flux"] == pytest.approx(np.log10(20.0))
    assert fails["status"] == "fails cut S/N > 3 in all four lines"  # measured, but noisy
    assert fails["measured"]["log_h_alpha_flux"] == pytest.approx(np.log10(30.0))
    assert unmeasured["status"] == "no measurement" and unmeasured["measured"] is None
    for e in (passes, fails, unmeasured):
        _check(tmp_path / "o" / f"{e['objID']}.json")
    # an absent galaxy: where it was looked for, and why it is not there
    with pytest.raises(Exception, match=r"999: has a catalog row .* but no image") as e:
        write_explanations(run_dir, [999], data=str(folder), out_dir=tmp_path / "x")
    with pytest.raises(Exception, match=r"4: not in .*none of its 4 catalog rows"):
        write_explanations(run_dir, [4], data=str(folder), out_dir=tmp_path / "x")
    assert "999" in str(e.value) and not (tmp_path / "x").exists()
