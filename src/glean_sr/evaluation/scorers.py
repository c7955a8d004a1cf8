"""The optional metrics of ``evaluate`` (NIQE, LPIPS, FID, identity), each set up before the
first image is restored so that a missing weight file or an unsuitable image size stops the run
at once with one line, never after hours or silently.

A scorer fills ``values[method][i][column]`` (and ``notes[method][i]``) for a batch:
``gts`` is a list of float32 ``[H, W, 3]`` GT images in ``[0, 1]``, ``outputs[method]`` the
methods' 8-bit-rounded outputs, and ``finish()`` returns data-set level results. When several
processes share the images out (torchrun), rank 0's scorer takes in the others' ``state()``
through ``merge()`` before ``finish()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..io import quantize

Values = dict[str, list[dict[str, float | None]]]
Notes = dict[str, list[str]]


def _tensor(images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """``[N, 3, H, W]`` float32 in [0, 1] from ``[H, W, 3]`` arrays."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(device)


def distances_to_gt(stats: dict[str, Any], column: str) -> dict[str, dict[str, float]]:
    """``{method: {column: FID against the "gt" statistics}}`` for every other entry of
    ``stats`` (feature statistics per method); empty with fewer than 2 GT images."""
    from .fid import frechet_distance, sqrt_psd

    if "gt" not in stats or stats["gt"].n < 2:
        return {}
    mu_gt, cov_gt = stats["gt"].mean_cov()
    root_gt = sqrt_psd(cov_gt)  # one decomposition of the GT statistics for all methods
    return {
        method: {column: frechet_distance(mu_gt, cov_gt, *st.mean_cov(), sqrt_cov1=root_gt)}
        for method, st in stats.items()
        if method != "gt"
    }


class Scorer:
    def score(
        self,
        gts: list[np.ndarray],
        outputs: dict[str, list[np.ndarray]],
        values: Values,
        notes,
        names: list[str],
    ) -> None:
        raise NotImplementedError

    def finish(self) -> dict[str, dict[str, float]]:
        return {}

    def state(self) -> Any:
        """What ``finish()`` needs from the images this process scored (picklable)."""
        return None

    def merge(self, states: list[Any]) -> None:
        """Take in other processes' ``state()``."""


class _StatsScorer(Scorer):
    """A scorer whose data-set result comes from per-method feature statistics."""

    stats: dict[str, Any]

    def state(self) -> dict[str, Any]:
        return self.stats

    def merge(self, states: list[dict[str, Any]]) -> None:
        from .fid import FeatureStats

        for stats in states:
            for method, other in stats.items():
                self.stats.setdefault(method, FeatureStats(other.sum.shape[0])).merge(other)


