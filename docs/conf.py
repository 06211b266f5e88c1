"""Sphinx configuration of the sfnet documentation (``make docs``).

Two pages are generated at build time so they cannot fall behind the code: the CLI reference
from ``sfnet.cli.build_parser()`` (every subcommand's ``--help``) and the API reference from
``sfnet.__all__``; the example pages are rendered from the notebooks in ``examples/``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
GENERATED = Path(__file__).resolve().parent / "_generated"

project = "sfnet"
author = "sfnet contributors"
copyright = "2025, sfnet contributors"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.intersphinx"]
intersphinx_mapping = {}  # no network at build time: external names render as plain text
napoleon_google_docstring = True
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
exclude_patterns = ["_build", "results", "**/.ipynb_checkpoints"]
html_theme = "alabaster"
html_static_path: list[str] = []
suppress_warnings = ["ref.python"]  # several classes share short names


def _heading(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n"


def cli_reference() -> str:
    """rst of ``sfnet --help`` and of every subcommand's ``--help``."""
    import argparse

    from sfnet.cli import build_parser

    parser = build_parser()
    out = [_heading("Command-line reference", "="), "Generated from the argparse parsers.\n"]
    out += [".. code-block:: text\n", _indent(parser.format_help()) + "\n"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        out += [
            _heading(f"sfnet {name}", "-"),
            ".. code-block:: text\n",
            _indent(p.format_help()) + "\n",
        ]
    return "\n".join(out)


def api_reference() -> str:
    """rst documenting every name in ``sfnet.__all__``, grouped by kind."""
    import inspect

    import sfnet

    out = [
        _heading("Python API", "="),
        "Everything below is importable from ``sfnet`` itself (``import sfnet``).\n",
    ]
    for name in sfnet.__all__:
        obj = getattr(sfnet, name)
        if inspect.isclass(obj):
            members = "   :members:\n" if name == "Run" else ""
            out.append(f".. autoclass:: sfnet.{name}\n{members}")
        else:
            out.append(f".. autofunction:: sfnet.{name}\n")
    return "\n".join(out)


def notebook_page(path: Path, title: str) -> str:
    """A notebook's markdown and code cells as rst (outputs are not stored in git)."""
    nb = json.loads(path.read_text())
    out = [_heading(title, "="), f"The notebook ``examples/{path.name}``, cell by cell.\n"]
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "code":
            out += [".. code-block:: python\n", _indent(src) + "\n"]
            continue
        for line in src.splitlines():
            if line.startswith("#"):
                text = line.lstrip("#").strip()
                if line.startswith("# "):
                    continue  # the page title replaces the notebook's own
                out.append("\n" + _heading(text, "-"))
            else:
                out.append(line.replace("`", "``").replace("````", "``"))
        out.append("")
    return "\n".join(out)


def _indent(text: str) -> str:
    return "\n".join(("   " + line) if line.strip() else "" for line in text.splitlines())


def _write(name: str, text: str) -> None:
    GENERATED.mkdir(exist_ok=True)
    path = GENERATED / name
    if not path.is_file() or path.read_text() != text:  # unchanged files keep Sphinx's cache
        path.write_text(text)


def generate(app) -> None:  # noqa: ARG001 - Sphinx passes the app
    import os

    os.environ.setdefault("COLUMNS", "100")  # argparse wraps help at the terminal width
    _write("cli.rst", cli_reference())
    _write("api.rst", api_reference())
    _write("quickstart.rst", notebook_page(ROOT / "examples/quickstart.ipynb", "Quickstart"))
    _write(
        "real_sample.rst",
        notebook_page(ROOT / "examples/real_sample.ipynb", "Real data: the SDSS sample"),
    )


def setup(app) -> None:
    app.connect("builder-inited", generate)
