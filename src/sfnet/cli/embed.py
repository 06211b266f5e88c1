"""``sfnet embed``: pooled features of an encoder or a run's trunk, one row per galaxy."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from sfnet.cli.options import add_field_options
    from sfnet.config import EmbedConfig

    p = sub.add_parser(
        "embed",
        help="pooled features of an encoder (Zoobot, timm) or a run's trunk, by objID",
        description=(
            "Write a Parquet feature file (objID, f0 .. f{d-1}) that compare/reproduce "
            "--features and the probes read. ENCODER: a run folder (its trunk's pooled "
            "features), 'zoobot' (hf_hub:mwalmsley/zoobot-encoder-resnet18), resnet18, a timm "
            "model name or hf_hub:ORG/NAME (its pretrained embedding; weights from the "
            "Hugging Face cache, downloaded once where there is a network)."
        ),
    )
    p.add_argument("encoder", help="run folder, zoobot, resnet18, timm name or hf_hub:ORG/NAME")
    p.add_argument("--out", type=Path, required=True, help="output feature file (.parquet)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_field_options(p, EmbedConfig, "embed")
    p.set_defaults(func=_embed)


def _embed(args: argparse.Namespace) -> int:
    from sfnet.cli.options import given_options
    from sfnet.config import EmbedConfig
    from sfnet.io import check_output_file
    from sfnet.workflows.embed import embed_to_file

    cfg = EmbedConfig(**given_options(args, "embed"))
    encoder = Path(args.encoder)
    inputs = [cfg.path or None, encoder if encoder.exists() else None]
    check_output_file(args.out, overwrite=args.overwrite, inputs=inputs)
    out = embed_to_file(args.encoder, cfg, args.out)
    print(f"wrote {out}")
    return 0
