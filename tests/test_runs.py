import numpy as np
import pytest

from sfnet.data.dataset import load_dataset
from sfnet.errors import RunFolderError
from sfnet.predict import pooled_features, predict
from sfnet.runs import is_finished, load_run
from sfnet.train import fit
from tests.test_train import toy_config


@pytest.fixture(scope="module")
def trained(toy_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "k4"
    fit(toy_config(toy_npz, epochs=1), out)
    return out


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


def test_predictions_are_physical_and_head_is_linear_in_features(trained):
    run = load_run(trained)
    data = run.load_data()
    p = predict(run, data.images)
    f = pooled_features(run, data.images)
    assert f.shape == (len(data), 512)
    # rebuild the prediction from the top-k features by hand: head(sparse) * std + mean
    w = run.model.head.weight.detach().numpy()
    b = run.model.head.bias.detach().numpy()
    sparse = np.zeros_like(f)
    np.put_along_axis(sparse, p.indices, p.values, axis=1)
    manual = run.meta.to_physical(sparse @ w.T + b)
    np.testing.assert_allclose(manual, p.predictions, atol=1e-3)
    assert abs(p.predictions[:, 0].mean() - data.y[:, 0].mean()) < 2 * data.y[:, 0].std()


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


def test_a_model_with_non_finite_weights_is_refused(trained, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    bad = tmp_path / "diverged"
    shutil.copytree(trained, bad)
    state = load_file(str(bad / "model.safetensors"))
    state["head.weight"][0, 0] = float("nan")
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(RunFolderError, match="non-finite weights in head.weight"):
        load_run(bad)


def test_predict_refuses_a_batch_size_below_one(trained):
    from sfnet.config import ConfigError

    run = load_run(trained)
    with pytest.raises(ConfigError, match="batch size must be an integer >= 1"):
        predict(run, run.load_data().images, batch_size=0)
