import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sfnet.cli import main
from sfnet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from sfnet.data.dataset import load_dataset
from sfnet.errors import DataError, RunFolderError
from sfnet.predict import predict
from sfnet.runs import is_finished, load_run, read_metrics
from sfnet.train import fit


@pytest.fixture(scope="module")
def trained(trained_toy_run):
    return trained_toy_run


def test_save_load_round_trip_gives_identical_predictions(trained):
    run = load_run(trained)
    data = run.data()
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


# --------------------------------------------------------- --overwrite never loses anything


def _small_npz(path: Path, n: int = 48, seed: int = 0) -> Path:
    from sfnet.data.dataset import save_npz
    from tests.conftest import make_toy_images

    images, y = make_toy_images(n, size=16, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, images, y, np.arange(n, dtype=np.int64) + 1, ["radius", "redness"])
    return path


def _cfg(data: Path, epochs: int = 1) -> RunConfig:
    return RunConfig(
        DataConfig(path=str(data), target="metallicity", crop=16),
        ModelConfig(k=2),
        TrainConfig(epochs=epochs, batch_size=16, lr=0.01, device="cpu"),
    )


def test_overwrite_refuses_the_data_folder_itself(tmp_path):
    data = _small_npz(tmp_path / "D" / "toy.npz")
    for out in (tmp_path / "D", tmp_path):  # the data folder, or a folder containing it
        with pytest.raises(RunFolderError, match="data being trained on"):
            fit(_cfg(data), out, overwrite=True)
    assert data.is_file()


def test_overwrite_refuses_a_folder_sfnet_did_not_make(tmp_path):
    data = _small_npz(tmp_path / "toy.npz")
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(RunFolderError, match="not an sfnet run folder"):
        fit(_cfg(data), out, overwrite=True)
    assert (out / "thesis.tex").read_text() == "precious"


@pytest.fixture
def small_run(tmp_path):
    """A finished one-epoch run ``tmp_path/run`` on 24 tiny galaxies, and its data."""
    data = _small_npz(tmp_path / "toy.npz", n=24)
    fit(_cfg(data), tmp_path / "run")
    return tmp_path / "run", data


