"""Galaxy-pretrained trunks end to end (no network: a tiny timm encoder in a local hub cache
stands in for Zoobot's) and ``sfnet embed``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from sfnet.analysis.probes import load_feature_table
from sfnet.cli import main
from tests.conftest import toy_train_args
from tests.test_model import HUB_REPO, HUB_REV

ENCODER = f"hf_hub:{HUB_REPO}"


def test_sfnet_on_a_hub_encoder_trains_predicts_analyses_explains_offline(
    hub_cache, small_npz, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    argv = ["train", "--data", str(small_npz), "--out", str(run), *toy_train_args(1)]
    argv += ["--backbone", ENCODER, "--pretrained", "hub", "--batch-size", "16"]
    assert main(argv) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["backbone"] == ENCODER and meta["d"] == 96
    assert meta["encoder"]["weights"]["repo"] == HUB_REPO
    assert meta["encoder"]["weights"]["revision"] == HUB_REV
    assert len(meta["encoder"]["weights"]["sha256"]) == 64
    # pretrained_cfg normalisation, not per-channel statistics of the data
    assert meta["image_mean"] == pytest.approx(meta["encoder"]["mean"])

    # the cache is gone: everything after training rebuilds the trunk from model.json alone
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    assert main(["predict", str(run), "--out", str(tmp_path / "p.csv")]) == 0
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == 96 and pred["feature_1"].between(-1, 95).all()
    assert main(["analyze", str(run)]) == 0
    assert (run / "activations.npz").is_file()
    from sfnet.analysis.activations import SparseActivations

    oid = str(SparseActivations.load(run / "activations.npz").objid[0])
    assert main(["explain", str(run), "--objid", oid, "--out", str(tmp_path / "ex")]) == 0
    assert (tmp_path / "ex" / f"{oid}.json").is_file()

    # sfnet embed RUN: the trunk's pooled features, in the format the probes read
    out = tmp_path / "trunk.parquet"
    assert main(["embed", str(run), "--out", str(out)]) == 0
    from sfnet.predict import pooled_features
    from sfnet.runs import load_run

    r = load_run(run)
    data = r.data()
    feats = load_feature_table(out, data.objid)
    np.testing.assert_allclose(feats, pooled_features(r, data.images), atol=1e-6)


def test_embed_an_encoder_from_the_cache(hub_cache, small_npz, tmp_path):
    import timm
    from safetensors.torch import load_file

    out = tmp_path / "emb.parquet"
    argv = ["embed", ENCODER, "--data", str(small_npz), "--crop", "32", "--size", "32"]
    assert main([*argv, "--out", str(out)]) == 0
    z = np.load(small_npz)
    feats = load_feature_table(out, z["objID"])
    assert feats.shape == (96, 96)
    # the encoder's own embedding of the images normalised with its pretrained_cfg
    enc = timm.create_model("test_resnet", num_classes=0)
    snap = next(hub_cache.glob("models--*/snapshots/*"))
    enc.load_state_dict(load_file(str(snap / "model.safetensors")))
    cfg = enc.pretrained_cfg
    x = torch.from_numpy(z["images"][:5]).float() / 255
    x = (x - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.inference_mode():
        ref = enc.eval()(x).numpy()
    np.testing.assert_allclose(feats[:5], ref, atol=1e-4)


def test_zoobot_without_cached_weights_is_one_line_before_any_work(
    small_npz, tmp_path, monkeypatch, capsys
):
    empty = tmp_path / "empty"
    monkeypatch.setenv("HF_HUB_CACHE", str(empty))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["embed", "zoobot", "--data", str(small_npz), "--crop", "32"]
    assert main([*argv, "--out", str(tmp_path / "z.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(empty / "models--mwalmsley--zoobot-encoder-resnet18") in err[0]
    assert not (tmp_path / "z.parquet").exists()
    # reproduce --features zoobot computes them itself; without weights it stops before training
    from sfnet.model import PretrainedWeightsError
    from sfnet.workflows.reproduce import run_reproduce

    with pytest.raises(PretrainedWeightsError, match="hf download mwalmsley"):
        run_reproduce(tmp_path / "rep", str(small_npz), quick=True, features="zoobot", crop=32)
    assert not (tmp_path / "rep" / "runs").exists()
