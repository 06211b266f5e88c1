"""Why one galaxy got its prediction: ``sfnet explain``.

For each requested galaxy: the cutout, the prediction (and the measured value when the catalog
has it), its k active features with activation a_f, strength A_f (scaled by the feature's
maximum over the run's analysed galaxies) and contribution to each target in physical units,
each active feature's spatial map on the galaxy, the contribution map per target, and three
top-activating galaxies of each active feature from the run's analysis. The contributions add
up exactly: intercept + sum of contributions = prediction.

Any galaxy that has an image can be explained, as ``sfnet predict`` predicts it: measured or not,
passing the target's quality cuts or not (the figure and JSON say "no measurement" or "fails cut
X"). Galaxies come from the one loader :func:`sfnet.data.galaxies.open_galaxies`: the run's own
data, another dataset folder (a catalog without targets is fine), a ``.npz`` or a bare folder of
images named ``{objID}.jpg|png|fits``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sfnet.data.galaxies import Galaxies
from sfnet.errors import DataError, RunFolderError


@dataclass
class FeatureExplanation:
    """One active feature of one galaxy.

    Attributes:
        feature, label: index and label (Z61).
        activation: pooled activation a_f. strength: A_f = a_f / max over the analysed
            galaxies (NaN when the feature never fired there).
        contribution: (T,) std_t * W_tf * a_f, physical units (dex).
        map: (h, w) the feature's spatial map on this galaxy (pixel mean = activation).
        top_objids: objIDs of its top-activating analysed galaxies (strongest first).
    """

    feature: int
    label: str
    activation: float
    strength: float
    contribution: np.ndarray
    map: np.ndarray
    top_objids: list[str]


@dataclass
class GalaxyExplanation:
    """Everything ``sfnet explain`` says about one galaxy (physical units throughout)."""

    objid: str
    target_names: list[str]
    prediction: np.ndarray
    measured: np.ndarray | None
    intercept: np.ndarray
    contribution_map: np.ndarray
    features: list[FeatureExplanation]
    resolution: str
    status: str = ""

    @property
    def status_text(self) -> str:
        """``passes cuts``, ``no measurement`` or ``fails cut <cut>``."""
        return self.status or "passes cuts"

    def to_dict(self) -> dict[str, Any]:
        names = self.target_names
        named = lambda v: {n: float(x) for n, x in zip(names, v, strict=True)}  # noqa: E731
        meas = None
        if self.measured is not None:
            meas = {
                n: (float(x) if np.isfinite(x) else None)
                for n, x in zip(names, self.measured, strict=True)
            }
        return {
            "objID": self.objid,
            "prediction": named(self.prediction),
            "measured": meas,
            "status": self.status_text,
            "intercept": named(self.intercept),
            "map_resolution": self.resolution,
            "contribution_map": {n: self.contribution_map[t].tolist() for t, n in enumerate(names)},
            "features": [
                {
                    "feature": f.feature,
                    "label": f.label,
                    "activation": f.activation,
                    "strength": None if not np.isfinite(f.strength) else f.strength,
                    "contribution": named(f.contribution),
                    "map": f.map.tolist(),
                    "top_activating": f.top_objids,
                }
                for f in self.features
            ],
        }


def load_galaxies(run: Any, data: str | None = None, images: str | None = None) -> Galaxies:
    """The galaxies to explain (every one with an image): the run's own data folder, another
    dataset or ``.npz`` (``data``), or a folder of cutouts (``images``)."""
    if data and images:
        raise DataError("give either a dataset (--data) or an image folder (--images), not both")
    return run.galaxies(images or data or None)


def load_analysis(run_dir: Path):
    """The run's stored activations (for A_f scales and top-activating galaxies)."""
    from sfnet.analysis.activations import SparseActivations, model_sha
    from sfnet.runs import ACTIVATIONS

    path = Path(run_dir) / ACTIVATIONS
    if not path.is_file():
        raise RunFolderError(
            f"{run_dir}: not analysed yet, so A_f and top-activating galaxies are unknown; "
            f"run 'sfnet analyze {run_dir}' first"
        )
    acts = SparseActivations.load(path)
    if acts.model_sha and acts.model_sha != model_sha(Path(run_dir)):
        raise RunFolderError(
            f"{path}: computed with other weights than {run_dir}/model.safetensors; "
            f"run 'sfnet analyze {run_dir} --recompute'"
        )
    return acts


