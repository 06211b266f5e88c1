"""The ``sfnet`` command line: every subcommand parses and documents itself; old spellings warn;
disk and permission failures are one line naming the path."""

from __future__ import annotations

import errno
import logging

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


def test_one_module_per_subcommand_group():
    # a subcommand named like a module lives in that module (predict, demo, report included)
    for name in ("train", "predict", "synth", "demo", "analyze", "report", "explain", "compare", "reproduce"):  # fmt: skip
        assert name in COMMAND_MODULES


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sfnet {command}")
    assert "--help" in out


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_new_spellings_and_help_hides_old_ones(command, capsys):
    args = build_parser().parse_args([command, "RUN", "--n-features", "3", "--dense-run", "D"])
    assert (args.features, args.dense) == (3, "D")
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "--n-features" in out and "--dense-run" in out
    assert "--features" not in out.replace("--n-features", "")
    assert "--dense " not in out and "--dense\n" not in out


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_deprecated_spellings_still_work_and_warn(command, caplog):
    with caplog.at_level(logging.WARNING, logger="sfnet.cli"):
        args = build_parser().parse_args([command, "RUN", "--features", "3", "--dense", "D"])
    assert (args.features, args.dense) == (3, "D")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "--features is deprecated and will be removed; use --n-features" in warned
    assert "--dense is deprecated and will be removed; use --dense-run" in warned


def test_new_spellings_do_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="sfnet.cli"):
        build_parser().parse_args(["analyze", "RUN", "--n-features", "2"])
    assert not caplog.records


def test_deprecated_count_is_still_type_checked(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["analyze", "RUN", "--features", "many"])
    assert e.value.code == 2
    assert "invalid int value: 'many'" in capsys.readouterr().err


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
    assert main([command, str(tmp_path), "--redundancy-rho", "1.5"]) == 2
    assert "--redundancy-rho must lie in [-1, 1], got 1.5" in capsys.readouterr().err


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
    argv = ["train", "--data", str(toy_npz), "--out", str(out), "--crop", "32", "--quiet"]
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
