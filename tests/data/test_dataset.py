import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sfnet.cli import main
from sfnet.config import DataConfig
from sfnet.data.dataset import load_dataset, save_npz
from sfnet.errors import DataError
from tests.conftest import make_toy_images


def write_folder(path, images, oh=None, start=1237648702973411443):
    (path / "images").mkdir(parents=True)
    objid = np.arange(len(images), dtype=np.int64) + start
    for o, im in zip(objid, images, strict=True):
        Image.fromarray(im.transpose(1, 2, 0)).save(path / "images" / f"{o}.png")
    table = pd.DataFrame({"objID": objid})
    if oh is not None:
        table["oh_p50"] = oh
    table.to_csv(path / "galaxies.csv", index=False)
    return objid


def test_npz_crop_and_errors(tmp_path):
    images, y = make_toy_images(6, size=16)
    save_npz(tmp_path / "ok.npz", images, y, np.arange(6), ["a", "b"])
    data = load_dataset(DataConfig(path=str(tmp_path / "ok.npz"), crop=8))
    assert data.images.shape == (6, 3, 8, 8)
    np.testing.assert_array_equal(data.images[np.array([2])][0], images[2, :, 4:12, 4:12])
    assert data.target_names == ["a", "b"] and data.y.shape == (6, 2)
    with pytest.raises(DataError, match="larger than the images"):
        load_dataset(DataConfig(path=str(tmp_path / "ok.npz"), crop=32))
    np.savez(tmp_path / "float_ids.npz", images=images, y=y, objID=np.arange(6.0))
    with pytest.raises(DataError, match="float_ids.npz.*objID.*float"):
        load_dataset(DataConfig(path=str(tmp_path / "float_ids.npz"), crop=16))
    np.savez(tmp_path / "noy.npz", images=images, objID=np.arange(6))
    with pytest.raises(DataError, match="noy.npz: missing array 'y'"):
        load_dataset(DataConfig(path=str(tmp_path / "noy.npz"), crop=16))
    with pytest.raises(DataError, match="no such dataset"):
        load_dataset(DataConfig(path=str(tmp_path / "nothing"), crop=16))


def test_predict_new_galaxies_without_targets(tmp_path, capsys):
    images, y = make_toy_images(48, size=32, seed=3)
    write_folder(tmp_path / "train", images, oh=8.5 + 0.05 * y[:, 0])
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "train"),
                "--crop",
                "32",
                "--k",
                "2",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    # a catalog with no oh_p50 at all: training refuses it, prediction accepts it
    new_ids = write_folder(tmp_path / "new", images[:10], start=1237648702973412000)
    with pytest.raises(DataError, match="oh_p50"):
        load_dataset(DataConfig(path=str(tmp_path / "new"), crop=32))
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), "--data", str(tmp_path / "new"), "--out", str(out)]) == 0
    table = pd.read_csv(out, dtype={"objID": "int64"})
    assert table["objID"].tolist() == new_ids.tolist()
    assert np.isfinite(table["pred_oh_p50"]).all()
    assert "split" not in table.columns  # other data than the run's: no train/val split
    active = table[["feature_1", "feature_2"]].to_numpy()
    assert ((active >= -1) & (active < 512)).all()


def test_npz_fingerprint_sees_every_image(tmp_path):
    images, y = make_toy_images(130, size=16)
    path = tmp_path / "d.npz"
    save_npz(path, images, y, np.arange(130), ["a", "b"])
    before = load_dataset(DataConfig(path=str(path), crop=16)).fingerprint
    for row in (1, 129):  # any row, not only every N/64-th
        changed = images.copy()
        changed[row, 0, 3, 3] ^= 1
        save_npz(path, changed, y, np.arange(130), ["a", "b"])
        assert load_dataset(DataConfig(path=str(path), crop=16)).fingerprint != before


def test_duplicate_objids_are_refused_in_npz(tmp_path):
    images, y = make_toy_images(6, size=16)
    ids = np.array([5, 6, 7, 6, 8, 9])
    save_npz(tmp_path / "dup.npz", images, y, ids, ["a", "b"])
    with pytest.raises(DataError, match=r"dup.npz.*duplicated objID.*6"):
        load_dataset(DataConfig(path=str(tmp_path / "dup.npz"), crop=16))
