import numpy as np
import pytest
import torch

from sfnet.errors import UserError
from sfnet.model import PretrainedWeightsError, SparseFeatureNet, TopK


def test_topk_keeps_exactly_k_positive_entries():
    x = torch.tensor([[0.1, 5.0, 3.0, 0.2, 4.0, 1.0]])
    out = TopK(3)(x)
    assert torch.equal(out, torch.tensor([[0.0, 5.0, 3.0, 0.0, 4.0, 0.0]]))
    assert int((out != 0).sum()) == 3


def test_topk_ties_still_keep_exactly_k():
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.5]])
    out = TopK(2)(x)
    assert int((out != 0).sum()) == 2
    assert set(out[out != 0].tolist()) == {1.0}


def test_topk_fewer_than_k_positive_values_are_not_active():
    x = torch.relu(torch.tensor([[2.0, -1.0, -3.0, 0.0, -0.5]]))
    sparse, values, indices = TopK(3).select(x)
    assert int((sparse > 0).sum()) == 1  # only one feature is active, though 3 were "picked"
    assert values[0, 0] == 2.0 and indices[0, 0] == 0
    assert torch.all(values[0, 1:] == 0)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_topk_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        TopK(k)


def test_topk_rejects_k_not_below_d():
    with pytest.raises(ValueError, match="smaller than"):
        TopK(8, d=8)
    with pytest.raises(ValueError, match="smaller than"):
        TopK(4)(torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"model.k"):
        from sfnet.config import ModelConfig

        ModelConfig(k=512).validate()


def test_topk_gradient_flows_only_through_kept_entries():
    x = torch.tensor([[0.3, 2.0, 1.0, 0.1]], requires_grad=True)
    TopK(2)(x).sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 1.0, 0.0]]


def test_sfnet_output_shapes_and_sparsity():
    torch.manual_seed(0)
    net = SparseFeatureNet(k=4, n_targets=3).eval()
    out = net(torch.randn(5, 3, 32, 32))
    assert out.predictions.shape == (5, 3)
    assert out.sparse.shape == (5, 512)
    assert out.indices.shape == (5, 4) and out.values.shape == (5, 4)
    assert ((out.sparse != 0).sum(dim=1) <= 4).all()
    # the head sees only the sparse features
    assert torch.allclose(out.predictions, net.head(out.sparse), atol=1e-6)
    assert torch.equal(net.sparse(x := torch.randn(2, 3, 32, 32)), net(x).sparse)


def test_dense_baseline_has_no_topk():
    torch.manual_seed(0)
    net = SparseFeatureNet(k=None, n_targets=1).eval()
    x = torch.randn(3, 3, 32, 32)
    out = net(x)
    assert net.topk is None and out.indices is None
    assert torch.equal(out.sparse, net.pooled(x))
    assert (out.sparse != 0).sum(dim=1).min() > 4


def test_pretrained_from_state_dict_file(tmp_path):
    import torchvision

    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    net = SparseFeatureNet(k=2, n_targets=1, pretrained=str(path))
    assert torch.equal(net.trunk.conv1.weight, ref.conv1.weight)


def _plant_imagenet_file(tmp_path, monkeypatch, payload_path=None, published_ok=True):
    """A resnet18 file in TORCH_HOME's hub cache; the published URL's hash prefix is the file's
    own (published_ok) or not. Returns the random reference network."""
    import hashlib

    import torchvision

    import sfnet.model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(2)
    ref = torchvision.models.resnet18(weights=None)
    ckpt = tmp_path / "hub" / "checkpoints" / "planted.pth"
    ckpt.parent.mkdir(parents=True)
    if payload_path is None:
        torch.save(ref.state_dict(), ckpt)
    else:
        ckpt.write_bytes(payload_path.read_bytes())
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    prefix = digest[:8] if published_ok else ("0" if digest[0] != "0" else "1") + digest[1:8]
    name = f"resnet18-{prefix}.pth"
    ckpt.rename(ckpt.with_name(name))
    monkeypatch.setattr(sfnet.model, "RESNET18_IMAGENET_URL", f"https://example.invalid/{name}")
    return ref


def test_pretrained_imagenet_uses_hub_cache_when_its_hash_is_torchvisions(tmp_path, monkeypatch):
    ref = _plant_imagenet_file(tmp_path, monkeypatch)
    net = SparseFeatureNet(k=2, n_targets=1, pretrained="imagenet")
    assert torch.equal(net.trunk.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)


