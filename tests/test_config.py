import argparse
import dataclasses

import pytest

from sfnet.cli import build_parser, main
from sfnet.cli.options import option_name
from sfnet.config import (
    SECTIONS,
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from sfnet.workflows.compare import CompareConfig


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


def test_round_trip_keeps_every_value(tmp_path):
    cfg = RunConfig(
        DataConfig(path="/d.npz", target="bpt_lines", crop=64, resize=96, val_fraction=0.3),
        ModelConfig(k=None, pretrained="imagenet"),
        TrainConfig(epochs=7, lr=0.02, flips=False, amp=False, num_workers=0, schedule="one_cycle"),
    )
    cfg.save(tmp_path / "config.toml")
    assert RunConfig.load(tmp_path / "config.toml") == cfg
    assert 'k = "none"' in (tmp_path / "config.toml").read_text()


@pytest.mark.parametrize(
    "toml, key, expected",
    [
        ('[train]\nflips = "no"', "train.flips", "true or false"),
        ("[train]\nepochs = 1.5", "train.epochs", "an integer >= 1"),
        ("[model]\nk = 2.0", "model.k", "an integer >= 1, or 'none'"),
        ('[train]\nlr = "0.1"', "train.lr", "a finite number > 0"),
        ("[train]\nlr = inf", "train.lr", "a finite number"),
        ("[train]\nbatch_size = 1", "train.batch_size", ">= 2"),
        ("[train]\nnum_workers = -1", "train.num_workers", ">= 0"),
        ("[data]\ncrop = 1", "data.crop", ">= 16"),
        ("[data]\nval_fraction = 0.99", "data.val_fraction", "<= 0.5"),
        ('[data]\ntarget = "mass"', "data.target", "one of metallicity, bpt_lines"),
        ("[train]\nflips = 1", "train.flips", "true or false"),
    ],
)
def test_wrong_type_or_range_in_a_config_file_is_one_clear_error(
    tmp_path, capsys, toml, key, expected
):
    path = tmp_path / "bad.toml"
    path.write_text('[data]\npath = "x.npz"\n' + toml + "\n" if "[data]" not in toml else toml)
    with pytest.raises(ConfigError, match=key) as e:
        RunConfig.load(path)
    assert str(path) in str(e.value) and expected in str(e.value)
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--data", "x.npz", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--batch-size", "1", ">= 2"),
        ("--crop", "1", ">= 16"),
        ("--workers", "-1", ">= 0"),
        ("--val-fraction", "0.99", "<= 0.5"),
        ("--epochs", "1.5", "an integer"),
        ("--k", "2.0", "an integer"),
        ("--lr", "inf", "a finite number"),
    ],
)
def test_wrong_option_values_are_refused_naming_the_option(
    tmp_path, capsys, option, value, expected
):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "x.npz", "--out", str(out), option, value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and expected in err
    assert not out.exists()


def test_every_config_field_has_an_option_with_help():
    train = _options(_subparser("train"))
    compare = _options(_subparser("compare"))
    for klass in SECTIONS.values():
        for f in dataclasses.fields(klass):
            name = option_name(f)
            assert name in train, name
            assert f.metadata["help"] and train[name].help.startswith(f.metadata["help"])
    per_run = {"--data", "--target", "--k"}  # set by the comparison itself
    assert set(train) - per_run - {"--dense"} <= set(compare) | {
        "--config",
        "--resume",
        "--overwrite",
    }
    for f in dataclasses.fields(CompareConfig):
        if f.name not in ("run", "launcher"):
            assert option_name(f) in compare and f.metadata["help"], f.name
    assert "--flips" in train and "--no-flips" in train  # bools are --x/--no-x
    assert "--workers" in train and "--num-workers" not in train  # a field's own CLI spelling


def test_options_override_a_config_file_and_k_none_or_dense_is_the_baseline(tmp_path):
    from sfnet.cli.train import config_from_args

    path = tmp_path / "c.toml"
    RunConfig(DataConfig(path="/a.npz"), train=TrainConfig(epochs=9, lr=0.3)).save(path)
    parser = build_parser()
    args = parser.parse_args(["train", "--config", str(path), "--lr", "0.05", "--no-flips"])
    cfg = config_from_args(args)
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.flips) == (9, 0.05, False)
    assert cfg.data.path == "/a.npz" and cfg.model.k == 4
    assert config_from_args(parser.parse_args(["train", "--k", "none"])).model.k is None
    assert config_from_args(parser.parse_args(["train", "--dense"])).model.k is None
    assert config_from_args(parser.parse_args(["train", "--workers", "0"])).train.num_workers == 0


def test_compare_config_holds_a_run_template_and_refuses_old_files(tmp_path):
    from sfnet.cli.compare import compare_config_from_args

    args = build_parser().parse_args(
        [
            "compare",
            "d.npz",
            "--out",
            "o",
            "--quick",
            "--crop",
            "32",
            "--nproc",
            "2",
            "--epochs",
            "1",
        ]
    )
    cfg = compare_config_from_args(args)
    assert cfg.run.data.crop == 32 and cfg.ks == (2, 4) and cfg.repeats == 1
    assert cfg.run.train.epochs == 1  # an explicit option wins over --quick
    assert cfg.launcher == "torchrun" and cfg.nproc == 2
    run = cfg.run_config(4, 1, "bpt_lines")
    assert (run.model.k, run.data.target, run.train.seed, run.data.crop) == (4, "bpt_lines", 1, 32)
    cfg.save(tmp_path / "compare.toml")
    text = (tmp_path / "compare.toml").read_text()
    assert "[train]" in text and "\nk =" not in text and "target =" not in text
    assert CompareConfig.load(tmp_path / "compare.toml") == cfg
    # a compare.toml of an older sfnet (flat keys): one line naming the file and the keys
    (tmp_path / "old.toml").write_text('data = "d.npz"\nks = [2, 4]\ncrop = 48\n')
    with pytest.raises(ConfigError, match=r"old.toml: crop, data: keys of an older sfnet"):
        CompareConfig.load(tmp_path / "old.toml")
    (tmp_path / "bad.toml").write_text('repeats = 1.5\n[data]\npath = "d.npz"\n')
    with pytest.raises(ConfigError, match="bad.toml: compare.repeats must be an integer"):
        CompareConfig.load(tmp_path / "bad.toml")


def test_resume_refuses_options_that_would_change_the_stored_config(tmp_path, capsys):
    run = tmp_path / "run"
    RunConfig(DataConfig(path="/a.npz")).save(run / "config.toml")
    assert main(["train", "--resume", str(run), "--epochs", "5", "--dense"]) == 2
    err = capsys.readouterr().err
    assert "train.epochs, model.k cannot change" in err
    assert RunConfig.load(run / "config.toml") == RunConfig(DataConfig(path="/a.npz"))


def test_the_dataset_is_data_path_and_an_old_data_data_key_is_one_clear_line(tmp_path, capsys):
    assert [f.name for f in dataclasses.fields(DataConfig)][0] == "path"
    assert RunConfig(DataConfig(path="/a.npz")).to_dict()["data"]["path"] == "/a.npz"
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "config.toml").write_text('[data]\ndata = "/a.npz"\n')  # a run of an older sfnet
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "config.toml: [data] data is now [data] path" in err
