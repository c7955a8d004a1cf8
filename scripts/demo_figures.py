"""The demo's example inputs and README pictures, from the runs of scripts/build_demo.sh.

Writes examples/glyphs/*.png (8 x 8 inputs: a word in a held-out font family, reduced with
MATLAB-compatible bicubic), examples/glyphs-original/*.png (the 32 x 32 glyphs they come from),
docs/demo_bank_samples.png (the bank's own samples) and docs/demo_test_glyphs.png (held-out
glyphs: input, bicubic, the two baselines, GLEAN, truth).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from glean_sr import load_bank, load_model
from glean_sr.data.glyphs import CHARS, glyph_file_name, load_split
from glean_sr.data.imresize import imresize
from glean_sr.io import quantize, tensor_to_pixels
from glean_sr.weights.banks import sample_grid

WORD = "GLEANdemo42"


def _pick(split: dict, family: str, word: str) -> list[int]:
    """Indices of ``word``'s characters in the first font of ``family`` (regular if there)."""
    fonts = sorted(
        {f for f, fam in zip(split["fonts"], split["families"], strict=True) if fam == family}
    )
    font = next((f for f in fonts if "Regular" in f), fonts[0])
    where = {
        CHARS[int(lab)]: i
        for i, (f, lab) in enumerate(zip(split["fonts"], split["labels"], strict=True))
        if f == font
    }
    return [where[c] for c in word]


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="data/glyphs32")
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--family", default="Quattrocento", help="a test family to spell the word in")
    args = ap.parse_args()
    runs = Path(args.runs)
    test = load_split(Path(args.data) / "test.npz")
    picked = _pick(test, args.family, WORD)
    gts = [_rgb(test["images"][i]) for i in picked]  # [32, 32, 3] uint8
    lqs = [imresize(gt, size=(8, 8)) for gt in gts]  # uint8, as eval and train make them

    examples, originals = Path("examples/glyphs"), Path("examples/glyphs-original")
    for folder in (examples, originals):
        folder.mkdir(parents=True, exist_ok=True)
    for k, (i, lq, gt) in enumerate(zip(picked, lqs, gts, strict=True)):
        name = glyph_file_name(k, CHARS[int(test["labels"][i])])
        Image.fromarray(lq[:, :, 0]).save(examples / name, optimize=True)
        Image.fromarray(gt[:, :, 0]).save(originals / name, optimize=True)

    rows = [np.concatenate([np.kron(lq, np.ones((4, 4, 1), np.uint8)) for lq in lqs], 1)]
    rows.append(np.concatenate([imresize(lq, 4.0) for lq in lqs], 1))
    lq_t = torch.from_numpy(np.stack(lqs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    for run in ("glyphs_nobank_4x", "glyphs_randombank_4x", "glyphs_glean_4x"):
        model = load_model(str(runs / run / "final"))
        with torch.no_grad():
            sr = tensor_to_pixels(model(lq_t))
        rows.append(np.concatenate([quantize(x, 8) for x in sr], 1))
    rows.append(np.concatenate(gts, 1))
    sheet = np.concatenate(rows, 0)
    Path("docs").mkdir(exist_ok=True)
    Image.fromarray(np.kron(sheet, np.ones((2, 2, 1), np.uint8))).save(
        "docs/demo_test_glyphs.png", optimize=True
    )

    bank = load_bank(str(runs / "bank-glyphs32" / "bank"))
    grid = sample_grid(bank.generator, seed=0, num=128, columns=16, noise_mode="const")
    Image.fromarray(np.kron(grid, np.ones((2, 2, 1), np.uint8))).save(
        "docs/demo_bank_samples.png", optimize=True
    )
    print(
        f"wrote {len(lqs)} examples to {examples}, docs/demo_test_glyphs.png and "
        f"docs/demo_bank_samples.png"
    )


if __name__ == "__main__":
    main()
