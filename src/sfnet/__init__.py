"""sfnet: Sparse Feature Networks for interpretable galaxy-property regression.

Implements Wu (2025), "Insights on Galaxy Evolution from Interpretable Sparse Feature
Networks": a resnet18 whose 512 pooled features pass through a top-k layer before a
linear head, so that every prediction is a linear equation of k image features.

The public Python API is re-exported here, loaded on first use (``import sfnet`` stays fast;
torch is imported only when a name that needs it is touched)::

    import sfnet
    sfnet.synthesize("survey", n=256, size=48)
    run = sfnet.train_run("survey", target="metallicity", k=4, out="runs/z", epochs=3)
    run.feature_table()
    run.predict(images, format="astropy")

``sfnet.Run`` and the command line load a run through one function (:func:`sfnet.runs.load_run`)
and predict through one (:func:`sfnet.predict.predict_table`), so they give identical numbers.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> "module:attribute". A module that moves is a one-line change here.
_EXPORTS: dict[str, str] = {
    # the model
    "SparseFeatureNet": "sfnet.model:SparseFeatureNet",
    "TopK": "sfnet.model:TopK",
    # data
    "open_dataset": "sfnet.data.galaxies:open_dataset",
    "GalaxyData": "sfnet.data.dataset:GalaxyData",
    "open_galaxies": "sfnet.data.galaxies:open_galaxies",
    "synthesize": "sfnet.data.synthetic:synthesize",
    # configuration and training
    "RunConfig": "sfnet.config:RunConfig",
    "DataConfig": "sfnet.config:DataConfig",
    "ModelConfig": "sfnet.config:ModelConfig",
    "TrainConfig": "sfnet.config:TrainConfig",
    "train_run": "sfnet.workflows.train:train_run",
    "fit": "sfnet.train:fit",
    # a trained run
    "Run": "sfnet.runs:Run",
    "load_run": "sfnet.runs:load_run",
    # tables
    "table_of_predictions": "sfnet.predict:table_of_predictions",
    "to_astropy": "sfnet.outputs.tables:to_astropy",
    "write_table": "sfnet.outputs.tables:write_table",
    # analysis and figures
    "SparseActivations": "sfnet.analysis.activations:SparseActivations",
    "feature_table": "sfnet.analysis.activations:feature_table",
    "EquationSet": "sfnet.analysis.equations:EquationSet",
    "feature_figure": "sfnet.outputs.plots:feature_figure",
    "correlation_figure": "sfnet.outputs.plots:correlation_figure",
    "equations_figure": "sfnet.outputs.plots:equations_figure",
    "training_curves_figure": "sfnet.outputs.plots:training_curves_figure",
    "analyze_run": "sfnet.workflows.analyze:analyze_run",
    "SparseAutoencoder": "sfnet.analysis.sae:SparseAutoencoder",
    "SAEConfig": "sfnet.analysis.sae:SAEConfig",
    "write_report": "sfnet.workflows.analyze:write_report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'sfnet' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # cache: the next access is a plain attribute lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
