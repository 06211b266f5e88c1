"""Sphinx configuration of the sfnet documentation (``make docs``).

Pages generated at build time so they cannot fall behind the code: the CLI reference from
``sfnet.cli.build_parser()`` (every subcommand's ``--help``), the API reference from
``sfnet.__all__``, the settings reference from the config dataclasses (every field with its
type, default and help text); and the example notebooks of ``examples/``, copied here and
executed by myst-nb at their tiny size (``SFNET_EXAMPLE_SIZE=tiny``: a minute or two on a
CPU), so the pages show their printed output and figures. Their numbers come from one-epoch
toy runs and mean nothing; the notebooks at full size are the real examples.

Theme: pydata-sphinx-theme, the theme of astropy and its affiliated packages.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
GENERATED = Path(__file__).resolve().parent / "_generated"

project = "sfnet"
author = "sfnet contributors"
copyright = "2025, sfnet contributors"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.intersphinx", "myst_nb"]
intersphinx_mapping = {}  # no network at build time: external names render as plain text
napoleon_google_docstring = True
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
exclude_patterns = ["_build", "results", "**/.ipynb_checkpoints"]
html_theme = "pydata_sphinx_theme"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_sidebars = {"**": []}  # one level of pages: the top bar lists them; wider content
html_static_path = ["_static"]
html_css_files = ["sfnet.css"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# The notebooks run at build time, tiny, in a scratch folder (nothing is written to examples/);
# the kernel imports this checkout's sfnet.
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
# SFNET_DOCS_SKIP_RUN=real_sample: build that page without running it (the test suite does so,
# since tests/test_examples.py runs that notebook already).
nb_execution_excludepatterns = [
    f"*{name}*" for name in os.environ.get("SFNET_DOCS_SKIP_RUN", "").split(",") if name
]
nb_merge_streams = True
nb_output_stderr = "remove"  # progress bars and library warnings are not part of the lesson
os.environ["SFNET_EXAMPLE_SIZE"] = "tiny"
os.environ.setdefault("SFNET_EXAMPLE_DIR", tempfile.mkdtemp(prefix="sfnet-docs-"))
os.environ["SFNET_SAMPLE"] = str(ROOT / "examples" / "sdss-metallicity-400")
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
suppress_warnings = ["ref.python"]  # several classes share short names (e.g. two Run classes)


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


def config_reference() -> str:
    """rst of every setting: one table per config dataclass (field, type, default, help)."""
    import dataclasses
    import typing

    from sfnet.config import NONE, SECTIONS, CompareConfig, PredictConfig, _default
    from sfnet.data.paper_data import PaperDataConfig
    from sfnet.data.store import PrepareConfig
    from sfnet.data.synthetic import SynthConfig
    from sfnet.workflows.analyze import AnalysisOptions
    from sfnet.workflows.demo import DemoConfig

    out = [
        _heading("Settings", "="),
        "Every setting of a run, as saved in its ``config.toml`` (section ``[data]``, "
        "``[model]``, ``[train]``) and as the ``sfnet`` command-line option of the same name "
        "(``_`` written ``-``), then the settings of the other commands (their options). "
        "Generated from the settings dataclasses.\n",
    ]
    classes = [*(("[" + k + "]", v) for k, v in SECTIONS.items())]
    classes += [("compare.toml", CompareConfig), ("sfnet demo", DemoConfig)]  # demo: if typed
    classes += [("sfnet analyze / report", AnalysisOptions), ("sfnet synth", SynthConfig)]
    classes += [("sfnet prepare", PrepareConfig), ("sfnet predict", PredictConfig)]
    classes += [("sfnet fetch-paper-data", PaperDataConfig)]
    for title, klass in classes:
        hints = typing.get_type_hints(klass)
        if not any("help" in f.metadata for f in dataclasses.fields(klass)):
            continue
        out.append(_heading(f"{title}: {klass.__name__}", "-"))
        out.append((klass.__doc__ or "").strip().splitlines()[0] + "\n")
        out.append(".. list-table::\n   :header-rows: 1\n   :widths: 18 14 14 54\n")
        out.append("   * - setting\n     - type\n     - default\n     - meaning")
        for f in dataclasses.fields(klass):
            if "help" not in f.metadata:
                continue
            default = _default(f)
            shown = (
                NONE
                if default is None
                else " ".join(map(str, default))
                if isinstance(default, tuple)
                else str(default)
            )
            kind = str(hints[f.name]).replace("typing.", "").replace("<class '", "")
            kind = kind.replace("'>", "")
            help_text = f.metadata["help"].replace("*", "\\*").replace("`", "'")
            if f.metadata.get("choices"):
                help_text += f" (one of: {', '.join(f.metadata['choices'])})"
            shown = f"``{shown}``" if shown else "(empty)"
            out.append(f"   * - ``{f.name}``\n     - {kind}\n     - {shown}\n     - {help_text}")
        out.append("")
    return "\n".join(out)


def copy_notebook(name: str) -> None:
    """Copy ``examples/<name>`` next to the generated pages (myst-nb runs it there)."""
    GENERATED.mkdir(exist_ok=True)
    src, dst = ROOT / "examples" / name, GENERATED / name
    if not dst.is_file() or dst.read_bytes() != src.read_bytes():
        shutil.copyfile(src, dst)


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
    _write("settings.rst", config_reference())
    for stale in ("quickstart.rst", "real_sample.rst"):  # rst pages of older builds
        (GENERATED / stale).unlink(missing_ok=True)
    copy_notebook("quickstart.ipynb")
    copy_notebook("real_sample.ipynb")


def setup(app) -> None:
    app.connect("builder-inited", generate)