def test_failed_overwrite_keeps_the_old_run(small_run, tmp_path):
    out, _ = small_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DataError):
        fit(_cfg(bad), out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.")]
    assert leftovers == []  # no staging folder (and no lock file) left behind


def test_overwrite_replaces_a_run_once_the_new_one_has_a_checkpoint(small_run):
    out, data = small_run
    (out / "analysis.json").write_text("{}")  # belongs to the old model
    seen = []

    def on_epoch(rec):  # the swap happened before the first epoch is reported
        seen.append(sorted(p.name for p in out.iterdir()))

    fit(_cfg(data), out, overwrite=True, on_epoch=on_epoch)
    assert "checkpoint.pt" in seen[0] and "analysis.json" not in seen[0]
    assert len(read_metrics(out / "metrics.jsonl")) == 1 and is_finished(out)
    assert not (out / "analysis.json").exists()


def test_overwrite_never_deletes_what_the_user_put_in_a_run_folder(small_run, tmp_path, capsys):
    out, data = small_run
    (out / "notes.md").write_text("seed 0 looks odd")
    (out / "mine").mkdir()
    (out / "mine" / "fig.png").write_bytes(b"png")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    argv = ["train", "--config", str(out / "config.toml"), "--out", str(out), "--overwrite"]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mine, notes.md" in err and "sfnet did not write" in err
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.")] == []
    # what sfnet writes (analysis outputs, a temporary file left by a killed write) is replaced
    (out / "notes.md").unlink()
    shutil.rmtree(out / "mine")
    (out / "features.csv").write_text("feature\n")
    (out / ".model.json.4242-0a1b2c3d.tmp").write_text("{")
    fit(_cfg(data), out, overwrite=True)
    assert is_finished(out) and not (out / "features.csv").exists()


def test_overwrite_never_deletes_what_the_user_put_in_figures_or_explain(small_run, capsys):
    out, data = small_run
    sfnets = ["figures/feature_Z1.png", "figures/maps_Z1.pdf", "figures/histograms.png"]
    sfnets += ["explain/1237.png", "explain/1237.json", "figures/.correlation.png.7-ab12.tmp"]
    users = ["figures/my_bpt.png", "explain/notes.txt", "explain/hubble.png", "explain/m31.json"]
    for rel in sfnets + users:
        (out / rel).parent.mkdir(exist_ok=True)
        (out / rel).write_bytes(b"x")
    explanation = {"run": str(out), "objID": "1237", "prediction": {}, "features": []}
    (out / "explain" / "1237.json").write_text(json.dumps(explanation))  # as explain writes it
    (out / "figures" / "mine").mkdir()
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    argv = ["train", "--config", str(out / "config.toml"), "--out", str(out), "--overwrite"]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    for rel in [*users, "figures/mine"]:
        assert rel in err
    assert not any(rel in err for rel in sfnets)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    for rel in users:
        (out / rel).unlink()
    (out / "figures" / "mine").rmdir()
    fit(_cfg(data), out, overwrite=True)  # sfnet's own figures and explanations are replaced
    assert is_finished(out) and not (out / "figures").exists()


def test_out_that_is_a_file_is_one_clear_line(tmp_path, capsys):
    data = _small_npz(tmp_path / "toy.npz")
    out = tmp_path / "run.txt"
    out.write_text("x")
    argv = ["train", "--data", str(data), "--out", str(out), "--crop", "16", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file" in err and str(out) in err and len(err.splitlines()) == 1


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
        predict(run, run.data().images, batch_size=0)


# ------------------------------------- a run folder is recognised by what sfnet wrote in it


@pytest.mark.parametrize(
    "files",
    [
        {  # a static site: its config.toml is not sfnet's, the thesis must survive
            "config.toml": 'baseURL = "https://example.org"\ntitle = "Me"\n[params]\nx = 1\n',
            "thesis.pdf": "%PDF precious",
        },
        {  # a Hugging Face model folder
            "config.json": '{"model_type": "bert"}',
            "model.safetensors": "weights",
            "README.md": "card",
        },
        {  # common names, someone else's content
            "model.json": '{"name": "x"}',
            "metrics.jsonl": '{"acc": 1}\n',
            "checkpoint.pt": "x",
        },
        {  # sfnet-shaped config.toml, but a model.json sfnet did not write
            "config.toml": '[data]\ntarget = "metallicity"\n[model]\nk = 2\n[train]\nepochs = 1\n',
            "model.json": '["not", "sfnet"]',
        },
    ],
)
def test_overwrite_refuses_folders_that_only_share_file_names(tmp_path, files):
    data = _small_npz(tmp_path / "toy.npz")
    out = tmp_path / "site"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    with pytest.raises(RunFolderError, match="not an sfnet run folder"):
        fit(_cfg(data), out, overwrite=True)
    assert {p.name: p.read_text() for p in out.iterdir()} == files


def test_a_run_is_marked_as_sfnet_and_recognised(small_run):
    import json

    from sfnet.runs import is_run_folder

    out, _ = small_run
    assert json.loads((out / "model.json").read_text())["format"] == "sfnet-run"
    assert is_run_folder(out)


def test_out_dot_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    import sfnet.train

    data = _small_npz(tmp_path / "toy.npz")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    def no_training(*a, **k):
        raise AssertionError("trained before refusing --out")

    monkeypatch.setattr(sfnet.train, "_fit", no_training)
    for out in (".", str(work), ".."):
        argv = ["train", "--data", str(data), "--out", out, "--crop", "16", "--no-progress"]
        assert main([*argv, "--overwrite"]) == 2
        err = capsys.readouterr().err.strip()
        assert "cannot be a run folder" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.npz", "work"]


def test_resume_after_a_kill_during_the_swap_leaves_no_old_run_behind(small_run, tmp_path):
    import shutil

    out, data = small_run
    # a kill between the exchange and the removal: .run.staging holds the previous run
    shutil.copytree(out, tmp_path / ".run.staging")
    (tmp_path / ".run.old").mkdir()
    fit(_cfg(data), out, resume=True)
    assert is_finished(out)
    assert not (tmp_path / ".run.staging").exists() and not (tmp_path / ".run.old").exists()


def test_a_junk_line_in_metrics_is_one_line_naming_file_and_line(small_run, capsys):
    out, _ = small_run
    with open(out / "metrics.jsonl", "a") as f:
        f.write("garbage{\n")
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{out / 'metrics.jsonl'}: line 2 is not a JSON record" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("option", ["--seed", "--split-seed"])
@pytest.mark.parametrize("value", ["1e14", str(2**64), "-1"])
def test_out_of_range_seeds_are_one_line(tmp_path, capsys, option, value):
    data = _small_npz(tmp_path / "toy.npz")
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "r"), option, value]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--crop", "16", "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}: must be an integer >= 0 and <= 4294967295" in err
    assert not (tmp_path / "r").exists()


