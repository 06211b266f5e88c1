import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sfnet.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from sfnet.errors import RunFolderError
from sfnet.optim import flat_cos_factor
from sfnet.train import fit
from tests.conftest import toy_train_args


def toy_config(npz: Path, epochs: int = 3, k: int | None = 4, **train) -> RunConfig:
    return RunConfig(
        DataConfig(data=str(npz), target="metallicity", crop=32),
        ModelConfig(k=k),
        TrainConfig(epochs=epochs, batch_size=32, lr=train.pop("lr", 0.01), **train),
    )


def test_short_training_beats_predicting_the_mean(toy_npz, tmp_path):
    res = fit(toy_config(toy_npz, epochs=6), tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    baseline = meta["extra"]["val_rmse_predict_mean"]
    # validation RMSE well below the spread of each target
    for name in ("radius", "redness"):
        assert res.val_rmse[name] < 0.5 * baseline[name], (name, res.val_rmse, baseline)
    hist = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == list(range(1, 7))
    assert set(hist[0]) >= {"train_loss", "val_rmse", "dead_features", "seconds", "lr"}
    # every training galaxy fires k = 4 features, so at most 512 - 4 can be dead
    assert all(isinstance(h["dead_features"], int) for h in hist)
    assert hist[-1]["dead_features"] <= 512 - 4
    assert hist[-1]["lr"] < 1e-4 * 0.01 * 10  # cosine annealed to ~0
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_dense_baseline_trains(toy_npz, tmp_path):
    res = fit(toy_config(toy_npz, epochs=2, k=None), tmp_path / "dense")
    assert np.isfinite(list(res.val_rmse.values())).all()
    meta = json.loads((tmp_path / "dense" / "model.json").read_text())
    assert meta["k"] is None


def test_run_folder_is_never_overwritten_silently(toy_npz, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(RunFolderError, match="--overwrite"):
        fit(toy_config(toy_npz, epochs=1), out)
    assert (out / "keep.txt").read_text() == "precious"
    fit(toy_config(toy_npz, epochs=1), out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists()


def test_resume_of_finished_run_returns_it_unchanged(toy_npz, tmp_path):
    out = tmp_path / "run"
    first = fit(toy_config(toy_npz, epochs=1), out)
    before = (out / "model.safetensors").stat().st_mtime_ns
    again = fit(toy_config(toy_npz, epochs=1), out, resume=True)
    assert again.val_rmse == first.val_rmse
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(RunFolderError, match="differs"):
        fit(toy_config(toy_npz, epochs=2), out, resume=True)


@pytest.mark.parametrize(
    "section, field, value, message",
    [
        ("train", "epochs", 0, "train.epochs"),
        ("train", "lr", -1.0, "train.lr"),
        ("train", "schedule", "linear", "train.schedule"),
        ("data", "target", "mass", "data.target"),
        ("data", "val_fraction", 1.5, "data.val_fraction"),
        ("model", "k", 0, "model.k"),
        ("model", "backbone", "vit", "model.backbone"),
    ],
)
def test_bad_config_is_a_clear_error(toy_npz, tmp_path, section, field, value, message):
    cfg = toy_config(toy_npz)
    setattr(getattr(cfg, section), field, value)
    with pytest.raises(ConfigError, match=message):
        fit(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_config_toml_round_trip_and_unknown_fields(tmp_path):
    cfg = toy_config(Path("x.npz"), epochs=7, k=None)
    cfg.save(tmp_path / "config.toml")
    assert RunConfig.load(tmp_path / "config.toml") == cfg
    (tmp_path / "bad.toml").write_text("[train]\nepochs = 3\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        RunConfig.load(tmp_path / "bad.toml")


def test_flat_cos_schedule_shape():
    total = 100
    assert flat_cos_factor(0, total, 0.75) == 1.0
    assert flat_cos_factor(74, total, 0.75) == 1.0
    mid = flat_cos_factor(87, total, 0.75)
    assert 0.4 < mid < 0.6
    assert flat_cos_factor(100, total, 0.75) == pytest.approx(1e-5)


def test_one_cycle_schedule_trains(toy_npz, tmp_path):
    res = fit(toy_config(toy_npz, epochs=1, schedule="one_cycle"), tmp_path / "run")
    assert np.isfinite(list(res.val_rmse.values())).all()


def _wait_for(path: Path, lines: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and len(path.read_text().splitlines()) >= lines:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("training too slow")


def test_resume_after_sigkill_reaches_same_weights(toy_npz, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "sfnet",
        "train",
        "--data",
        str(toy_npz),
        *toy_train_args(epochs=3),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref"
    subprocess.run([*cmd, "--out", str(ref)], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, "--out", str(killed)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(killed / "metrics.jsonl", 1, proc)
    time.sleep(0.3)  # well inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.safetensors").exists()
    assert (killed / "checkpoint.pt").exists()

    subprocess.run(
        [sys.executable, "-m", "sfnet", "train", "--resume", str(killed), "--quiet"],
        check=True,
        env=env,
        capture_output=True,
    )
    a = load_file(str(ref / "model.safetensors"))
    b = load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    hist = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2, 3]


def test_last_batch_of_one_galaxy_is_dropped(tmp_path):
    # 41 training galaxies with batch 8 leave a last batch of 1, which batch norm cannot train on
    # (at 32 px resnet18's last feature map is 1x1)
    from sfnet.data.dataset import save_npz
    from tests.conftest import make_toy_images

    images, y = make_toy_images(51)
    save_npz(tmp_path / "d.npz", images, y, np.arange(51), ["radius", "redness"])
    cfg = toy_config(tmp_path / "d.npz", epochs=1, k=2)
    cfg.data.val_fraction = 10 / 51
    cfg.train.batch_size = 8
    res = fit(cfg, tmp_path / "run")
    assert res.history[0]["epoch"] == 1 and np.isfinite(res.history[0]["train_loss"])
