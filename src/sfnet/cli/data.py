"""``sfnet prepare`` (pack a dataset folder's images) and ``sfnet download`` (fetch cutouts)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sfnet.data.download import DEFAULT_URL_TEMPLATE, FAILURES_FILE, DownloadConfig


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
    p.add_argument(
        "--crop",
        type=int,
        default=None,
        help="store only this centre crop (px); default keeps whole images, so any training "
        "--crop works later",
    )
    p.add_argument(
        "--resize",
        type=int,
        default=None,
        help="resize every image to this side (px) first; must then match training --resize",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"decoding processes [default: all cores, {os.cpu_count()}]",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="drop missing/corrupt images (counted, listed in the store's bad_images.txt) instead of "
        "stopping",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare)


def _register_download(sub: argparse._SubParsersAction) -> None:
    d = DownloadConfig()
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
    q.add_argument(
        "--layer",
        default=d.layer,
        help=f"Legacy Survey viewer layer: sdss (SDSS gri, the paper's images) or e.g. "
        f"ls-dr10 (grz) [default {d.layer}]",
    )
    q.add_argument(
        "--pixscale", type=float, default=d.pixscale, help=f"arcsec/pixel [default {d.pixscale}]"
    )
    q.add_argument("--size", type=int, default=d.size, help=f"cutout side, px [default {d.size}]")
    q.add_argument(
        "--url-template",
        default=DEFAULT_URL_TEMPLATE,
        help="URL with {ra} {dec} {layer} {pixscale} {size} {objid} [default: Legacy Survey viewer]",
    )
    q.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help=f"concurrent connections [default {d.workers}]",
    )
    q.add_argument(
        "--rate",
        type=float,
        default=d.rate,
        help=f"max requests per second, all connections (0: no limit) [default {d.rate:g}]",
    )
    q.add_argument(
        "--retries", type=int, default=d.retries, help=f"retries per cutout [default {d.retries}]"
    )
    q.add_argument(
        "--backoff",
        type=float,
        default=d.backoff,
        help=f"first retry delay in s, doubled each retry [default {d.backoff:g}]",
    )
    q.add_argument(
        "--timeout",
        type=float,
        default=d.timeout,
        help=f"request timeout, s [default {d.timeout:g}]",
    )
    q.add_argument(
        "--failures", type=Path, default=None, help=f"failure list [default OUT/{FAILURES_FILE}]"
    )
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_download)


def _prepare(args: argparse.Namespace) -> int:
    from sfnet.data.store import prepare

    res = prepare(
        args.data,
        crop=args.crop,
        resize=args.resize,
        workers=args.workers,
        skip_bad=args.skip_bad,
        progress=not args.quiet,
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


def _download(args: argparse.Namespace) -> int:
    from sfnet.data.download import download_cutouts

    cfg = DownloadConfig(
        url_template=args.url_template,
        layer=args.layer,
        pixscale=args.pixscale,
        size=args.size,
        workers=args.workers,
        rate=args.rate,
        retries=args.retries,
        backoff=args.backoff,
        timeout=args.timeout,
    )
    res = download_cutouts(
        args.catalog, args.out, cfg, failures_file=args.failures, progress=not args.quiet
    )
    print(
        f"{args.out}: {res.downloaded} downloaded, {res.skipped} already present, "
        f"{len(res.failed)} failed of {res.total} ({res.seconds:.1f} s)"
    )
    if res.failed:
        print(f"failures listed in {res.failures_file}; re-run the same command to retry them")
        return 1
    return 0
