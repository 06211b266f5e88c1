"""Linear equations from SFNet features to physical quantities (the paper's Figure "equations").

The head predicts standardized targets, p_t = b_t + sum_f W_tf a_f, and the run un-standardizes
them, y_t = mean_t + std_t p_t. With A_f = a_f / max_f (the 0-1 activation strength) this is

    y_t = (mean_t + std_t b_t) + sum_f (std_t W_tf max_f) A_f,

an exact equation in physical units (dex per unit A_f). For a ``bpt_lines`` run the BPT ratios
are differences of log line fluxes, so their equations are differences of the line equations:
log [NII]/Halpha = eq([NII]) - eq(Halpha), log [OIII]/Hbeta = eq([OIII]) - eq(Hbeta).

Each feature's *mean contribution* w_f * mean(A_f) (mean over all stored galaxies, zeros
included) says how much it moves the typical prediction; raw weights alone mislead when features
fire at different rates and strengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sfnet.analysis.activations import SparseActivations, feature_stats
from sfnet.errors import DataError
from sfnet.physics import BPT_LINES

#: Names of the two BPT ratio equations (log10, dex).
RATIO_NAMES = ("log_nii_ha", "log_oiii_hb")
#: Human-readable names used in the markdown and figures.
PRETTY = {
    "oh_p50": "12 + log(O/H)",
    "log_nii_6584_flux": "log [NII] 6584",
    "log_h_alpha_flux": "log H-alpha",
    "log_oiii_5007_flux": "log [OIII] 5007",
    "log_h_beta_flux": "log H-beta",
    "log_nii_ha": "log [NII]/H-alpha",
    "log_oiii_hb": "log [OIII]/H-beta",
}
_BPT_TARGETS = tuple(f"log_{name}" for name in BPT_LINES)


@dataclass
class Equation:
    """y = intercept + sum_j coefficients[j] * A_{features[j]}.

    Attributes:
        name: target (or ratio) name.
        intercept: physical units (dex).
        features: (m,) int feature indices (those active on the stored galaxies).
        coefficients: (m,) physical units per unit A_f (dex).
        mean_contribution: (m,) coefficient times mean A_f over the stored galaxies.
    """

    name: str
    intercept: float
    features: np.ndarray
    coefficients: np.ndarray
    mean_contribution: np.ndarray

    def coefficient(self, feature: int) -> float:
        """The coefficient of one feature (0 if it is not in the equation)."""
        hit = np.flatnonzero(self.features == feature)
        return float(self.coefficients[hit[0]]) if len(hit) else 0.0

    def evaluate(self, acts: SparseActivations, fmax: np.ndarray) -> np.ndarray:
        """(N,) the equation on stored activations, with A_f = a_f / fmax[f]."""
        coef = np.zeros(acts.d, dtype=np.float64)
        coef[self.features] = self.coefficients
        return evaluate_sparse(self.intercept, coef, acts, fmax)

    def to_dict(self, labels: dict[int, str] | None = None) -> dict[str, Any]:
        labels = labels or {}
        return {
            "name": self.name,
            "intercept": float(self.intercept),
            "terms": [
                {
                    "feature": int(f),
                    "label": labels.get(int(f), str(int(f))),
                    "coefficient": float(c),
                    "mean_contribution": float(mc),
                }
                for f, c, mc in zip(
                    self.features, self.coefficients, self.mean_contribution, strict=True
                )
            ],
        }


def evaluate_sparse(
    intercept: float, coef: np.ndarray, acts: SparseActivations, fmax: np.ndarray
) -> np.ndarray:
    """(N,) intercept + sum over each galaxy's active features of coef[f] * a_f / fmax[f].

    O(N k): works on the sparse (N, k) arrays directly.
    """
    idx = acts.indices.astype(np.intp)
    vals = acts.values.astype(np.float64)
    scale = np.asarray(fmax, dtype=np.float64)[idx]
    strength = np.divide(vals, scale, out=np.zeros_like(vals), where=(vals > 0) & (scale > 0))
    return intercept + (np.asarray(coef, dtype=np.float64)[idx] * strength).sum(axis=1)


def linear_equations(
    weight: np.ndarray,
    bias: np.ndarray,
    target_mean: Sequence[float],
    target_std: Sequence[float],
    fmax: np.ndarray,
    target_names: Sequence[str],
    mean_strength: np.ndarray | None = None,
) -> list[Equation]:
    """One equation per target in physical units.

    Args:
        weight: (T, d) head weight (standardized target units per unit activation).
        bias: (T,) head bias (standardized units).
        target_mean, target_std: (T,) the run's target standardization (physical units).
        fmax: (d,) the activation scale max_f of A_f (0 for never-active features, which are
            left out of the equations).
        target_names: T names.
        mean_strength: (d,) mean A_f over the stored galaxies (for the mean contributions).
    """
    w = np.asarray(weight, dtype=np.float64)
    b = np.asarray(bias, dtype=np.float64).reshape(-1)
    mu = np.asarray(target_mean, dtype=np.float64).reshape(-1)
    sd = np.asarray(target_std, dtype=np.float64).reshape(-1)
    fmax = np.asarray(fmax, dtype=np.float64)
    t = len(target_names)
    if w.shape != (t, len(fmax)) or b.shape != (t,) or mu.shape != (t,) or sd.shape != (t,):
        raise DataError(
            f"equations: head weight {w.shape}, bias {b.shape}, mean {mu.shape}, std {sd.shape} "
            f"do not match {t} targets x {len(fmax)} features"
        )
    feats = np.flatnonzero(fmax > 0)
    ms = np.zeros(len(fmax)) if mean_strength is None else np.asarray(mean_strength, float)
    out = []
    for i, name in enumerate(target_names):
        coef = sd[i] * w[i, feats] * fmax[feats]
        out.append(
            Equation(
                name=str(name),
                intercept=float(mu[i] + sd[i] * b[i]),
                features=feats.copy(),
                coefficients=coef,
                mean_contribution=coef * ms[feats],
            )
        )
    return out


def difference(a: Equation, b: Equation, name: str) -> Equation:
    """The equation of a - b (same feature set required)."""
    if not np.array_equal(a.features, b.features):
        raise ValueError(f"cannot subtract equations {b.name} from {a.name}: different features")
    return Equation(
        name=name,
        intercept=a.intercept - b.intercept,
        features=a.features.copy(),
        coefficients=a.coefficients - b.coefficients,
        mean_contribution=a.mean_contribution - b.mean_contribution,
    )


def ratio_equations(equations: Sequence[Equation]) -> list[Equation]:
    """log [NII]/Halpha and log [OIII]/Hbeta from the four line equations ([] otherwise)."""
    by_name = {e.name: e for e in equations}
    if not all(n in by_name for n in _BPT_TARGETS):
        return []
    n2, ha, o3, hb = (by_name[n] for n in _BPT_TARGETS)
    return [difference(n2, ha, RATIO_NAMES[0]), difference(o3, hb, RATIO_NAMES[1])]


@dataclass
class EquationSet:
    """All equations of a run plus what is needed to read them.

    Attributes:
        equations: per target, then the BPT ratios where they apply.
        fmax: (d,) activation scales (max over the stored galaxies).
        frequency: (d,) f_activated on the stored galaxies.
        labels: feature index -> label (SL17 / Z61).
        ranked: feature indices by descending frequency (active ones).
        split: which galaxies the scales and means were taken over.
    """

    equations: list[Equation]
    fmax: np.ndarray
    frequency: np.ndarray
    labels: dict[int, str]
    ranked: np.ndarray
    split: str = "val"

    def __getitem__(self, name: str) -> Equation:
        for e in self.equations:
            if e.name == name:
                return e
        raise KeyError(name)

    def evaluate(self, acts: SparseActivations) -> dict[str, np.ndarray]:
        """name -> (N,) the equations evaluated on stored activations."""
        return {e.name: e.evaluate(acts, self.fmax) for e in self.equations}

    def to_dict(self) -> dict[str, Any]:
        return {
            "scaling": (
                "A_f = activation / max over the "
                f"{'validation' if self.split == 'val' else 'stored'} galaxies of that feature"
            ),
            "units": "the target's physical units per unit A_f",
            "features": [
                {
                    "feature": int(f),
                    "label": self.labels[int(f)],
                    "f_activated": float(self.frequency[f]),
                    "max_activation": float(self.fmax[f]),
                }
                for f in self.ranked
            ],
            "equations": [e.to_dict(self.labels) for e in self.equations],
        }


def build_equations(
    acts: SparseActivations,
    weight: np.ndarray,
    bias: np.ndarray,
    target_mean: Sequence[float],
    target_std: Sequence[float],
    target_names: Sequence[str],
    labels: dict[int, str],
) -> EquationSet:
    """Equations for every target (and the BPT ratios) scaled on the stored activations."""
    from sfnet.analysis.activations import rank_features

    stats = feature_stats(acts)
    eqs = linear_equations(
        weight, bias, target_mean, target_std, stats.max, target_names, stats.mean_strength
    )
    eqs += ratio_equations(eqs)
    ranked = rank_features(stats.frequency)
    return EquationSet(
        equations=eqs,
        fmax=stats.max,
        frequency=stats.frequency,
        labels={int(f): labels.get(int(f), str(int(f))) for f in ranked},
        ranked=ranked,
        split=acts.split,
    )


def equations_for_run(run: Any, acts: SparseActivations, target: str) -> EquationSet:
    """:func:`build_equations` with the head and standardization of a loaded run."""
    from sfnet.analysis.activations import feature_label

    weight, bias = run.head()
    labels = {f: feature_label(target, f) for f in range(acts.d)}
    return build_equations(
        acts,
        weight,
        bias,
        run.meta.target_mean,
        run.meta.target_std,
        run.meta.target_names,
        labels,
    )


def _fmt_term(coef: float, label: str) -> str:
    sign = "-" if coef < 0 else "+"
    return f"{sign} {abs(coef):.4f} A_{label}"


def to_markdown(eqs: EquationSet, n_terms: int = 8) -> str:
    """The equations as markdown: one line each with the ``n_terms`` most frequent features,
    then a table of every term (coefficient, mean contribution, f_activated)."""
    lines = [
        "# Linear equations of the SFNet",
        "",
        f"Scaled activation strength {eqs.to_dict()['scaling']}; coefficients are in the target's",
        "physical units (dex) per unit A_f, with the target standardization folded in.",
        "Features are listed by how often they fire (f_activated). Mean contribution =",
        "coefficient x mean A_f over the same galaxies (zeros included).",
        "",
    ]
    rank_pos = {int(f): i for i, f in enumerate(eqs.ranked)}
    for e in eqs.equations:
        order = sorted(
            range(len(e.features)), key=lambda j: rank_pos.get(int(e.features[j]), 1 << 30)
        )
        shown = order[:n_terms]
        rest = len(order) - len(shown)
        terms = " ".join(
            _fmt_term(float(e.coefficients[j]), eqs.labels[int(e.features[j])]) for j in shown
        )
        tail = f" + ({rest} rarer features)" if rest > 0 else ""
        lines += [
            f"## {PRETTY.get(e.name, e.name)}",
            "",
            f"`{e.name} = {e.intercept:.4f} {terms}{tail}`",
            "",
            "| feature | f_activated | coefficient (dex per A_f) | mean contribution (dex) |",
            "|---|---:|---:|---:|",
        ]
        for j in order:
            f = int(e.features[j])
            lines.append(
                f"| {eqs.labels[f]} | {eqs.frequency[f]:.1%} | {e.coefficients[j]:+.4f} "
                f"| {e.mean_contribution[j]:+.4f} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_equations(eqs: EquationSet, run_dir: Path) -> tuple[Path, Path]:
    """Write ``equations.md`` and ``equations.json`` into the run folder (atomically)."""
    from sfnet.io import atomic_write_bytes, atomic_write_json
    from sfnet.runs import EQUATIONS_JSON, EQUATIONS_MD

    run_dir = Path(run_dir)
    md, js = run_dir / EQUATIONS_MD, run_dir / EQUATIONS_JSON
    atomic_write_bytes(md, to_markdown(eqs).encode())
    atomic_write_json(js, eqs.to_dict())
    return md, js
