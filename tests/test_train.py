import dataclasses
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

from sfnet.cli import main
from sfnet.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from sfnet.errors import RunFolderError, UserError
from sfnet.train import fit
from tests.conftest import cli_on_one_thread


def toy_config(npz: Path, epochs: int = 3, k: int | None = 4, **train) -> RunConfig:
    """The toy set's run: 32 px, batch 32, lr 0.01; batch-norm statistics recomputed on 64 of the
    256 training galaxies (the default 2048 would take all of them: a third of an epoch)."""
    train = {"lr": 0.01, "bn_recompute": 64, **train}
    return RunConfig(
        DataConfig(path=str(npz), target="metallicity", crop=32),
        ModelConfig(k=k),
        TrainConfig(epochs=epochs, batch_size=32, **train),
    )


def test_short_training_beats_predicting_the_mean(toy_npz, tmp_path):
    # the bound was set on fp32 contiguous numerics (6 epochs with channels-last once landed at
    # 0.51x for redness); 3 epochs give 0.22x (radius) and 0.30x (redness)
    cfg = toy_config(toy_npz, epochs=3, amp=False, channels_last=False)
    res = fit(cfg, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    baseline = meta["extra"]["val_rmse_predict_mean"]
    # validation RMSE well below the spread of each target
    for name in ("radius", "redness"):
        assert res.val_rmse[name] < 0.5 * baseline[name], (name, res.val_rmse, baseline)
    hist = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == list(range(1, 4))
    assert set(hist[0]) >= {"train_loss", "val_rmse", "dead_features", "seconds", "lr"}
    # every training galaxy fires k = 4 features, so at most 512 - 4 can be dead
    assert all(isinstance(h["dead_features"], int) for h in hist)
    assert hist[-1]["dead_features"] <= 512 - 4
    assert hist[-1]["lr"] < 1e-4 * 0.01 * 10  # cosine annealed to ~0
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_dense_baseline_trains(tiny_npz, tmp_path):
    res = fit(tiny_config(tiny_npz, epochs=1, k=None), tmp_path / "dense")
    assert np.isfinite(list(res.val_rmse.values())).all()
    meta = json.loads((tmp_path / "dense" / "model.json").read_text())
    assert meta["k"] is None


def test_run_folder_is_never_overwritten_silently(tiny_npz, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    tiny_config(tiny_npz, epochs=1).save(out / "config.toml")  # an earlier (unfinished) run
    (out / "keep.txt").write_text("precious")
    with pytest.raises(RunFolderError, match="--overwrite"):
        fit(tiny_config(tiny_npz, epochs=1), out)
    assert (out / "keep.txt").read_text() == "precious"
    with pytest.raises(RunFolderError, match="keep.txt"):  # nor with --overwrite: not sfnet's
        fit(tiny_config(tiny_npz, epochs=1), out, overwrite=True)
    assert (out / "keep.txt").read_text() == "precious"
    (out / "keep.txt").unlink()
    fit(tiny_config(tiny_npz, epochs=1), out, overwrite=True)
    assert (out / "model.safetensors").exists()


def test_resume_of_finished_run_returns_it_unchanged(tiny_npz, tmp_path):
    out = tmp_path / "run"
    first = fit(tiny_config(tiny_npz, epochs=1), out)
    before = (out / "model.safetensors").stat().st_mtime_ns
    again = fit(tiny_config(tiny_npz, epochs=1), out, resume=True)
    assert again.val_rmse == first.val_rmse
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(RunFolderError, match="differs"):
        fit(tiny_config(tiny_npz, epochs=2), out, resume=True)


@pytest.mark.parametrize(
    "section, field, value, message",
    [
        ("train", "epochs", 0, "train.epochs"),
        ("train", "lr", -1.0, "train.lr"),
        ("train", "schedule", "linear", "train.schedule"),
        ("data", "target", "log10(mass", "data.target"),
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


def test_one_cycle_schedule_trains(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz, epochs=1)
    cfg.train.schedule = "one_cycle"
    res = fit(cfg, tmp_path / "run")
    assert np.isfinite(list(res.val_rmse.values())).all()


def _wait_for(path: Path, lines: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and len(path.read_text().splitlines()) >= lines:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("training too slow")


# --amp is bf16 + channels-last on a CPU with native bf16 (fp32 + channels-last elsewhere); it
# runs the stable recipe with every remedy on (a batch-norm sample smaller than the training
# split), the fp32 run the paper's recipe
# (the weight average is the one remedy with state of its own in the checkpoint)
STABLE_ALL = ["--bn-recompute", "24", "--warmup-epochs", "1", "--eval-weights", "ema"]


# The killed run: the real CLI in its own process, which stops in the middle of epoch 2 (after
# its first step, on the second loss of the epoch: the weights in memory have moved past the
# epoch-1 checkpoint), tells the test where it is, and waits there to be killed.
KILLED_MID_EPOCH_2 = """
import pathlib, sys, time
import sfnet.train
real, calls = sfnet.train.rmse_loss, [0]
def loss(pred, target):
    calls[0] += 1
    if calls[0] == 4:  # 2 steps per epoch: epoch 2, step 2
        pathlib.Path(sys.argv[1]).write_text("mid epoch 2")
        time.sleep(600)
    return real(pred, target)
sfnet.train.rmse_loss = loss
from sfnet.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(
    "precision",
    [["--amp", *STABLE_ALL], ["--no-amp", "--no-channels-last", "--recipe", "paper"]],
    ids=["amp-stable", "fp32-paper"],
)
def test_resume_after_sigkill_reaches_same_weights(tiny_npz, tmp_path, precision):
    args = ["train", "--data", str(tiny_npz), *TINY_ARGS, "--epochs", "3", *precision]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref"
    assert cli_on_one_thread([*args, "--out", str(ref)]) == 0  # the uninterrupted reference

    killed, marker = tmp_path / "killed", tmp_path / "mid-epoch"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_EPOCH_2, str(marker), *args, "--out", str(killed)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(marker, 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.safetensors").exists()
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"] == 1

    # resumed in this process, where the reference ran: nothing but the run folder carries over
    assert cli_on_one_thread(["train", "--resume", str(killed), "--no-progress"]) == 0
    a = load_file(str(ref / "model.safetensors"))
    b = load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    hist = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    ref_hist = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()]
    assert [h["val_rmse"] for h in hist] == [h["val_rmse"] for h in ref_hist]


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


#: 40 galaxies of 16 px (32 train, 8 val): two steps of 16 per epoch, for the fault tests.
TINY_ARGS = [
    "--crop",
    "16",
    "--k",
    "2",
    "--batch-size",
    "16",
    "--lr",
    "0.01",
    "--device",
    "cpu",
    "--no-progress",
]


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory) -> Path:
    from sfnet.data.dataset import save_npz
    from tests.conftest import make_toy_images

    images, y = make_toy_images(40, size=16, seed=5)
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    save_npz(path, images, y, np.arange(40), ["radius", "redness"])
    return path


def tiny_config(npz: Path, epochs: int = 3, k: int | None = 2) -> RunConfig:
    return RunConfig(
        DataConfig(path=str(npz), crop=16),
        ModelConfig(k=k),
        TrainConfig(epochs=epochs, batch_size=16, lr=0.01, device="cpu"),
    )


def _strict_json(line: str):
    """json.loads that refuses NaN/Infinity (which are not JSON)."""
    return json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_nonfinite_loss_stops_training_and_keeps_the_last_good_checkpoint(
    tiny_npz, tmp_path, monkeypatch
):
    import sfnet.train

    calls = {"n": 0}
    real = sfnet.train.rmse_loss

    def blows_up_in_epoch_2(pred, target):  # 2 steps per epoch: the 2nd step of epoch 2
        calls["n"] += 1
        loss = real(pred, target)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(sfnet.train, "rmse_loss", blows_up_in_epoch_2)
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"epoch 2, step 2") as err:
        fit(tiny_config(tiny_npz, epochs=3), out)
    assert "the checkpoint of epoch 1 is kept" in str(err.value)
    assert not (out / "model.safetensors").exists()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [_strict_json(x)["epoch"] for x in lines] == [1]


def test_diverging_lr_is_a_clear_cli_error_and_leaves_no_run(tiny_npz, tmp_path, capsys):

    out = tmp_path / "run"
    argv = ["train", "--data", str(tiny_npz), *TINY_ARGS, "--epochs", "2", "--out", str(out)]
    assert main([*argv, "--lr", "1e30"]) == 2
    err = capsys.readouterr().err
    assert "not finite" in err and "epoch 1" in err and "Traceback" not in err
    # no epoch completed: no checkpoint is promised (issue 18), none exists
    assert "no checkpoint" in err and "checkpoint is kept" not in err
    # it diverged before its first checkpoint: the staged new run is discarded, nothing is left
    assert not out.exists() and not (tmp_path / ".run.staging").exists()
    with pytest.raises(SystemExit):  # inf is not a learning rate: refused before any run
        main([*argv, "--lr", "inf", "--overwrite"])


def test_cuda_graphs_on_a_cpu_is_one_line_before_anything_is_written(tiny_npz, tmp_path, capsys):

    out = tmp_path / "run"
    argv = ["train", "--data", str(tiny_npz), *TINY_ARGS, "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--cuda-graphs"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.cuda_graphs needs a CUDA device" in err
    assert not out.exists() and not (tmp_path / ".run.staging").exists()


def test_cuda_graphs_is_recorded_in_config_toml_and_off_by_default(trained_toy_run):
    import tomllib

    saved = tomllib.loads((trained_toy_run / "config.toml").read_text())
    assert saved["train"]["cuda_graphs"] is False
    assert TrainConfig().cuda_graphs is False


def test_metrics_jsonl_refuses_nan(tmp_path):
    from sfnet.io import append_jsonl

    with pytest.raises(ValueError):
        append_jsonl(tmp_path / "m.jsonl", {"train_loss": float("nan")})


def test_kill_between_checkpoint_and_metrics_line_loses_no_epoch(tiny_npz, tmp_path, monkeypatch):
    import sfnet.train

    real = sfnet.train.append_jsonl

    def killed_at_epoch_2(path, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt  # the process dies right after checkpointing epoch 2
        real(path, record)

    out = tmp_path / "run"
    monkeypatch.setattr(sfnet.train, "append_jsonl", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(tiny_npz, epochs=3), out)
    monkeypatch.setattr(sfnet.train, "append_jsonl", real)
    res = fit(tiny_config(tiny_npz, epochs=3), out, resume=True)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [_strict_json(x)["epoch"] for x in lines] == [1, 2, 3]
    assert [h["epoch"] for h in res.history] == [1, 2, 3]


def test_resume_works_from_another_directory_and_after_moving_the_data(
    tiny_npz, tmp_path, monkeypatch
):
    import shutil

    import sfnet.train

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(tiny_npz, work / "toy.npz")
    monkeypatch.chdir(work)
    real = sfnet.train.append_jsonl

    def killed_after_epoch_2(path, record):  # after the first checkpoint swapped the run in
        real(path, record)
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(sfnet.train, "append_jsonl", killed_after_epoch_2)
    argv = ["train", "--data", "toy.npz", *TINY_ARGS, "--epochs", "3", "--out", "run"]
    assert main(argv) == 130
    monkeypatch.setattr(sfnet.train, "append_jsonl", real)
    stored = RunConfig.load(work / "run" / "config.toml").data.path
    assert Path(stored).is_absolute() and Path(stored) == (work / "toy.npz").resolve()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    shutil.move(work / "toy.npz", elsewhere / "moved.npz")  # the data moved: --data on resume
    other = elsewhere / "other.npz"
    from sfnet.data.dataset import save_npz
    from tests.conftest import make_toy_images

    images, y = make_toy_images(40, seed=9)
    save_npz(other, images, y, np.arange(40), ["radius", "redness"])
    run = str(work / "run")
    assert main(["train", "--resume", run, "--data", str(other), "--no-progress"]) == 2
    assert main(["train", "--resume", run, "--data", "moved.npz", "--no-progress"]) == 0
    assert (work / "run" / "model.safetensors").exists()
    assert RunConfig.load(work / "run" / "config.toml").data.path == str(elsewhere / "moved.npz")


def test_recompute_bn_gives_the_training_sample_statistics_like_torch_update_bn():
    # the stable recipe's batch-norm statistics are those of the training sample (torch's
    # update_bn on the same batches), whatever the running averages had drifted to
    from torch.optim.swa_utils import update_bn

    from sfnet.data.batches import Normalization
    from sfnet.model import SparseFeatureNet
    from sfnet.precision import FP32
    from sfnet.train import recompute_bn
    from tests.conftest import make_toy_images

    images, _ = make_toy_images(40, seed=3)
    norm = Normalization((0.1, 0.1, 0.1), (0.2, 0.2, 0.2))
    torch.manual_seed(0)
    ours = SparseFeatureNet(2, 1).eval()
    for m in ours.modules():  # stale statistics, as after a large step
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(5.0)
            m.running_var.fill_(9.0)
    ref = __import__("copy").deepcopy(ours)
    rows = np.array([3, 5, 8, 13, 21, 34, 1, 2, 30, 31])
    recompute_bn(ours, images, rows, 4, norm, FP32, torch.device("cpu"))
    batches = [norm.apply(torch.from_numpy(images[rows[i : i + 4]])) for i in (0, 4, 8)]
    update_bn(batches, ref)
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        if "running" in name:
            torch.testing.assert_close(a, b, msg=name)
    assert ours.trunk.bn1.momentum == 0.1 and not ours.training


def test_bn_sample_is_capped_seeded_and_the_same_on_every_call():
    from sfnet.train import bn_sample

    idx = np.arange(1000, 1300)
    a = bn_sample(idx, 64, seed=3)
    assert len(a) == 64 and len(set(a)) == 64 and set(a) <= set(idx)
    assert (np.diff(a) > 0).all()
    assert np.array_equal(a, bn_sample(idx, 64, seed=3))
    assert not np.array_equal(a, bn_sample(idx, 64, seed=4))
    assert np.array_equal(bn_sample(idx, 500, seed=3), idx)  # fewer than the cap: all


def _captured_trainer(monkeypatch):
    import sfnet.train

    seen = {}
    real = sfnet.train._build

    def build(*args, **kwargs):
        seen["tr"] = real(*args, **kwargs)
        return seen["tr"]

    monkeypatch.setattr(sfnet.train, "_build", build)
    return seen


def test_slow_eval_weights_are_lookaheads_slow_weights_and_are_what_is_saved(
    tiny_npz, tmp_path, monkeypatch
):
    seen = _captured_trainer(monkeypatch)
    cfg = tiny_config(tiny_npz, epochs=2)
    cfg.train.eval_weights, cfg.train.lookahead_k = "slow", 3  # 4 steps: one synchronisation
    fit(cfg, tmp_path / "run")
    tr = seen["tr"]
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    names = [n for n, _ in tr.model.named_parameters()]
    slows = [s for group in tr.opt.slow for s in group]
    for name, slow in zip(names, slows, strict=True):
        assert torch.equal(saved[name], slow), name
    assert any(not torch.equal(s, f) for s, f in zip(slows, tr.model.parameters(), strict=True))


def test_weight_average_skips_the_peak_phase_then_is_a_plain_mean_until_its_horizon():
    from sfnet.train import WeightAverage

    net = torch.nn.Linear(1, 1, bias=False)
    avg = WeightAverage(net, horizon_steps=4, start_step=2)  # decay 0.75, from the third step
    expected = None
    for n, w in enumerate([7.0, 8.0, 2.0, 4.0, 9.0, 1.0, 5.0, 3.0], start=-1):
        with torch.no_grad():
            net.weight.fill_(w)
        avg.update(net)
        if n < 1:  # the first two steps (the flat phase) are not averaged
            assert avg.averaged() is None and avg.updates == 0
            continue
        expected = w if n == 1 else expected + (w - expected) * max(1 / n, 0.25)
        assert avg.averaged()[0].item() == pytest.approx(expected)
    assert avg.params[0].item() == pytest.approx(
        ((2 + 4 + 9 + 1) / 4 * 0.75 + 5 * 0.25) * 0.75 + 0.75
    )
    assert (avg.steps, avg.updates) == (8, 6)


def test_weight_average_of_an_older_checkpoint_keeps_averaging_from_where_it_was():
    from sfnet.train import WeightAverage

    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(4.0)
    avg = WeightAverage(net, horizon_steps=10, start_step=5)
    # a checkpoint written before the average started at the anneal: no step count
    avg.load_state_dict({"params": [torch.full((1, 1), 2.0)], "updates": 2})
    avg.update(net)  # averaged like before (mean of three), not skipped as a peak-phase step
    assert (avg.steps, avg.updates) == (3, 3)
    assert avg.averaged()[0].item() == pytest.approx((2.0 * 2 + 4.0) / 3)


def test_ema_eval_weights_are_the_weight_average_and_are_what_is_saved(
    tiny_npz, tmp_path, monkeypatch
):
    seen = _captured_trainer(monkeypatch)
    cfg = tiny_config(tiny_npz, epochs=3)
    cfg.train.eval_weights, cfg.train.bn_recompute = "ema", 0
    cfg.train.flat_fraction = 1 / 3  # the average starts after the first step of the cosine
    fit(cfg, tmp_path / "run")
    tr = seen["tr"]
    assert tr.ema is not None and tr.ema.updates == 2 * tr.steps_per_epoch - 1
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    names = [n for n, _ in tr.model.named_parameters()]
    for name, avg in zip(names, tr.ema.params, strict=True):
        assert torch.equal(saved[name], avg), name
    assert any(
        not torch.equal(a, f) for a, f in zip(tr.ema.params, tr.model.parameters(), strict=True)
    )


def test_stable_recipe_records_its_remedies_and_paper_recipe_trains_exactly_as_before(
    tiny_npz, tmp_path, monkeypatch
):
    import sfnet.train

    def losses(recipe: str, out: Path) -> list:
        cfg = tiny_config(tiny_npz, epochs=2)
        cfg.train.recipe = recipe
        cfg.train.warmup_epochs, cfg.train.eval_weights = 1.0, "slow"
        res = fit(cfg, out)
        return [(h["train_loss"], h["val_rmse"], h["lr"]) for h in res.history]

    stable = losses("stable", tmp_path / "stable")
    stored = RunConfig.load(tmp_path / "stable" / "config.toml").train
    assert (stored.recipe, stored.bn_recompute, stored.warmup_epochs, stored.eval_weights) == (
        "stable",
        2048,
        1.0,
        "slow",
    )
    paper = losses("paper", tmp_path / "paper")
    assert paper != stable
    # the paper's recipe = the training loop with every remedy hook bypassed
    real = sfnet.train.make_scheduler
    monkeypatch.setattr(sfnet.train, "eval_model", lambda tr: tr.model)
    monkeypatch.setattr(  # no warm-up, the paper's flat fraction
        sfnet.train,
        "make_scheduler",
        lambda o, c, n, warmup_steps=0: real(o, dataclasses.replace(c, recipe="paper"), n),
    )
    assert losses("stable", tmp_path / "bypassed") == paper
