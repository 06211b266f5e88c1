import numpy as np
import pytest

from sfnet.data.dataset import load_dataset
from sfnet.errors import RunFolderError
from sfnet.predict import predict
from sfnet.runs import is_finished, load_run


@pytest.fixture(scope="module")
def trained(trained_toy_run):
    return trained_toy_run


def test_save_load_round_trip_gives_identical_predictions(trained):
    run = load_run(trained)
    data = run.load_data()
    _, val = run.split(len(data))
    a = predict(run, data.images, val, batch_size=7)
    b = predict(load_run(trained), data.images, val, batch_size=64)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.predictions, b.predictions, rtol=0, atol=1e-5)
    assert a.predictions.shape == (len(val), 2)
    assert ((a.values > 0).sum(axis=1) <= 4).all()
    assert run.meta.n_val == len(val) and run.meta.target_names == ["radius", "redness"]


def test_load_run_errors_name_the_missing_file(trained, tmp_path):
    with pytest.raises(RunFolderError, match="no such run folder"):
        load_run(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.toml").write_text((trained / "config.toml").read_text())
    with pytest.raises(RunFolderError, match="model.json"):
        load_run(tmp_path / "half")
    assert is_finished(trained) and not is_finished(tmp_path / "half")


def test_loading_never_unpickles(trained):
    # weights are safetensors and metadata JSON: no pickle file is needed to load a run
    names = {p.name for p in trained.iterdir()}
    assert "model.safetensors" in names and not any(n.endswith((".pt", ".pkl")) for n in names)
    assert (
        load_dataset(load_run(trained).config.data).fingerprint
        == load_run(trained).meta.data_fingerprint
    )


def test_final_val_rmse_reads_the_last_epoch(trained, tmp_path):
    from sfnet.runs import final_val_rmse, read_metrics

    last = read_metrics(trained / "metrics.jsonl")[-1]["val_rmse"]
    assert final_val_rmse(trained) == pytest.approx(last)
    assert set(final_val_rmse(trained)) == {"radius", "redness"}
    with pytest.raises(RunFolderError, match="metrics.jsonl: missing"):
        final_val_rmse(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n')
    with pytest.raises(RunFolderError, match="no 'val_rmse'"):
        final_val_rmse(tmp_path)


def test_same_config_ignores_only_the_named_train_fields(trained):
    from sfnet.config import RunConfig, load_toml
    from sfnet.runs import HARDWARE_FIELDS, same_config

    cfg = RunConfig.load(trained / "config.toml")
    raw = load_toml(trained / "config.toml")
    assert same_config(cfg, raw) and same_config(raw, cfg.to_dict())
    other = RunConfig.load(trained / "config.toml")
    other.train.num_workers = cfg.train.num_workers + 3
    assert not same_config(cfg, other)
    assert same_config(cfg, other, ignore_train=HARDWARE_FIELDS)
    other.train.epochs += 1
    assert not same_config(cfg, other, ignore_train=HARDWARE_FIELDS)


def test_default_device(monkeypatch):
    import torch

    from sfnet.config import ConfigError
    from sfnet.runs import default_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device("auto") == torch.device("cpu")
    assert default_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA device"):
        default_device("cuda")
    with pytest.raises(ConfigError, match="'tpu'"):
        default_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device("auto") == torch.device("cuda")
