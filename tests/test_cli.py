"""The ``sfnet`` command line: every subcommand parses and documents itself; one spelling of
progress control and of --device; options generated from settings; disk and permission
failures are one line naming the path."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import subprocess
import sys
from pathlib import Path

import pytest

from sfnet.cli import COMMAND_MODULES, build_parser, main

SUBCOMMANDS = [
    "train",
    "predict",
    "embed",
    "prepare",
    "download",
    "fetch-paper-data",
    "synth",
    "demo",
    "analyze",
    "report",
    "explain",
    "compare",
    "reproduce",
]


def _subcommands(parser) -> list[str]:
    sub = next(a for a in parser._actions if a.dest == "command")
    return list(sub.choices)


def test_parser_lists_every_subcommand_once_in_order():
    assert _subcommands(build_parser()) == SUBCOMMANDS


def test_each_command_runs_from_the_module_named_after_it():
    # 'sfnet NAME' is implemented in sfnet/cli/NAME.py (prepare/download in data.py)
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        module = parser.get_default("func").__module__
        want = name.replace("-", "_") if name.replace("-", "_") in COMMAND_MODULES else "data"
        if name == "fetch-paper-data":
            want = "paper_data"
        assert module == f"sfnet.cli.{want}", (name, module)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sfnet {command}")
    assert "--help" in out


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_analysis_options_and_no_old_spellings(command, capsys):
    from sfnet.cli.analyze import analysis_options

    args = build_parser().parse_args([command, "RUN", "--n-features", "3", "--dense-run", "D"])
    assert (analysis_options(args).n_features, analysis_options(args).dense) == (3, "D")
    with pytest.raises(SystemExit):  # the pre-0.1 spellings are gone
        build_parser().parse_args([command, "RUN", "--features", "3"])
    assert "unrecognized arguments: --features" in capsys.readouterr().err


def test_train_dense_is_still_a_switch():
    args = build_parser().parse_args(["train", "--dense", "--out", "R"])
    assert args.dense is True


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_redundancy_rho_is_an_analysis_option(command, tmp_path, capsys):
    from sfnet.analysis.redundancy import REDUNDANCY_RHO
    from sfnet.cli.analyze import analysis_options, options_given

    parser = build_parser()
    plain = parser.parse_args([command, "RUN"])
    assert not options_given(plain)
    assert analysis_options(plain).redundancy_rho == REDUNDANCY_RHO
    given = parser.parse_args([command, "RUN", "--redundancy-rho", "0.75"])
    assert options_given(given)  # 'report' re-analyses when it is given
    assert analysis_options(given).redundancy_rho == 0.75
    with pytest.raises(SystemExit) as e:  # refused while parsing, as 'train --epochs 0' is
        main([command, str(tmp_path), "--redundancy-rho", "1.5"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --redundancy-rho: must be a finite number > 0.0 and <= 1.0, got 1.5" in err


def _fail(code: int):
    def raise_oserror(path, *a, **k):
        raise OSError(code, "simulated", str(path))

    return raise_oserror


@pytest.mark.parametrize(
    ("code", "advice"),
    [(errno.ENOSPC, "free some space"), (errno.EROFS, "writable"), (errno.EACCES, "writable")],
)
def test_train_disk_failure_is_one_line_naming_the_path(toy_npz, tmp_path, monkeypatch, capsys, code, advice):  # fmt: skip
    from sfnet.config import RunConfig

    monkeypatch.setattr(RunConfig, "save", lambda self, path: _fail(code)(path))
    out = tmp_path / "run"
    argv = ["train", "--data", str(toy_npz), "--out", str(out), "--crop", "32", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.toml" in err and advice in err, err
    assert not out.exists()


def test_config_that_is_a_folder_is_one_line(tmp_path, capsys):
    argv = ["train", "--config", str(tmp_path), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path) in err and "folder" in err, err


def test_predict_write_failure_is_one_line(tmp_path, monkeypatch, capsys):
    from tests.test_predict import _dataset, _run_folder

    data = _dataset(tmp_path / "D")
    run = _run_folder(tmp_path / "run", data)
    monkeypatch.setattr("sfnet.io.atomic_write", lambda path, write: _fail(errno.ENOSPC)(path))
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sfnet predict: error:") and str(out) in err and "space" in err


def _options(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {s: a for a in sub.choices[command]._actions for s in a.option_strings}


#: Commands that show progress bars, and those that run a model.
PROGRESS = ["train", "prepare", "download", "synth", "demo", "analyze", "report", "compare", "reproduce"]  # fmt: skip
MODEL = ["train", "predict", "embed", "demo", "analyze", "report", "explain", "compare", "reproduce"]  # fmt: skip


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_progress_is_spelled_one_way_and_device_is_everywhere_a_model_runs(command):
    opts = _options(command)
    assert not [o for o in opts if "quiet" in o]
    assert ("--progress" in opts and "--no-progress" in opts) == (command in PROGRESS)
    if command in PROGRESS:
        assert opts["--progress"].default is None  # unset: decided by the terminal check
    assert ("--device" in opts) == (command in MODEL)
    if command in MODEL:
        assert opts["--device"].metavar == "auto|cpu|cuda"
        assert opts["--device"].default in ("auto", None)


def test_progress_bars_follow_the_terminal_unless_asked(monkeypatch):
    import io

    from sfnet.progress import show_progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    assert show_progress(None) and show_progress(True) and not show_progress(False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a log file or pipe
    assert not show_progress(None) and show_progress(True)


@pytest.mark.parametrize(
    ("command", "target"),
    [
        ("analyze", "sfnet.workflows.analyze.analyze_run"),
        ("explain", "sfnet.workflows.explain.write_explanations"),
        ("report", "sfnet.workflows.analyze.write_report"),
    ],  # fmt: skip
)
def test_device_reaches_the_library(command, target, tmp_path, monkeypatch, capsys):
    import torch

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(target, fake)
    argv = [command, str(tmp_path), "--device", "cpu"] + (["--objid", "1"] if command == "explain" else [])  # fmt: skip
    with pytest.raises(SystemExit):
        main(argv)
    assert seen["device"] == torch.device("cpu")
    if not torch.cuda.is_available():  # asking for a GPU that is not there: one clear line
        assert main([*argv[:-1], "cuda"] if command != "explain" else [*argv[:3], "cuda", *argv[4:]]) == 2  # fmt: skip
        assert "no CUDA device" in capsys.readouterr().err


def test_demo_options_are_the_demo_settings(capsys):
    from sfnet.cli.demo import demo_config_from_args
    from sfnet.workflows.demo import DemoConfig

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "DemoConfig" not in out
    assert "[default: 6000]" in out and "[default: demo-output]" in out
    opts = _options("demo")
    for f in dataclasses.fields(DemoConfig):
        assert (("--" + f.name.replace("_", "-")) in opts) == f.metadata["cli"], f.name
    args = build_parser().parse_args(["demo", "--n", "10", "--epochs", "1", "--root", "R"])
    assert demo_config_from_args(args) == DemoConfig(root=Path("R"), n=10, epochs=1)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--n", "0"])
    assert "--n: must be an integer >= 1" in capsys.readouterr().err


def test_download_options_are_the_download_settings(capsys):
    from sfnet.cli.data import download_config_from_args
    from sfnet.data.download import DownloadConfig

    opts = _options("download")
    for f in dataclasses.fields(DownloadConfig):
        assert (("--" + f.name.replace("_", "-")) in opts) == f.metadata["cli"], f.name
    argv = ["download", "--catalog", "c.csv", "--out", "o", "--rate", "2", "--workers", "3"]
    cfg = download_config_from_args(build_parser().parse_args(argv))
    assert cfg == DownloadConfig(rate=2.0, workers=3)
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--retries", "-1"])
    assert "--retries: must be an integer >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_analysis_options_are_the_analysis_settings(command, capsys):
    from sfnet.cli.analyze import analysis_options, options_given
    from sfnet.cli.options import option_name
    from sfnet.workflows.analyze import AnalysisOptions

    opts = _options(command)
    for f in dataclasses.fields(AnalysisOptions):
        assert (option_name(f) in opts) == f.metadata["cli"], f.name
        if f.metadata["cli"]:  # the declared help and default, not a second hand-written one
            assert opts[option_name(f)].help.startswith(f.metadata["help"]), f.name
    assert "[default: 256]" in opts["--batch-size"].help
    args = build_parser().parse_args([command, "R", "--all", "--batch-size", "8", "--pdf"])
    assert analysis_options(args) == AnalysisOptions(split="all", batch_size=8, pdf=True)
    only_speed = build_parser().parse_args([command, "R", "--batch-size", "8"])
    assert not options_given(only_speed)  # 'report' does not re-analyse for a batch size
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "R", "--batch-size", "0"])
    assert "--batch-size: must be an integer >= 1, got 0" in capsys.readouterr().err


def test_prepare_options_are_the_prepare_settings(tmp_path, capsys):
    from sfnet.cli.data import prepare_config_from_args
    from sfnet.data.store import PrepareConfig

    opts = _options("prepare")
    for f in dataclasses.fields(PrepareConfig):  # the declared help, not a second one
        assert opts["--" + f.name.replace("_", "-")].help.startswith(f.metadata["help"]), f.name
    args = build_parser().parse_args(["prepare", "D", "--crop", "32", "--skip-bad"])
    assert prepare_config_from_args(args) == PrepareConfig(crop=32, skip_bad=True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "D", "--workers", "0"])
    assert "--workers: must be an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path), "--crop", "48", "--resize", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "prepare.crop (48) must not exceed" in err, err
    assert list(tmp_path.iterdir()) == []


def test_predict_options_are_the_predict_settings():
    from sfnet.cli.predict import predict_config_from_args
    from sfnet.config import PredictConfig

    opts = _options("predict")
    for f in dataclasses.fields(PredictConfig):  # the declared help and default
        assert opts["--" + f.name.replace("_", "-")].help == f"{f.metadata['help']} [default: {f.default}]"  # fmt: skip
    args = build_parser().parse_args(["predict", "R", "--out", "p.csv", "--batch-size", "8"])
    assert predict_config_from_args(args) == PredictConfig(batch_size=8)


def test_reproduce_options_are_the_comparison_and_run_settings():
    from sfnet.config import CompareConfig, DataConfig, TrainConfig

    opts = _options("reproduce")
    for klass, names in [(CompareConfig, ("ks", "repeats", "features", "probe_trees", "nproc")), (DataConfig, ("crop", "resize")), (TrainConfig, ("epochs", "batch_size", "device"))]:  # fmt: skip
        for f in dataclasses.fields(klass):
            if f.name in names:  # the declared help (and range), not a second hand-written one
                assert opts["--" + f.name.replace("_", "-")].help.startswith(f.metadata["help"])


def test_help_does_not_import_torch():
    # `sfnet --help` and every command's --help build the whole parser: 1.4 s of CPU without
    # torch, 5.6 s with (the settings dataclasses live where torch is not imported)
    code = (
        "import sys\nfrom sfnet.cli import build_parser\nbuild_parser()\n"
        "assert 'torch' not in sys.modules, 'building the CLI imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