class NiqeScorer(Scorer):
    def __init__(self, crop_border: int, out_size: int) -> None:
        from .niqe import BLOCK_SIZE

        side = out_size - 2 * crop_border
        if (side // BLOCK_SIZE) ** 2 < 2:
            raise ConfigError(
                f"NIQE needs images with at least two {BLOCK_SIZE}x{BLOCK_SIZE} blocks; these "
                f"are {side}x{side} after the border crop: drop niqe from --metrics"
            )
        self.crop_border = crop_border

    def score(self, gts, outputs, values, notes, names) -> None:
        from .niqe import niqe

        for method, images in [*outputs.items(), ("gt", gts)]:
            for i, img in enumerate(images):
                values[method][i]["niqe"] = niqe(img, crop_border=self.crop_border)


class LpipsScorer(Scorer):
    def __init__(self, weights, backbone, device: torch.device) -> None:
        from .lpips import LPIPS

        self.net = LPIPS.from_files(weights, backbone, device=device)
        self.device = device

    def score(self, gts, outputs, values, notes, names) -> None:
        gt = _tensor(gts, self.device) * 2 - 1
        with torch.inference_mode():
            for method, images in outputs.items():
                d = self.net(_tensor(images, self.device) * 2 - 1, gt).cpu().tolist()
                for i, v in enumerate(d):
                    values[method][i]["lpips"] = float(v)


class FidScorer(_StatsScorer):
    def __init__(self, weights, device: torch.device, num_images: int) -> None:
        from .fid import FIDInceptionV3

        if num_images < 2:
            raise ConfigError("FID needs at least 2 images (and thousands for stable values)")
        self.net = FIDInceptionV3.from_file(weights, device=device)
        self.device = device
        self.stats: dict[str, Any] = {}

    def _add(self, key: str, images: list[np.ndarray]) -> None:
        from .fid import FeatureStats

        with torch.inference_mode():
            feats = self.net(_tensor(images, self.device))
        self.stats.setdefault(key, FeatureStats()).add(feats)

    def score(self, gts, outputs, values, notes, names) -> None:
        self._add("gt", gts)
        for method, images in outputs.items():
            self._add(method, images)

    def finish(self) -> dict[str, dict[str, float]]:
        return distances_to_gt(self.stats, "fid")


class ArcfaceScorer(Scorer):
    def __init__(self, weights, device: torch.device) -> None:
        from .arcface import IResNet

        self.net = IResNet.from_file(weights, device=device)
        self.device = device

    def score(self, gts, outputs, values, notes, names) -> None:
        with torch.inference_mode():
            gt = self.net.embed(_tensor(gts, self.device))
            for method, images in outputs.items():
                sims = (self.net.embed(_tensor(images, self.device)) * gt).sum(1).cpu().tolist()
                for i, v in enumerate(sims):
                    values[method][i]["identity_arcface"] = float(v)


class DlibScorer(Scorer):
    def __init__(self) -> None:
        from .identity import DlibIdentity

        self.model = DlibIdentity()

    def score(self, gts, outputs, values, notes, names) -> None:
        for i, gt in enumerate(gts):
            gt8 = quantize(gt, 8)
            box = self.model.find_face(gt8)
            for method, images in outputs.items():
                if box is None:
                    notes[method][i] = "identity_dlib: no face found on the GT"
                    continue
                sim = self.model.similarity(quantize(images[i], 8), gt8, box)
                values[method][i]["identity_dlib"] = sim


def glyph_label(name: str) -> str | None:
    """The character a glyph file shows, from its name: ``..._u0041.png`` shows ``A`` (the
    names ``glean-sr build-glyphs --png`` writes); None for other names."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    _, sep, code = stem.rpartition("_u")
    if not sep or not 4 <= len(code) <= 6:
        return None
    try:
        return chr(int(code, 16))
    except ValueError:
        return None


class GlyphScorer(_StatsScorer):
    """Character accuracy of a glyph classifier on each method's outputs (the GT row is the
    ceiling) and an FID in that classifier's penultimate features (``fid_glyph``)."""

    def __init__(self, classifier_dir: str | None, device: torch.device) -> None:
        from .glyph_classifier import GlyphClassifier

        if not classifier_dir:
            raise ConfigError(
                "the chars metric needs a glyph classifier: pass --glyph-classifier DIR "
                "(glean-sr train-glyph-classifier writes one)"
            )
        self.net = GlyphClassifier.from_pretrained(classifier_dir).to(device).eval()
        self.features = self.net.feature_extractor()
        self.chars = self.net.config.chars
        self.device = device
        self.stats: dict[str, Any] = {}

    def score(self, gts, outputs, values, notes, names) -> None:
        from .fid import FeatureStats

        labels = [glyph_label(n) for n in names]
        with torch.inference_mode():
            for method, images in [*outputs.items(), ("gt", gts)]:
                x = _tensor(images, self.device)
                logits = self.net(x)
                feats = self.features(x)
                self.stats.setdefault(method, FeatureStats(feats.shape[1])).add(feats)
                predicted = [self.chars[k] for k in logits.argmax(1).tolist()]
                for i, (label, guess) in enumerate(zip(labels, predicted, strict=True)):
                    if label is None or label not in self.chars:
                        notes[method][i] = "chars: no character label in the file name"
                        continue
                    values[method][i]["char_acc"] = float(guess == label)

    def finish(self) -> dict[str, dict[str, float]]:
        return distances_to_gt(self.stats, "fid_glyph")


def build_scorers(options, *, out_size: int, device: torch.device, num_images: int) -> list[Scorer]:
    """One scorer per optional metric in ``options.metrics``, in that order."""
    scorers: list[Scorer] = []
    for metric in options.metrics:
        if metric == "niqe":
            scorers.append(NiqeScorer(options.crop_border, out_size))
        elif metric == "lpips":
            scorers.append(LpipsScorer(options.lpips_weights, options.lpips_backbone, device))
        elif metric == "fid":
            scorers.append(FidScorer(options.fid_weights, device, num_images))
        elif metric == "arcface":
            scorers.append(ArcfaceScorer(options.arcface_weights, device))
        elif metric == "identity":
            scorers.append(DlibScorer())
        elif metric == "chars":
            scorers.append(GlyphScorer(options.glyph_classifier, device))
    return scorers
