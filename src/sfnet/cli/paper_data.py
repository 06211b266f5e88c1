"""``sfnet fetch-paper-data``: the paper's public data set (Zenodo) as a dataset folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.cli.options import add_field_options, given_options
from sfnet.data.paper_data import PAPER_RECORD, PaperDataConfig


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
    add_field_options(p, PaperDataConfig, "paper_data")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files in OUT that are not the record's (e.g. your own galaxies.csv)",
    )
    p.set_defaults(func=_fetch)


def paper_data_config_from_args(args: argparse.Namespace) -> PaperDataConfig:
    """The :class:`PaperDataConfig` of the typed options (validated)."""
    cfg = PaperDataConfig(**given_options(args, "paper_data"))
    cfg.validate()
    return cfg


def _fetch(args: argparse.Namespace) -> int:
    import dataclasses

    from sfnet.data.paper_data import fetch_paper_data

    cfg = paper_data_config_from_args(args)
    res = fetch_paper_data(
        args.out,
        **dataclasses.asdict(cfg),
        overwrite=args.overwrite,
        log_fn=lambda m: print(m, flush=True),
    )
    print(
        f"downloaded {len(res.downloaded)}, reused {len(res.reused)} verified file(s); "
        f"dataset folder: {res.folder} (next: sfnet prepare {res.folder})"
    )
    return 0