def explain_galaxies(
    run: Any, galaxies: Galaxies, rows: np.ndarray, acts: Any, n_top: int = 3
) -> list[GalaxyExplanation]:
    """Explain ``galaxies[rows]`` with a run and its stored analysis ``acts``."""
    from sfnet.analysis.activations import feature_label, feature_max, top_activating
    from sfnet.analysis.maps import contribution_maps, native_resolution
    from sfnet.predict import predict, spatial_features

    if run.meta.k is None:
        raise RunFolderError(f"{run.dir}: a dense run has no sparse features to explain")
    pred = predict(run, galaxies.images, rows)
    maps = spatial_features(run, galaxies.images, rows, features=pred.indices)
    w, b = run.head()
    cm = contribution_maps(
        maps, pred.indices, pred.values, w, b, run.meta.target_mean, run.meta.target_std
    )
    fmax = feature_max(acts)
    res = native_resolution(maps, galaxies.images.shape[-1])
    out = []
    for i, row in enumerate(rows):
        feats = []
        for j, (f, a) in enumerate(zip(pred.indices[i], pred.values[i], strict=True)):
            if a <= 0:
                continue
            pos, _ = top_activating(acts, int(f), n_top)
            feats.append(
                FeatureExplanation(
                    feature=int(f),
                    label=feature_label(run.meta.target, int(f)),
                    activation=float(a),
                    strength=float(a / fmax[f]) if fmax[f] > 0 else float("nan"),
                    contribution=cm.per_feature[i, j],
                    map=maps[i, j],
                    top_objids=[str(o) for o in np.asarray(acts.objid)[pos]],
                )
            )
        y = (
            galaxies.measured[row]
            if galaxies.measured.shape[1] == len(pred.predictions[i])
            else None
        )
        out.append(
            GalaxyExplanation(
                objid=str(galaxies.objid[row]),
                target_names=list(run.meta.target_names),
                prediction=pred.predictions[i].astype(np.float64),
                measured=None if y is None or not np.isfinite(y).any() else y,
                intercept=cm.intercept,
                contribution_map=cm.maps[i],
                features=feats,
                resolution=res,
                status=str(galaxies.status[row]),
            )
        )
    return out


def _caption(f: FeatureExplanation, names: Sequence[str]) -> str:
    a_f = "never active in analysis" if not np.isfinite(f.strength) else f"{f.strength:.2f}"
    lines = [f"{f.label}", f"activation {f.activation:.3g}", f"A_f {a_f}"]
    lines += [f"{n}: {c:+.3f}" for n, c in zip(names, f.contribution, strict=True)]
    return "\n".join(lines)


def plot_galaxy(
    e: GalaxyExplanation,
    image: np.ndarray,
    tops: list[np.ndarray],
    path: Path | None,
    units: dict[str, str] | None = None,
):
    """Draw one explanation (see :func:`sfnet.outputs.plots.explanation_figure`); ``units``:
    target name -> unit for the axes. Returns ``path`` once written, or the Figure when
    ``path`` is None."""
    from sfnet.analysis.maps import upsample
    from sfnet.outputs.plots import explanation_figure, save_figure

    size = image.shape[-1]
    names = e.target_names
    waterfalls = [
        (
            float(e.intercept[t]),
            [(f.label, float(f.contribution[t])) for f in e.features],
            None if e.measured is None else float(e.measured[t]),
        )
        for t in range(len(names))
    ]
    feats = [
        (f.label, _caption(f, names), upsample(f.map, size), tops[j])
        for j, f in enumerate(e.features)
    ]
    pred = ", ".join(f"{n} = {p:.3f}" for n, p in zip(names, e.prediction, strict=True))
    title = f"objID {e.objid}: predicted {pred}"
    if e.measured is not None:
        title += " (measured " + ", ".join(f"{m:.3f}" for m in e.measured) + ")"
    if e.status:  # "no measurement" or "fails cut X"
        title += f" ({e.status})"
    fig = explanation_figure(
        title, image, names, upsample(e.contribution_map, size), waterfalls, feats,
        e.resolution, units,
    )  # fmt: skip
    return fig if path is None else save_figure(fig, path)


