"""The ``sfnet`` command line: every subcommand parses and documents itself; old spellings warn."""

from __future__ import annotations

import logging

import pytest

from sfnet.cli import COMMAND_MODULES, build_parser, main

SUBCOMMANDS = [
    "train",
    "predict",
    "prepare",
    "download",
    "fetch-paper-data",
    "synth",
    "demo",
    "analyze",
    "report",
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
    for name in ("train", "predict", "synth", "demo", "analyze", "report", "compare", "reproduce"):
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
