"""``sfnet explain``: why one galaxy got its prediction."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.cli.options import add_device_option, device_wanted


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="explain single galaxies: active features, their maps and contributions",
        description=(
            "For each --objid write <objID>.png and <objID>.json: the cutout, the prediction "
            "(and the measured value when the catalog has it), the k active features with "
            "activation, A_f and contribution to each target (a waterfall from the intercept "
            "to the prediction), each feature's spatial map on the galaxy, the contribution "
            "map, and three top-activating galaxies of each feature. Needs an analysed run "
            "(sfnet analyze RUN). Galaxies may come from another dataset (--data; targets "
            "optional) or a bare image folder (--images)."
        ),
    )
    p.add_argument("run", type=Path, help="an analysed sparse run folder")
    p.add_argument(
        "--objid", action="append", required=True, metavar="ID", help="galaxy to explain (repeat)"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", help="dataset folder or .npz [default: the run's own data]")
    src.add_argument("--images", help="folder of cutouts named {objID}.jpg|png|fits")
    p.add_argument("--out", type=Path, default=None, help="output folder [default RUN/explain]")
    add_device_option(p)
    p.set_defaults(func=_explain)


def _explain(args: argparse.Namespace) -> int:
    from sfnet.workflows.explain import write_explanations

    paths = write_explanations(
        args.run, args.objid, args.data, args.images, args.out, device=device_wanted(args)
    )
    for png, js in paths:
        print(f"{png}  {js.name}")
    return 0