def _explained(run: Any, galaxies: Galaxies, objids: Sequence[str | int]):
    """Yield (explanation, cutout (3, H, W), top-activating cutouts per feature)."""
    acts = load_analysis(run.dir)
    if galaxies.images.shape[-1] != run.meta.crop:
        raise DataError(
            f"{galaxies.source}: images are {galaxies.images.shape[-1]} px, the model was trained "
            f"on {run.meta.crop} px"
        )
    rows = galaxies.rows_of(objids)
    explanations = explain_galaxies(run, galaxies, rows, acts)
    ref = run.data().images  # the analysed galaxies are rows of the run's own data
    pos_of = {str(o): i for i, o in enumerate(np.asarray(acts.objid).astype(str))}
    for e, row in zip(explanations, rows, strict=True):
        tops = [
            np.asarray(ref[acts.rows[[pos_of[o] for o in f.top_objids]]])
            if f.top_objids
            else np.zeros((0, 3, 1, 1), np.uint8)
            for f in e.features
        ]
        yield e, np.asarray(galaxies.images[[row]])[0], tops


def explain_figures(
    run: Any, galaxies: Galaxies, objids: Sequence[str | int]
) -> list[tuple[Any, dict[str, Any]]]:
    """(Figure, JSON dict) per galaxy, nothing written (:meth:`sfnet.runs.Run.explain`)."""
    return [
        (plot_galaxy(e, image, tops, None, run.units), {"data": galaxies.source, **e.to_dict()})
        for e, image, tops in _explained(run, galaxies, objids)
    ]


def _check_replaceable(out: Path, name: str) -> None:
    """Refuse to write ``out/NAME.png`` and ``out/NAME.json`` over files that are not an
    earlier explanation (:func:`sfnet.runs.is_explanation` of ``NAME.json``).

    Raises:
        RunFolderError: naming the file that would be replaced.
    """
    from sfnet.runs import is_explanation

    png, js = out / f"{name}.png", out / f"{name}.json"
    taken = [p for p in (png, js) if p.exists() or p.is_symlink()]
    if taken and (
        not is_explanation(js) or png.is_symlink() or (png.exists() and not png.is_file())
    ):
        raise RunFolderError(
            f"{taken[0]}: exists and is not an explanation sfnet wrote; sfnet explain never "
            "replaces it - choose another --out"
        )


def write_explanations(
    run_dir: Path | str,
    objids: Sequence[str | int],
    data: str | None = None,
    images: str | None = None,
    out_dir: Path | str | None = None,
    device: Any = "cpu",
) -> list[tuple[Path, Path]]:
    """``sfnet explain``: write ``<objID>.png`` and ``<objID>.json`` per galaxy; return the paths.

    Args:
        run_dir: an analysed sparse run (``sfnet analyze``).
        objids: the galaxies to explain: any galaxy with an image, measured or not.
        data: a dataset folder or .npz (default: the run's own data); targets optional.
        images: instead of ``data``, a folder of cutouts named ``{objID}.jpg|png|fits``.
        out_dir: where to write (default ``RUN/explain``).
        device: where the model runs (a torch device or its name).
    """
    from sfnet.io import atomic_write_json, objid_filename
    from sfnet.runs import EXPLAIN, load_run

    for o in objids:  # objIDs become file names: refused up front unless plain names
        objid_filename(o, ".json")
    run = load_run(Path(run_dir), device=device)
    out = Path(out_dir) if out_dir is not None else run.dir / EXPLAIN
    for o in objids:  # and never replace a file sfnet did not write (a cutout named OBJID.png)
        _check_replaceable(out, objid_filename(o))
    galaxies = load_galaxies(run, data, images)
    paths = []
    units = run.units
    for e, image, tops in list(_explained(run, galaxies, objids)):
        out.mkdir(parents=True, exist_ok=True)
        png = plot_galaxy(e, image, tops, out / objid_filename(e.objid, ".png"), units)
        js = out / objid_filename(e.objid, ".json")
        atomic_write_json(js, {"run": str(run.dir), "data": galaxies.source, **e.to_dict()})
        paths.append((png, js))
    return paths
