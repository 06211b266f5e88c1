"""Old option spellings kept working for one release, with a deprecation warning.

``add_deprecated_alias(parser, "--features", "--n-features")`` adds ``--features`` hidden from
``--help``; using it stores into the new option's destination and logs a warning that names the
new spelling.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger("sfnet.cli")


def _action_for(parser: argparse.ArgumentParser, new: str) -> argparse.Action:
    for action in parser._actions:
        if new in action.option_strings:
            return action
    raise ValueError(f"{new}: no such option to alias")


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Accept ``old`` as a hidden, deprecated spelling of the existing option ``new``."""
    target = _action_for(parser, new)

    class _Deprecated(argparse.Action):
        def __call__(self, p: Any, namespace: argparse.Namespace, values: Any, opt=None) -> None:
            log.warning("%s is deprecated and will be removed; use %s", old, new)
            setattr(namespace, self.dest, values)

    parser.add_argument(
        old,
        dest=target.dest,
        type=target.type,
        metavar=target.metavar,
        default=argparse.SUPPRESS,
        action=_Deprecated,
        help=argparse.SUPPRESS,
    )
