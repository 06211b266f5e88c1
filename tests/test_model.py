import pytest
import torch

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


def test_pretrained_imagenet_uses_hub_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(2)
    ref = torchvision.models.resnet18(weights=None)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    ckpt = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt)
    net = SparseFeatureNet(k=2, n_targets=1, pretrained="imagenet")
    assert torch.equal(net.trunk.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)


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
