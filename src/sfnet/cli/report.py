"""``sfnet report``: the HTML feature atlas of a trained run (analysing it first if needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.cli.analyze import add_analysis_options, analysis_options, options_given
from sfnet.cli.options import device_wanted, progress_wanted


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "report",
        help="write the HTML feature atlas report.html of a run (analysing it if needed)",
        description=(
            "Write report.html, a self-contained feature atlas, into the run folder and print "
            "its path. Runs 'sfnet analyze' first when the run has no current analysis or when "
            "analysis options are given."
        ),
    )
    add_analysis_options(r)
    r.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from sfnet.lock import folder_lock
    from sfnet.workflows.analyze import write_report

    opts = analysis_options(args) if options_given(args) else None
    with folder_lock(Path(args.run), "sfnet report"):
        path = write_report(
            Path(args.run), opts, progress=progress_wanted(args), device=device_wanted(args)
        )
    print(path)
    return 0
