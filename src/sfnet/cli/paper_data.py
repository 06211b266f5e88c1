"""``sfnet fetch-paper-data``: the paper's public data set (Zenodo) as a dataset folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.data.paper_data import PAPER_RECORD, ZENODO_API


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fetch-paper-data",
        help="download the paper's catalog and SDSS images (Zenodo) into a dataset folder",
        description=(
            f"List Zenodo record {PAPER_RECORD}'s files through the records API, download "
            "galaxies.csv and images-sdss.tar.gz (resuming interrupted downloads), verify each "
            "checksum the API gives, and unpack the images safely and atomically into "
            "OUT/images/. OUT is then a dataset folder for 'sfnet prepare' and 'sfnet train'. "
            "Rerunning verifies what is there and skips it."
        ),
    )
    p.add_argument("out", type=Path, help="dataset folder to create or complete")
    p.add_argument("--record", default=PAPER_RECORD, help=f"Zenodo record [default {PAPER_RECORD}]")
    p.add_argument(
        "--api", default=ZENODO_API, help=f"base URL of the records API [default {ZENODO_API}]"
    )
    p.add_argument("--retries", type=int, default=5, help="resumes per file [default 5]")
    p.add_argument("--timeout", type=float, default=60.0, help="socket timeout, s [default 60]")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files in OUT that are not the record's (e.g. your own galaxies.csv)",
    )
    p.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace) -> int:
    from sfnet.data.paper_data import fetch_paper_data

    res = fetch_paper_data(
        args.out,
        record=args.record,
        api=args.api,
        retries=args.retries,
        timeout=args.timeout,
        overwrite=args.overwrite,
        log_fn=lambda m: print(m, flush=True),
    )
    print(
        f"downloaded {len(res.downloaded)}, reused {len(res.reused)} verified file(s); "
        f"dataset folder: {res.folder} (next: sfnet prepare {res.folder})"
    )
    return 0
