#!/usr/bin/env bash
# Rebuild glean-sr's demo model (glyphs_demo_4x) and its measurements from nothing but the font
# packages scripts/setup.sh installs. Run from the repository root after scripts/setup.sh; every
# step is a glean-sr command with a shipped recipe. One CPU thread per process is the fastest
# per core; the two halves marked below can run on two cores at once.
set -euo pipefail
cd "$(dirname "$0")/.."
G=.venv/bin/glean-sr
export OMP_NUM_THREADS=1

$G build-glyphs data/glyphs32 --png

# core 1: the bank, then GLEAN around it
$G train-bank glyphs32
$G train glyphs_glean_4x

# core 2: the baselines and the classifier that judges all of them
$G train-bank glyphs32 --untrained runs/bank-glyphs32-untrained
$G train glyphs_nobank_4x
$G train glyphs_randombank_4x
$G train-glyph-classifier data/glyphs32 -o runs/glyph-classifier

# the paper's claim on the 20 held-out font families, and the files that ship
$G eval -m runs/glyphs_glean_4x/final -m runs/glyphs_nobank_4x/final \
    -m runs/glyphs_randombank_4x/final --gt data/glyphs32/test --metrics psnr,ssim,chars \
    --glyph-classifier runs/glyph-classifier --batch-size 64 -o runs/eval-glyphs-test --overwrite
$G convert runs/glyphs_glean_4x/final src/glean_sr/demo/glyphs_4x --dtype fp16 --overwrite
.venv/bin/python scripts/demo_figures.py
