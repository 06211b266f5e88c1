"""The one progress-bar helper: every library function that shows a bar builds it here.

Library functions take ``progress: bool`` and call :func:`progress_bar`; messages go through
``logging`` (the CLI configures it). A disabled bar is tqdm's own no-op, so callers never test
for ``None``.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def show_progress(requested: bool | None = None) -> bool:
    """Whether to draw progress bars: ``requested`` when given (``--progress`` /
    ``--no-progress``), else only when stderr is a terminal (not in logs, pipes or CI).

    The one terminal check of sfnet; every command's progress option resolves here.
    """
    if requested is not None:
        return bool(requested)
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(
    enabled: bool, total: int | None = None, desc: str = "", unit: str = "it", **kwargs
) -> tqdm:
    """A tqdm bar when ``enabled``, else a bar that draws nothing (same ``update``/``close``).

    Args:
        enabled: show the bar.
        total: expected number of units (None: unknown).
        desc: label in front of the bar.
        unit: what one step counts (``gal``, ``img``, ...).
        **kwargs: passed to tqdm (``initial``, ``leave``, ...).
    """
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, **kwargs)
