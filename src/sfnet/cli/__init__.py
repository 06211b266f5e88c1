"""The ``sfnet`` command: a thin layer over the library.

Each subcommand group lives in its own module with a ``register(subparsers)`` function that
adds its parsers and sets ``func`` (called with the parsed namespace, returns an exit code).
User mistakes (bad config, bad input files) raise :class:`sfnet.errors.UserError` subclasses
and are printed as one clear line, not a stack trace.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from sfnet import __version__
from sfnet.errors import UserError

#: Subcommand modules, in the order their commands appear in ``sfnet --help``.
COMMAND_MODULES = (
    "train",
    "predict",
    "embed",
    "data",
    "paper_data",
    "synth",
    "demo",
    "analyze",
    "report",
    "explain",
    "compare",
    "reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfnet",
        description=(
            "Train Sparse Feature Networks on galaxy images and read physics out of them "
            "(Wu 2025). Run 'sfnet COMMAND --help' for the options of each command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"sfnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"sfnet.cli.{name}").register(sub)
    return parser


def configure_logging() -> None:
    """Library messages (``logging``) go to stderr as plain lines; under torchrun only rank 0
    reports at INFO level. Does nothing when logging is already configured (e.g. by pytest)."""
    main_rank = int(os.environ.get("RANK", "0")) == 0
    logging.basicConfig(
        level=logging.INFO if main_rank else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"sfnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a disk, permission or path problem: one line, not a traceback
        if e.filename is None:
            raise
        from sfnet.io import describe_os_error

        print(f"sfnet {args.command}: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sfnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