class _Exploit:
    """A pickle whose loading writes a marker file (what a planted checkpoint could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_imagenet_file_is_refused_not_unpickled(tmp_path, monkeypatch):
    # issue 18 item 3: a planted resnet18-*.pth ran code through full unpickling
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _Exploit(marker)}, evil)
    assert not marker.exists()
    _plant_imagenet_file(tmp_path, monkeypatch, payload_path=evil, published_ok=False)
    with pytest.raises(PretrainedWeightsError, match=r"sha256 .* published .*refused") as e:
        SparseFeatureNet(k=2, n_targets=1, pretrained="imagenet")
    assert "\n" not in str(e.value) and not marker.exists()
    # even with a matching hash (and as a user's own path) nothing is unpickled: weights_only
    monkeypatch.undo()
    _plant_imagenet_file(tmp_path / "2", monkeypatch, payload_path=evil, published_ok=True)
    for pretrained in ("imagenet", str(evil)):
        with pytest.raises(PretrainedWeightsError, match="refused, not a plain tensor") as e:
            SparseFeatureNet(k=2, n_targets=1, pretrained=pretrained)
        assert "\n" not in str(e.value) and not marker.exists()


def test_imagenet_file_with_a_wrong_hash_is_refused(tmp_path, monkeypatch):
    _plant_imagenet_file(tmp_path, monkeypatch, published_ok=False)
    with pytest.raises(PretrainedWeightsError, match=r"resnet18-.*sha256 .* refused"):
        SparseFeatureNet(k=2, n_targets=1, pretrained="imagenet")


def test_pretrained_errors_say_where_to_put_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # no network in tests: make the download fail immediately
    import torch.hub

    def refuse(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(PretrainedWeightsError, match=r"hub.*checkpoints.*resnet18-"):
        SparseFeatureNet(k=2, n_targets=1, pretrained="imagenet")
    with pytest.raises(PretrainedWeightsError, match="not found"):
        SparseFeatureNet(k=2, n_targets=1, pretrained=str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(PretrainedWeightsError, match="missing"):
        SparseFeatureNet(k=2, n_targets=1, pretrained=str(bad))


def test_topk_selects_on_fp32_pooled_features_under_bf16_autocast():
    torch.manual_seed(0)
    net = SparseFeatureNet(k=2, n_targets=1).eval()
    maps = []
    net.trunk.layer4.register_forward_hook(lambda m, i, o: maps.append(o))
    x = torch.randn(3, 3, 64, 64)  # 2x2 last feature map: fp32 pooling adds resolution
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert maps[0].dtype == torch.bfloat16
    assert out.sparse.dtype == torch.float32 and out.values.dtype == torch.float32
    assert out.predictions.dtype == torch.float32  # the head is exact: fp32
    pooled = torch.relu(maps[0].float().mean(dim=(2, 3)))
    assert torch.equal(out.indices, torch.topk(pooled, 2, dim=1).indices)


# --- timm and Hugging Face hub trunks (no network: a tiny encoder stands in for the hub) ---

HUB_REPO = "sfnet-test/tiny-encoder"
HUB_REV = "0123456789abcdef0123456789abcdef01234567"


def make_hub_encoder(
    cache, repo: str = HUB_REPO, arch: str = "test_resnet", in_chans: int = 3, seed: int = 0
):
    """Save a small timm encoder in the hub cache's layout (what ``hf download`` leaves):
    ``models--ORG--NAME/snapshots/REV/{config.json, model.safetensors}`` and ``refs/main``.
    Returns the snapshot folder."""
    import timm
    from timm.models._hub import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=0, in_chans=in_chans)
    snap = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / HUB_REV
    args = {"in_chans": in_chans} if in_chans != 3 else None
    save_for_hf(model, snap, model_args=args, safe_serialization=True)
    (snap.parent.parent / "refs").mkdir(exist_ok=True)
    (snap.parent.parent / "refs" / "main").write_text(HUB_REV)
    return snap


def test_hub_encoder_loads_from_the_cache_and_records_its_identity(hub_cache):
    import hashlib

    from safetensors.torch import load_file

    snap = hub_cache / f"models--{HUB_REPO.replace('/', '--')}" / "snapshots" / HUB_REV
    saved = load_file(str(snap / "model.safetensors"))
    net = SparseFeatureNet(k=3, n_targets=2, backbone=f"hf_hub:{HUB_REPO}", pretrained="hub")
    assert net.d == 96  # test_resnet's num_features: TopK acts on the encoder's width
    for name, value in net.trunk.encoder.state_dict().items():
        assert torch.equal(value, saved[name]), name
    spec = net.encoder_spec.record()
    assert spec["architecture"] == "test_resnet" and spec["num_features"] == 96
    sha = hashlib.sha256((snap / "model.safetensors").read_bytes()).hexdigest()
    assert spec["weights"] == {
        "repo": HUB_REPO,
        "revision": HUB_REV,
        "file": "model.safetensors",
        "sha256": sha,
    }
    # rebuilt from the record alone: same architecture, no cache needed
    again = SparseFeatureNet(3, 2, backbone=f"hf_hub:{HUB_REPO}", encoder=spec)
    assert again.state_dict().keys() == net.state_dict().keys()
    x = torch.randn(2, 3, 32, 32)
    out = net.eval()(x)
    assert out.sparse.shape == (2, 96) and ((out.sparse != 0).sum(dim=1) <= 3).all()
    maps = net.feature_maps(x)  # spatial maps average exactly to the pooled features
    torch.testing.assert_close(maps.mean(dim=(2, 3)), net.pooled(x), atol=1e-6, rtol=0)


def test_local_safetensors_file_stands_in_for_the_hub(hub_cache, tmp_path):
    snap = hub_cache / f"models--{HUB_REPO.replace('/', '--')}" / "snapshots" / HUB_REV
    local = tmp_path / "mine.safetensors"
    local.write_bytes((snap / "model.safetensors").read_bytes())
    net = SparseFeatureNet(k=2, n_targets=1, backbone="test_resnet", pretrained=str(local))
    hub = SparseFeatureNet(k=2, n_targets=1, backbone=f"hf_hub:{HUB_REPO}", pretrained="hub")
    for (name, a), b in zip(
        net.trunk.state_dict().items(), hub.trunk.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert net.encoder_spec.weights["path"] == str(local.resolve())
    pickled = tmp_path / "mine.pth"
    torch.save({}, pickled)
    with pytest.raises(PretrainedWeightsError, match="safetensors only"):
        SparseFeatureNet(k=2, n_targets=1, backbone="test_resnet", pretrained=str(pickled))


def test_missing_hub_weights_offline_give_one_line_naming_the_cache(tmp_path, monkeypatch):
    empty = tmp_path / "empty-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(empty))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsError) as e:
        SparseFeatureNet(
            2, 1, backbone="hf_hub:mwalmsley/zoobot-encoder-resnet18", pretrained="hub"
        )
    msg = str(e.value)
    assert "\n" not in msg
    assert str(empty / "models--mwalmsley--zoobot-encoder-resnet18") in msg
    assert "hf download mwalmsley/zoobot-encoder-resnet18" in msg and "refs/main" in msg


def test_greyscale_encoder_sees_the_mean_of_gri(tmp_path, monkeypatch):
    cache = tmp_path / "c"
    make_hub_encoder(cache, repo="sfnet-test/grey", in_chans=1)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sfnet.model import pretrained_normalization

    net = SparseFeatureNet(2, 1, backbone="hf_hub:sfnet-test/grey", pretrained="hub").eval()
    assert net.encoder_spec.in_chans == 1
    x = torch.randn(2, 3, 32, 32)
    grey = torch.relu(net.trunk.encoder.forward_features(x.mean(dim=1, keepdim=True)))
    torch.testing.assert_close(net.pooled(x), grey.mean(dim=(2, 3)))
    mean, std = pretrained_normalization("hf_hub:sfnet-test/grey", "hub")
    assert len(mean) == len(std) == 3


def test_bad_backbone_name_and_k_too_large_are_config_errors():
    from sfnet.config import ConfigError, ModelConfig

    with pytest.raises(ConfigError, match="model.backbone.*timm"):
        ModelConfig(backbone="no_such_net").validate()
    ModelConfig(backbone="convnext_atto", k=400).validate()  # d = 320 is known at build time
    with pytest.raises(UserError, match=r"k \(400\).*d = 320"):
        SparseFeatureNet(400, 1, backbone="convnext_atto")
    with pytest.raises(UserError, match="16 px images are too small.*--crop"):
        SparseFeatureNet(4, 1, backbone="convnext_atto")(torch.randn(2, 3, 16, 16))


@pytest.mark.parametrize("backbone", ["resnet50", "convnext_atto"])
def test_timm_trunks_train_at_toy_size(backbone, tmp_path):
    import json

    from sfnet.data.dataset import save_npz
    from sfnet.train import fit
    from tests.conftest import make_toy_images
    from tests.test_train import toy_config

    px = {"resnet50": 16, "convnext_atto": 32}[backbone]  # ConvNeXt downsamples 32x by convs
    images, y = make_toy_images(12, size=px, seed=3)
    ids = np.arange(12, dtype=np.int64) + 1
    save_npz(tmp_path / "d.npz", images, y, ids, ["radius", "redness"])
    cfg = toy_config(tmp_path / "d.npz", epochs=1, amp=False, channels_last=False)
    cfg.data.crop = px
    cfg.model.backbone = backbone
    cfg.train.batch_size = 5
    fit(cfg, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    d = {"resnet50": 2048, "convnext_atto": 320}[backbone]
    assert meta["d"] == d and meta["encoder"]["architecture"] == backbone
    from sfnet.predict import predict
    from sfnet.runs import load_run

    run = load_run(tmp_path / "run")
    pred = predict(run, run.data().images)
    assert np.isfinite(pred.predictions).all() and pred.indices.max() < d
