#!/usr/bin/env bash
# Issue 22's sweep: built-in (SFNet-k) against post-hoc (SAE-k, PCA-k) sparsity, with the
# interpretability table, on the synthetic survey (both targets) and the real 400-galaxy SDSS
# sample (metallicity): ks 2 4 8, 3 repeats, 32 px, 8 epochs, the default (stable) recipe,
# random init, CPU, one thread, nice -n 10.
#
#   benchmarks/sparsity_sweep.sh [WORKDIR]        (default WORKDIR: /tmp/sfnet-sparsity-sweep)
#
# Resumable: rerun the same command after an interruption. The survey is rendered once (into a
# temporary folder, renamed when complete), `prepare` resumes, and `compare` reuses every
# finished run and saved SAE and resumes a killed run from its checkpoint. When a comparison
# is done, docs/results/sparsity-compare/{synthetic,sdss400}/ is replaced by its tables, figure
# and SAE latent tables (and, with ATLASES=1, atlas.html and the four self-contained feature
# atlases it links, SFNet and SAE per target at k = 4: ~1 MB each).
#
# Settings can be overridden from the environment: N (synthetic galaxies, default 2000),
# EPOCHS (8), KS ("2 4 8"), REPEATS (3), PX (32), PYTHON (the repo's .venv python), STAGE
# ("all"; "synthetic" or "sdss400" runs one comparison only), SYN_TARGETS (the synthetic
# comparison's targets, "metallicity bpt_lines"), ATLASES (0), DEVICE (cpu; cuda
# on a GPU machine: the runs differ from CPU ones, so use a fresh WORKDIR), EXTRA (more
# `sfnet compare` options, e.g. "--sae-steps 50" for a dry run), DOCS (where to publish).
# Measured cost: see docs/results/sparsity-compare/README.md ("Running the sweep").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-/tmp/sfnet-sparsity-sweep}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
N=${N:-2000}
EPOCHS=${EPOCHS:-8}
KS=${KS:-"2 4 8"}
REPEATS=${REPEATS:-3}
PX=${PX:-32}
STAGE=${STAGE:-all}
SYN_TARGETS=${SYN_TARGETS:-"metallicity bpt_lines"}
ATLASES=${ATLASES:-0}
EXTRA=${EXTRA:-}
DEVICE=${DEVICE:-cpu}
DOCS=${DOCS:-$ROOT/docs/results/sparsity-compare}

export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
sfnet() { nice -n 10 "$PYTHON" -m sfnet "$@"; }
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

mkdir -p "$WORK"
# shellcheck disable=SC2086  # KS and EXTRA are lists of words
COMMON=(--ks $KS --repeats "$REPEATS" --resize "$PX" --crop "$PX" --epochs "$EPOCHS"
    --device "$DEVICE" --no-progress $EXTRA)

publish() { # publish COMPARE_FOLDER NAME: the tables, figure (and atlases) into the docs
    local src=$1 dst=$DOCS/$2 pages=("$1"/sae/*/latents.csv)
    rm -rf "$dst"
    mkdir -p "$dst"
    for f in compare.toml table_rmse.md table_rmse.csv rmse_vs_k.png sweep_runs.csv \
        sae_runs.csv interpretability.md interpretability.csv interpretability_runs.csv \
        factors.csv pca_variance.csv probes.csv comparison.md; do
        if [ -f "$src/$f" ]; then cp "$src/$f" "$dst/$f"; fi
    done
    if [ "$ATLASES" = 1 ]; then
        cp "$src/atlas.html" "$dst/"
        pages+=("$src"/runs/*/report.html "$src"/sae/*/report.html)
    fi
    for page in "${pages[@]}"; do
        [ -f "$page" ] || continue
        local rel=${page#"$src"/}
        mkdir -p "$dst/$(dirname "$rel")"
        cp "$page" "$dst/$rel"
    done
    log "published $src -> $dst"
}

if [ "$STAGE" = all ] || [ "$STAGE" = synthetic ]; then
    if [ ! -f "$WORK/survey/galaxies.csv" ]; then
        log "rendering the synthetic survey ($N galaxies, 64 px)"
        rm -rf "$WORK/survey.partial"
        sfnet synth --out "$WORK/survey.partial" --n "$N" --size 64 --seed 0 --workers 1 \
            --no-progress
        mv "$WORK/survey.partial" "$WORK/survey"
    fi
    log "prepare survey at $PX px"
    sfnet prepare "$WORK/survey" --resize "$PX" --workers 1 --no-progress
    log "compare synthetic ($SYN_TARGETS)"
    # shellcheck disable=SC2086  # a list of words
    sfnet compare "$WORK/survey" --out "$WORK/cmp-synthetic" --targets $SYN_TARGETS \
        "${COMMON[@]}"
    publish "$WORK/cmp-synthetic" synthetic
fi

if [ "$STAGE" = all ] || [ "$STAGE" = sdss400 ]; then
    [ -d "$WORK/sdss400" ] || cp -r "$ROOT/examples/sdss-metallicity-400" "$WORK/sdss400"
    log "prepare sdss400 at $PX px"
    sfnet prepare "$WORK/sdss400" --resize "$PX" --workers 1 --no-progress
    log "compare sdss400 (metallicity)"
    sfnet compare "$WORK/sdss400" --out "$WORK/cmp-sdss400" --targets metallicity \
        "${COMMON[@]}"
    publish "$WORK/cmp-sdss400" sdss400
fi
log "done"
