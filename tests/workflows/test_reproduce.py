"""sfnet reproduce --quick end to end on a tiny synthetic survey, and on metallicity-only data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from sfnet.cli import main
from sfnet.data.synthetic import synthesize
from sfnet.workflows.reproduce import NOT_IN_PAPER, TABLE1, TABLE2, TABLE2_KS

# 96 galaxies of 16 px, one epoch, k = 4 only: the smallest survey that still has AGN and
# star-forming galaxies in both splits, so every row the sweep covers gets a value
TINY = ["--quick", "--pretrained", "none", "--crop", "16", "--epochs", "1", "--batch-size", "64"]
ARGS = [*TINY, "--ks", "4"]


def _expected_rows(sae_groups: int = 2) -> int:
    """Every number the paper publishes that the table must list (see the issue)."""
    table1 = sum(len(v) for v in TABLE1.values())  # 8 f_activated
    samples = 2  # 250,207 and 117,223 galaxies
    results = 2 + 1 + 1 + 2  # 0.087/0.086 dex, scatter 0.207, 0.238-0.242, 99.99 %/91.6 %
    table2 = 2 * len(TABLE2_KS) * 2 + 2  # SFNet and PCA cells per group, + >95 % PC variance
    agn = 4  # 0.85/0.72 and 0.83/0.70
    probes = 4 + 2  # 0.183/0.181/0.180/0.085 and R^2 0.253/0.107
    sae = sae_groups  # SAE-k beside each trained group's Table 2 (issue 22), swept k = 4 only
    return table1 + samples + results + table2 + agn + probes + sae


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("rep") / "survey", 96, size=16, seed=2, workers=1)


@pytest.fixture(scope="module")
def reproduced(survey, tmp_path_factory):
    """(output folder, paper_vs_sfnet.csv) of one quick reproduction, shared by the tests."""
    out = tmp_path_factory.mktemp("rep") / "out"
    assert main(["reproduce", str(survey), "--out", str(out), *ARGS]) == 0
    return out, pd.read_csv(out / "paper_vs_sfnet.csv")


def _is_swept(row: pd.Series) -> bool:
    return not (
        row["section"] == "Table 2" and row["quantity"].endswith(("k=2", "k=3", "k=6", "k=8"))
    )


def test_every_paper_number_has_a_row_with_a_value_or_a_reason(reproduced):
    out, table = reproduced
    assert len(table) == _expected_rows()
    md = (out / "paper_vs_sfnet.md").read_text()
    for section in ("Sample", "Table 1", "Results", "AGN", "Table 2", "Probes"):
        assert f"## {section}" in md
    ours = table["paper"] == NOT_IN_PAPER  # numbers sfnet adds: the SAE-k baseline
    assert list(table.loc[ours, "quantity"]) == ["SAE RMSE, k=4"] * 2
    assert table.loc[~ours, "paper_value"].notna().all()
    # every row the sweep (k = 4) covers has sfnet's value; the others say why they are absent
    swept = table.apply(_is_swept, axis=1)
    assert np.isfinite(table.loc[swept, "sfnet_value"]).all(), table.loc[swept, "quantity"]
    assert table.loc[~swept, "sfnet_value"].isna().all()
    assert table.loc[~swept, "sfnet"].str.contains("absent: k not in this sweep").all()
    assert (~swept).sum() == 2 * 2 * (len(TABLE2_KS) - 1)


def test_every_table2_cell_is_listed_with_its_published_value(reproduced):
    _, table = reproduced
    t2 = table[(table["section"] == "Table 2") & (table["paper"] != NOT_IN_PAPER)]
    for group, cells in TABLE2.items():
        for k, (mean, _, pca) in cells.items():
            rows = t2[(t2["target"] == group) & t2["quantity"].str.endswith(f"k={k}")]
            assert sorted(rows["paper_value"]) == sorted([mean, pca])
    k4 = t2[(t2["target"] == "metallicity") & (t2["quantity"] == "SFNet RMSE, k=4")].iloc[0]
    assert k4["sfnet_value"] > 0


def test_the_papers_definitions_are_applied(reproduced):
    _, table = reproduced
    assert table[table["section"] == "AGN"]["how"].str.contains("bptclass column").all()
    t1 = table[table["section"] == "Table 1"]
    assert t1["how"].str.contains("before TopK").all()
    assert ((t1["sfnet_value"] > 0) & (t1["sfnet_value"] <= 1)).all()
    masked = table[table["quantity"].str.startswith("RMSE [dex] with the top")]
    assert len(masked) == 2 and masked["how"].str.contains("no refit").all()


def _trunk_images() -> tuple[list[int], object]:
    """A counter of the images every resnet18 trunk sees, and its hook handle."""
    seen: list[int] = []

    def hook(module, inputs, output):
        if isinstance(module, torchvision.models.ResNet):
            seen.append(len(inputs[0]))

    return seen, torch.nn.modules.module.register_module_forward_hook(hook)


def test_rerun_reuses_every_finished_run_and_writes_the_same_table(survey, reproduced, capsys):
    out, table = reproduced
    weights = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/model.safetensors")}
    assert len(weights) == 4  # dense and k4 for each group
    seen, hook = _trunk_images()
    try:
        assert main(["reproduce", str(survey), "--out", str(out), *ARGS]) == 0
    finally:
        hook.remove()
    # each model (dense and k4 of each group) runs forward once over its galaxies
    sample = table[table["section"] == "Sample"]["sfnet_value"]
    assert sum(seen) == 2 * int(sample.sum())
    n_values = int(table["sfnet_value"].notna().sum())
    said = f"{n_values} of {len(table)} paper numbers have an sfnet value"
    assert said in capsys.readouterr().out
    again = pd.read_csv(out / "paper_vs_sfnet.csv")
    pd.testing.assert_frame_equal(again, table)
    assert {p: p.stat().st_mtime_ns for p in weights} == weights


def test_reproduce_on_metallicity_only_data_says_why_rows_are_absent(survey, tmp_path):
    data = tmp_path / "oh_only"
    data.mkdir()
    cat = pd.read_csv(survey / "galaxies.csv", dtype={"objID": str})
    cat[["objID", "oh_p50"]].to_csv(data / "galaxies.csv", index=False)
    (data / "images").symlink_to(survey / "images")
    out = tmp_path / "rep"
    assert main(["reproduce", str(data), "--out", str(out), *ARGS]) == 0
    table = pd.read_csv(out / "paper_vs_sfnet.csv")
    assert len(table) == _expected_rows(sae_groups=1)  # no SAE row for the absent group
    lines = table[table["target"] == "bpt_lines"]
    assert lines["sfnet"].str.startswith("absent: no bpt_lines target").all()
    oh = table[(table["target"] == "metallicity") & table.apply(_is_swept, axis=1)]
    assert len(oh) == 17 + 1 and oh["sfnet_value"].notna().all()  # + SAE-k, k = 4
    assert "bpt_lines` rows are absent" in (out / "paper_vs_sfnet.md").read_text()
    assert not (out / "runs" / "bpt_lines_k4_r0").exists()


def test_reproduce_uses_imagenet_by_default_and_says_when_absent(
    survey, tmp_path, monkeypatch, capsys
):
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    out = tmp_path / "rep"
    rc = main(["reproduce", str(survey), "--out", str(out), "--quick", "--crop", "16"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "the ImageNet resnet18 weights" in err and len(err.strip().splitlines()) == 1
    assert not list(out.glob("runs/*/model.safetensors"))
    assert not (out / "paper_vs_sfnet.csv").exists()


def test_reproduce_trains_with_the_papers_recipe_and_says_so(reproduced):
    from sfnet.config import RunConfig

    out, _ = reproduced
    configs = list((out / "runs").glob("*/config.toml"))
    assert configs and all(RunConfig.load(c).train.recipe == "paper" for c in configs)
    assert "recipe: paper (as published" in (out / "paper_vs_sfnet.md").read_text()


def test_reused_passes_give_the_numbers_of_fresh_passes_bit_for_bit(reproduced):
    """The pass compare keeps for reproduce gives what the old two-pass path computed."""
    from sfnet.predict import pooled_features, predict
    from sfnet.runs import load_run
    from sfnet.workflows import compare
    from sfnet.workflows.reproduce import model_activations

    out, _ = reproduced
    t = compare._load_target("metallicity", out, "cpu")
    run = load_run(out / "runs" / "metallicity_k4_r0")
    passes: dict = {}
    kept = compare._sparse_strengths(run, t, passes)
    fresh = compare._sparse_strengths(run, t)  # compute_activations, as before
    for a, b in zip(kept, fresh, strict=True):
        assert a.tobytes() == b.tobytes()
    (done,) = passes.values()
    data = run.data()
    new = model_activations(run, data, done)
    pooled, pred = pooled_features(run, data.images), predict(run, data.images)  # old path
    post = np.zeros_like(pooled, dtype=np.float64)
    np.put_along_axis(post, pred.indices, np.maximum(pred.values, 0.0), axis=1)
    old = {"pre": pooled.astype(np.float64), "post": post, "pred": pred.predictions}
    for key in old:
        assert new[key].tobytes() == old[key].tobytes(), key