def test_train_on_a_full_disk_is_one_line_and_keeps_the_old_run(small_run, capsys, monkeypatch):
    import errno

    import torch

    import sfnet.io

    out, data = small_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(obj, f, *a, **k):  # what torch.save raises when the disk fills mid-write
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(sfnet.io, "_disk_full", lambda folder: True)
    argv = ["train", "--data", str(data), "--out", str(out), "--crop", "16", "--no-progress"]
    argv += ["--k", "2", "--epochs", "1", "--batch-size", "16", "--device", "cpu"]
    assert main([*argv, "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "checkpoint.pt: no space left" in err and len(err.splitlines()) == 1
    assert "unexpected pos" not in err and errno.ENOSPC
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# ------------------------------------------------------ model.json and checkpoint.pt validated


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """An untrained finished run folder (shared, read only)."""
    from tests.test_predict import _dataset, _run_folder

    root = tmp_path_factory.mktemp("tiny")
    return _run_folder(root / "run", _dataset(root / "D"))


def _tiny_run(tmp_path: Path, base: Path) -> Path:
    """A copy of ``base`` whose model.json can be edited (the weights are linked, not copied)."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.toml", "model.json"):
        (run / name).write_bytes((base / name).read_bytes())
    (run / "model.safetensors").symlink_to(base / "model.safetensors")
    return run


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: [m], "expected a JSON object, got a list"),
        (lambda m: {k: v for k, v in m.items() if k != "target_std"}, "missing key 'target_std'"),
        (lambda m: {**m, "k": "four"}, "'k' must be null or an integer"),
        (lambda m: {**m, "k": 600}, r"'k' must be null or an integer in 1..d=512"),
        (lambda m: {**m, "crop": 16.5}, "'crop' must be an integer"),
        (lambda m: {**m, "target_mean": [float("nan")]}, "'target_mean' has non-finite"),
        (lambda m: {**m, "target_std": ["x"]}, "'target_std' must be a list of numbers"),
        (lambda m: {**m, "image_std": [0.25, 0.0, 0.25]}, "'image_std' must be > 0"),
        (lambda m: {**m, "target_names": "oh_p50"}, "'target_names' must be a non-empty list"),
        (lambda m: {**m, "precision": {"autocast": "fp8"}}, "'precision' must be null or"),
        (lambda m: {**m, "crop": 20}, r"crop = 20 but .*config.toml has data.crop = 16"),
        (lambda m: {**m, "k": 3}, r"k = 3 but .*config.toml has model.k = 2"),
    ],
)
def test_malformed_model_json_is_one_line_naming_the_file(
    tiny_run, tmp_path, capsys, change, message
):
    import json

    run = _tiny_run(tmp_path, tiny_run)
    meta = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps(change(meta)))
    with pytest.raises(RunFolderError, match=message) as e:
        load_run(run)
    assert str(e.value).startswith(str(run / "model.json")) and "\n" not in str(e.value)
    assert main(["predict", str(run), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.json" in err and "Traceback" not in err


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("kind", ["empty", "truncated", "malicious", "a list"])
def test_bad_checkpoint_is_one_line_and_never_unpickled(tmp_path, monkeypatch, kind):
    import pickle

    import torch

    from sfnet.runs import load_checkpoint

    monkeypatch.chdir(tmp_path)
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.zeros(3)}, "epoch": 1}, good)
    path = tmp_path / "run" / "checkpoint.pt"
    path.parent.mkdir()
    content = {
        "empty": b"",
        "truncated": good.read_bytes()[:40],
        "malicious": pickle.dumps(_Boom()),
        "a list": None,
    }[kind]
    if content is None:
        torch.save([1, 2], path)
    else:
        path.write_bytes(content)
    with pytest.raises(RunFolderError, match="checkpoint") as e:
        load_checkpoint(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    assert not (tmp_path / "PWNED").exists()
    # resuming a run folder that holds it: the same one line, nothing unpickled
    data = _small_npz(tmp_path / "d.npz", n=24)
    _cfg(data).save(path.parent / "config.toml")
    with pytest.raises(RunFolderError, match="checkpoint.pt: "):
        fit(_cfg(data), path.parent, resume=True)
    assert not (tmp_path / "PWNED").exists()


def test_head_weights_are_read_once_for_every_consumer(tiny_run, monkeypatch):
    """Equations, explain's contribution maps and reproduce take the head from Run.head (one
    read, one dtype): changing it there changes what each of them computes."""
    import inspect

    from sfnet.analysis.activations import SparseActivations
    from sfnet.analysis.equations import equations_for_run
    from sfnet.runs import Run

    run = load_run(tiny_run)
    w, b = run.head()
    assert w.dtype == b.dtype == np.float64 and w.shape == (1, 512) and b.shape == (1,)
    rng = np.random.default_rng(0)
    idx = np.stack([rng.choice(8, 2, replace=False) for _ in range(12)])
    acts = SparseActivations(np.arange(12), np.arange(12), idx, rng.uniform(0.1, 1, (12, 2)), 512)
    before = equations_for_run(run, acts, "metallicity").equations[0]
    monkeypatch.setattr(Run, "head", lambda self: (2 * w, 2 * b))
    after = equations_for_run(run, acts, "metallicity").equations[0]
    f = int(before.features[0])
    assert after.coefficient(f) == pytest.approx(2 * before.coefficient(f))
    import sfnet.analysis.equations
    import sfnet.analysis.maps
    import sfnet.workflows.explain
    import sfnet.workflows.reproduce

    for module in (sfnet.analysis.equations, sfnet.analysis.maps, sfnet.workflows.explain,
                   sfnet.workflows.reproduce):  # fmt: skip
        assert "model.head" not in inspect.getsource(module), module.__name__
