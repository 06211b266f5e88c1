"""``sfnet prepare`` (pack a dataset folder's images) and ``sfnet download`` (fetch cutouts)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.cli.options import (
    add_field_options,
    add_progress_option,
    given_options,
    progress_wanted,
)
from sfnet.data.download import FAILURES_FILE, DownloadConfig
from sfnet.data.store import PrepareConfig


def register(sub: argparse._SubParsersAction) -> None:
    _register_prepare(sub)
    _register_download(sub)


def _register_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="decode a dataset folder's images once into a packed uint8 store",
        description=(
            "Decode every catalog image of DATA (images/{objID}.jpg|png|fits) once into "
            "DATA/packed/KEY/, one store per geometry (KEY: native, resize64, resize64-crop48; "
            "raw N x 3 x H x W uint8, memory-mapped, with the objID index and a fingerprint of "
            "catalog + images); stores of other geometries are kept. Training, prediction and "
            "explain at that --resize/--crop then read bytes, not JPEGs. One prepare at a time "
            "per folder. Resumes "
            "after interruption; a stale store (catalog or images changed) is refused until "
            "prepare is run again. Missing or corrupt images stop it, listing their objIDs, "
            "unless --skip-bad."
        ),
    )
    p.add_argument("data", type=Path, help="dataset folder (galaxies.csv|.parquet|.fits + images/)")
    add_field_options(p, PrepareConfig, "prepare")
    add_progress_option(p)
    p.set_defaults(func=_prepare)


def _register_download(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "download",
        help="fetch {objID}.jpg cutouts from the Legacy Survey (resumable)",
        description=(
            "Download one JPEG cutout per catalog row (objID, ra, dec) with concurrent "
            "connections, a rate limit and retries with exponential backoff. Complete files "
            "already in --out are skipped, so re-running resumes. Failures are listed in "
            f"OUT/{FAILURES_FILE}; exit status 1 when any galaxy failed."
        ),
    )
    q.add_argument("--catalog", type=Path, required=True, help="catalog with objID, ra, dec")
    q.add_argument("--out", type=Path, required=True, help="image folder, e.g. DATA/images")
    add_field_options(q, DownloadConfig, "download")
    q.add_argument(
        "--failures", type=Path, default=None, help=f"failure list [default OUT/{FAILURES_FILE}]"
    )
    add_progress_option(q)
    q.set_defaults(func=_download)


def prepare_config_from_args(args: argparse.Namespace) -> PrepareConfig:
    """The :class:`PrepareConfig` of the typed options (validated)."""
    cfg = PrepareConfig(**given_options(args, "prepare"))
    cfg.validate()
    return cfg


def _prepare(args: argparse.Namespace) -> int:
    from sfnet.data.store import prepare

    cfg = prepare_config_from_args(args)
    res = prepare(
        args.data,
        crop=cfg.crop,
        resize=cfg.resize,
        workers=cfg.workers,
        skip_bad=cfg.skip_bad,
        progress=progress_wanted(args),
    )
    geom = f"{res.width}x{res.height} px"
    if res.up_to_date:
        print(
            f"{res.store}: up to date ({res.n_images} images, {geom}, fingerprint {res.fingerprint})"
        )
        return 0
    resumed = f", resumed {res.resumed_chunks} chunk(s)" if res.resumed_chunks else ""
    print(
        f"{res.store}: packed {res.n_images} images ({geom}) in {res.seconds:.1f} s{resumed}; "
        f"fingerprint {res.fingerprint}"
    )
    if res.n_bad:
        print(f"dropped {res.n_bad} bad image(s), listed in {res.bad_file}")
    return 0


def download_config_from_args(args: argparse.Namespace) -> DownloadConfig:
    """The :class:`DownloadConfig` of the typed options (validated)."""
    cfg = DownloadConfig(**given_options(args, "download"))
    cfg.validate()
    return cfg


def _download(args: argparse.Namespace) -> int:
    from sfnet.data.download import download_cutouts

    cfg = download_config_from_args(args)
    res = download_cutouts(
        args.catalog, args.out, cfg, failures_file=args.failures, progress=progress_wanted(args)
    )
    print(
        f"{args.out}: {res.downloaded} downloaded, {res.skipped} already present, "
        f"{len(res.failed)} failed of {res.total} ({res.seconds:.1f} s)"
    )
    if res.failed:
        print(f"failures listed in {res.failures_file}; re-run the same command to retry them")
        return 1
    return 0
