"""CLI options generated from the config dataclasses: one definition per setting.

Each field declared with :func:`sfnet.config.setting` becomes ``--field-name`` (or its
``flag``), with the field's type, help text, default (shown in the help) and range. A bool is
``--x/--no-x``; a field that may be None also accepts ``none``; a tuple takes several values.
Options default to "not given", so they override a ``--config`` file only when typed.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterable
from typing import Any

from sfnet.config import NONE, SECTIONS, ConfigError, RunConfig, _unwrap_optional, check_value


def option_name(f: dataclasses.Field) -> str:
    """``--name`` of a config field on the command line."""
    return "--" + (f.metadata.get("flag") or f.name).replace("_", "-")


def _parser_for(key: str, hint: Any, meta: dict[str, Any]):
    """argparse ``type``: parse one token and check it against the field's type and range."""
    base, optional = _unwrap_optional(hint)
    if typing.get_origin(base) is tuple:
        base = typing.get_args(base)[0]

    def parse(text: str) -> Any:
        if optional and text.lower() == NONE:
            return NONE
        try:
            value = base(text) if base in (int, float) else text
        except ValueError:
            value = text
        try:
            return check_value(key, value, base, meta)
        except ConfigError as e:
            raise argparse.ArgumentTypeError("must " + str(e).split(" must ", 1)[1]) from None

    parse.__name__ = base.__name__  # argparse names the type in "invalid int value"
    return parse


def add_field_options(
    parser: argparse.ArgumentParser,
    klass: type,
    section: str,
    *,
    skip: Iterable[str] = (),
    only: Iterable[str] | None = None,
    defaults: Any = None,
) -> None:
    """Add one option per field of dataclass ``klass`` (dest ``section.field``), except ``skip``
    and fields declared with ``cli=False`` (only those in ``only`` when given). ``defaults``
    (an instance) supplies the defaults shown in the help."""
    hints = typing.get_type_hints(klass)
    shown = defaults if defaults is not None else klass()
    for f in dataclasses.fields(klass):
        if f.name in skip or not f.metadata.get("cli", True) or "help" not in f.metadata:
            continue
        if only is not None and f.name not in only:
            continue
        hint, meta = hints[f.name], f.metadata
        default = getattr(shown, f.name)
        text = meta["help"]
        if default is not None and default != "":
            text += f" [default: {_show(default)}]"
        kwargs: dict[str, Any] = {"dest": f"{section}.{f.name}", "default": None, "help": text}
        base, _ = _unwrap_optional(hint)
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _parser_for(f"{section}.{f.name}", hint, meta)
            kwargs["metavar"] = "|".join(meta["choices"]) if meta.get("choices") else f.name.upper()
            if typing.get_origin(base) is tuple:
                kwargs["nargs"] = "+"
        parser.add_argument(option_name(f), **kwargs)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--progress/--no-progress`` (dest ``progress``; unset: bars only on a terminal, see
    :func:`sfnet.progress.show_progress`). The one spelling of progress control."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr [default: on when stderr is a terminal]",
    )


def progress_wanted(args: argparse.Namespace) -> bool:
    """The ``--progress/--no-progress`` choice, resolved (terminal check when unset)."""
    from sfnet.progress import show_progress

    return show_progress(args.progress)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda`` (dest ``device``), declared by :class:`TrainConfig`'s
    ``device`` setting: where a command runs its model."""
    from sfnet.config import TrainConfig

    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == "device")
    parser.add_argument(
        option_name(f),
        dest="device",
        default=f.default,
        choices=f.metadata["choices"],
        metavar="|".join(f.metadata["choices"]),
        help=f"{f.metadata['help']} [default: {f.default}]",
    )


def device_wanted(args: argparse.Namespace) -> Any:
    """The torch device of ``--device`` (``auto``: CUDA when present); a missing CUDA is a
    :class:`~sfnet.config.ConfigError`."""
    from sfnet.runs import default_device

    return default_device(args.device)


def add_run_options(
    parser: argparse.ArgumentParser, *, skip: Iterable[str] = (), defaults: RunConfig | None = None
) -> None:
    """Add the options of every :class:`RunConfig` field (``skip``: ``section.field`` names)."""
    skip = set(skip)
    defaults = defaults or RunConfig()
    for section, klass in SECTIONS.items():
        names = {s.split(".", 1)[1] for s in skip if s.startswith(section + ".")}
        add_field_options(parser, klass, section, skip=names, defaults=getattr(defaults, section))


def given_options(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The fields of ``section`` typed on the command line (``none`` -> None)."""
    out = {}
    for dest, value in vars(args).items():
        prefix, _, name = dest.partition(".")
        if prefix == section and name and value is not None:
            out[name] = None if value == NONE else value
    return out


def apply_run_options(cfg: RunConfig, args: argparse.Namespace) -> RunConfig:
    """``cfg`` with every option typed on the command line set on it, validated."""
    for section in SECTIONS:
        obj = getattr(cfg, section)
        for name, value in given_options(args, section).items():
            setattr(obj, name, value)
    cfg.validate()
    return cfg
