"""``FaceRestorer``: every face in a whole photo restored by a GLEAN face model, in named stages.

GLEAN's face models take an aligned face of exactly ``in_size`` pixels (the FFHQ crop). A photo
goes through

1. ``detect``: faces and 68 landmarks (:class:`~.detect.DlibFaceDetector`, fully offline);
2. ``align``: each face's FFHQ square (:class:`~.align.FaceAlignment`) is warped upright at its
   native resolution (its side in photo pixels), then resized to ``in_size`` with the kernel the
   model was trained on: area averaging for the blind model (in 128 -> 1024; its training inputs
   end with an area resize to 128, and the reference's face demo resizes any face that way),
   MATLAB bicubic for the bicubic x16 model (64 -> 1024; its inputs were
   ``imresize(gt, 1/16, 'bicubic')``). A face smaller than ``in_size`` is enlarged with MATLAB
   bicubic for either (area "enlarging" only repeats pixels);
3. ``restore``: the crops go through the model (:class:`~glean_sr.inference.upscaler.Upscaler`'s
   device and precision handling), ``batch_size`` at a time;
4. ``upscale_background``: the photo enlarged ``upscale`` times, MATLAB bicubic by default, or
   with a general upscaler that takes any size (Real-ESRGAN's RRDBNet, e.g.
   ``realesrgan_x2plus``), in tiles with ``tile``, its result resized with Lanczos to
   ``upscale`` times the photo where its own factor differs; or with a glean-sr model of a
   fixed input size that enlarges exactly ``upscale`` times, if the photo is that size;
5. ``paste_back``: each restored face is resized (antialiased) to its size in the output and
   warped back by the inverse similarity into the enlarged photo, blended with a feathered mask
   (:func:`~.align.paste_face`): where the mask is 0 the output is the background, where it is 1
   it is the warped face. Faces are pasted smallest first, so a nearer (larger) face that overlaps
   another is on top.

Grayscale photos go through the RGB model as three equal channels and come back as BT.601 luma;
an alpha channel is enlarged with the background (MATLAB bicubic, or Lanczos behind a general
upscaler) and reattached; nothing is done to the colour profile or bit depth of the photo, which
the output keeps. :meth:`FaceRestoreResult.boxes` draws what was found and restored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...data.imresize import area_resize, imresize
from ...devices import resolve_device
from ...errors import ConfigError, ImageError
from ...io import (
    ImageData,
    as_image_data,
    from_pil,
    image_like,
    pixels_to_tensor,
    round_to_8bit,
    tensor_to_pixels,
    to_pil,
    write_image,
)
from .. import ALIGNMENTS, FACE_RESIZES
from ..upscaler import Upscaler
from .align import FaceAlignment, PasteRegion, paste_face, warp_affine
from .detect import DetectedFace, DlibFaceDetector

#: the preset whose training inputs end with an area resize (TPAMI 2023, Sec. 6: blind face
#: restoration; spec/glean-reference.md, training pipeline of in128out1024)
BLIND_FACE_PRESET = "glean_in128out1024_4x2_300k_ffhq_celebahq"


def default_face_resize(model: nn.Module) -> str:
    """``"area"`` for the blind face model's architecture, ``"bicubic"`` for any other."""
    from ...presets import PRESETS

    blind = PRESETS[BLIND_FACE_PRESET].config
    return "area" if getattr(model, "config", None) == blind else "bicubic"


@dataclass
class FaceRecord:
    """One face, as it went through the stages. Photo coordinates are those of the input photo.

    Attributes:
        index: 1-based, in detection order (largest face first).
        detection: the detector's box, score and ``[68, 2]`` landmarks.
        alignment: the face's FFHQ square in the photo.
        native_size: side of the upright crop warped from the photo (``round(alignment.side)``).
        resize: ``"area"``, ``"bicubic"`` (shrunk with that kernel), ``"enlarged"`` (MATLAB
            bicubic up to ``in_size``) or ``None`` (the crop already had ``in_size``).
        lq: float32 ``[in_size, in_size, C]`` in ``[0, 1]``: what the model was given.
        restored: float32 ``[out_size, out_size, C]`` in ``[0, 1]``: what it returned.
        paste_size: side of the restored face once resized to its size in the output.
        paste: where it was blended into the output, with the weights used.
    """

    index: int
    detection: DetectedFace
    alignment: FaceAlignment
    native_size: int
    resize: str | None
    lq: np.ndarray
    restored: np.ndarray | None = None
    paste_size: int = 0
    paste: PasteRegion | None = None

    def describe(self) -> str:
        c = self.detection.center
        s = self.lq.shape[0]
        how = {None: "", "enlarged": " (enlarged, bicubic)", "area": " (area)"}.get(
            self.resize, " (bicubic)"
        )
        text = (
            f"face {self.index} at ({c[0]:.0f}, {c[1]:.0f}), {self.native_size} px, "
            f"{self.alignment.angle:+.0f} deg: aligned {self.native_size}x{self.native_size} -> "
            f"{s}x{s}{how}"
        )
        if self.restored is not None:
            o = self.restored.shape[0]
            text += f", restored {s}x{s} -> {o}x{o}"
        if self.paste is not None:
            text += f", pasted back at {self.paste_size}x{self.paste_size}"
        elif self.restored is not None:
            text += ", outside the output (not pasted)"
        return text


@dataclass
class FaceRestoreRecord:
    """What was done to one photo. Sizes are ``(height, width)``.

    Attributes:
        source: the input file, if any.
        input_hw, output_hw: the photo's and the result's size.
        upscale: the enlargement of the whole photo.
        faces: one record per face restored (empty if none was found).
        found: how many faces the detector found (``only_center_face`` restores one of them).
        detected: every face the detector found, restored or not.
        background: how the photo was enlarged (``"bicubic"`` or the model's description).
        steps: one human-readable line per step, starting with what reading the file did.
    """

    source: str | None
    input_hw: tuple[int, int]
    output_hw: tuple[int, int] = (0, 0)
    upscale: int = 1
    faces: list[FaceRecord] = field(default_factory=list)
    found: int = 0
    detected: list[DetectedFace] = field(default_factory=list)
    background: str = "bicubic"
    steps: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return "; ".join(self.steps)


@dataclass
class FaceRestoreResult:
    """A restored photo: ``image`` of the kind the caller passed, ``data`` the full-fidelity
    :class:`ImageData`, ``background`` the enlarged photo without restored faces, ``record``
    what was done. Unpacks as ``image, record``."""

    image: Any
    data: ImageData
    background: ImageData
    record: FaceRestoreRecord

    def __iter__(self):
        return iter((self.image, self.record))

    def comparison(self, gap: int = 4) -> ImageData:
        """The enlarged photo (background only) and the restored one side by side, ``gap``
        white pixels apart; alpha is dropped."""
        left, right = self.background.pixels, self.data.pixels
        white = np.ones((left.shape[0], gap, left.shape[2]), np.float32)
        return self.data.replace(
            pixels=np.ascontiguousarray(np.concatenate([left, white, right], axis=1)),
            alpha=None,
            mode="",
            notes=(),
        )

    def boxes(self) -> ImageData:
        """The restored photo with what was detected drawn on it, a debug picture: each
        restored face's aligned square (green, numbered as in the record) with its five
        landmarks (eyes, nose, mouth corners), and the detector's box of each face found but
        not restored (red; ``only_center_face``). Alpha is dropped; 8 bits."""
        from PIL import ImageDraw

        scale = self.record.upscale
        image = to_pil(self.data.replace(alpha=None, mode="", bit_depth=8, notes=())).convert("RGB")
        draw = ImageDraw.Draw(image)
        width = max(1, round(min(image.size) / 300))

        def photo_to_output(xy: np.ndarray) -> list[tuple[float, float]]:
            return [tuple(p) for p in (np.asarray(xy, np.float64) + 0.5) * scale - 0.5]

        restored = {id(f.detection) for f in self.record.faces}
        for face in self.record.detected:
            if id(face) not in restored:
                (left, top), (right, bottom) = photo_to_output(np.reshape(face.box, (2, 2)))
                draw.rectangle([left, top, right, bottom], outline=(255, 0, 0), width=width)
        for face in self.record.faces:
            corners = photo_to_output(face.alignment.corners())
            draw.polygon(corners, outline=(0, 255, 0), width=width)
            for x, y in photo_to_output(face.detection.points5):
                r = 2 * width
                draw.ellipse([x - r, y - r, x + r, y + r], outline=(0, 255, 0), width=width)
            x, y = corners[0]
            draw.text((x + 2 * width, y + 2 * width), str(face.index), fill=(0, 255, 0))
        return from_pil(image).replace(icc_profile=self.data.icc_profile, source=self.data.source)

    def save_crops(self, folder: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
        """Write each face as the model saw it and as it came back, as PNGs in ``folder``
        (created): ``face01_input.png``, ``face01_restored.png``, ... Returns the files."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for face in self.record.faces:
            for kind, pixels in (("input", face.lq), ("restored", face.restored)):
                image = self.data.replace(pixels=pixels, alpha=None, mode="", notes=())
                path = folder / f"face{face.index:02d}_{kind}.png"
                write_image(image, path, overwrite=overwrite)
                written.append(path)
        return written


class FaceRestorer:
    """Detect, align, restore and paste back every face of a photo (see the module docstring).

    Args:
        model: a GLEAN face model (or any restorer with ``in_size``, ``out_size``,
            ``img_channels``).
        upscale: how many times the whole photo is enlarged (integer, 1 to 16).
        background: ``"bicubic"`` (MATLAB bicubic), or a model (``nn.Module`` or
            :class:`Upscaler`): a general upscaler that takes any size (RRDBNet), whose result
            is resized with Lanczos to ``upscale`` times the photo when its factor differs; or
            a model of a fixed input size that enlarges exactly ``upscale`` times, which fits
            only a photo of exactly its ``in_size``. The face models are not general SR
            models: they turn anything into a face.
        tile, tile_pad: run a background model that takes any size in tiles (see
            :class:`Upscaler`); ``tile=None`` runs the whole photo at once.
        detector: a :class:`~.detect.DlibFaceDetector` (built with its defaults if ``None``).
        resize: how a crop larger than ``in_size`` is shrunk to it: ``"area"``, ``"bicubic"``
            (MATLAB), or ``"auto"``: area for the blind model's architecture, else bicubic.
        alignment: ``"ffhq"`` (the FFHQ data set's rule) or ``"template"`` (least squares to the
            5-point template), see :mod:`.align`.
        only_center_face: restore only the face nearest the photo's centre.
        feather: width of the mask's soft edge, as a fraction of the face crop's side.
        device, precision, batch_size, fast: as for :class:`Upscaler` (``batch_size`` counts
            faces per forward pass).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        upscale: int = 2,
        background: str | nn.Module | Upscaler = "bicubic",
        detector: DlibFaceDetector | None = None,
        resize: str = "auto",
        alignment: str = "ffhq",
        only_center_face: bool = False,
        feather: float = 0.1,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        batch_size: int = 4,
        fast: bool = True,
        tile: int | None = None,
        tile_pad: int = 10,
    ):
        if not isinstance(upscale, int) or isinstance(upscale, bool) or not 1 <= upscale <= 16:
            raise ConfigError(f"upscale must be an integer from 1 to 16, got {upscale!r}")
        if resize not in FACE_RESIZES:
            raise ConfigError(f"resize must be one of {', '.join(FACE_RESIZES)}, got {resize!r}")
        if alignment not in ALIGNMENTS:
            raise ConfigError(
                f"alignment must be one of {', '.join(ALIGNMENTS)}, got {alignment!r}"
            )
        if not 0 < feather <= 0.5:
            raise ConfigError(f"feather must be in (0, 0.5], got {feather!r}")
        self.upscaler = Upscaler(
            model, device=device, precision=precision, batch_size=batch_size, fast=fast
        )
        if self.upscaler.any_size:
            raise ConfigError(
                f"the face model must take aligned faces of a fixed size (a GLEAN face model); "
                f"{type(model).__name__} is a general upscaler: pass it as the background"
            )
        self.upscale = upscale
        self.resize = default_face_resize(model) if resize == "auto" else resize
        self.alignment = alignment
        self.only_center_face = bool(only_center_face)
        self.feather = float(feather)
        self.background = self._background_upscaler(
            background, device, precision, fast, tile, tile_pad
        )
        self.detector = detector if detector is not None else DlibFaceDetector()

    def _background_upscaler(
        self, background, device, precision, fast, tile, tile_pad
    ) -> Upscaler | None:
        takes_any_size = isinstance(background, nn.Module) and not hasattr(background, "in_size")
        if tile is not None and not (takes_any_size or isinstance(background, Upscaler)):
            raise ConfigError(
                "--tile (tile=) applies to a background upscaler that takes any size "
                "(realesrgan_x2plus, realesrgan_x4plus), not to the bicubic background or a "
                "model of a fixed input size"
            )
        if isinstance(background, str):
            if background != "bicubic":
                raise ConfigError(
                    f"background must be 'bicubic' or a model, got {background!r} "
                    "(FaceRestorer.from_pretrained loads a model name or file)"
                )
            return None
        if isinstance(background, Upscaler):
            bg = background
        elif isinstance(background, nn.Module):
            # an upscaler of another factor is resized (Lanczos) to the photo's enlargement
            other = takes_any_size and background.scale != self.upscale
            bg = Upscaler(
                background,
                device=device,
                precision=precision,
                fast=fast,
                tile=tile,
                tile_pad=tile_pad,
                outscale=self.upscale if other else None,
            )
        else:
            raise ConfigError(
                f"background must be 'bicubic', a model or an Upscaler, got "
                f"{type(background).__name__}"
            )
        if bg.any_size:
            if self.upscale not in (bg.scale, bg.outscale):
                raise ConfigError(
                    f"the background upscaler enlarges x{bg.scale}"
                    + (f" then to x{bg.outscale:g}" if bg.outscale is not None else "")
                    + f", not x{self.upscale}; give it outscale={self.upscale}"
                )
            return bg
        if bg.scale != self.upscale or bg.out_size != bg.in_size * self.upscale:
            raise ConfigError(
                f"the background model enlarges {bg.in_size} -> {bg.out_size} (x{bg.scale}), "
                f"not x{self.upscale}; pass --upscale {bg.scale} (upscale={bg.scale}) or use "
                "the bicubic background"
            )
        return bg

    @classmethod
    def from_pretrained(
        cls,
        model_source: str | os.PathLike | nn.Module,
        *,
        background: str | os.PathLike | nn.Module = "bicubic",
        device: str | torch.device = "auto",
        progress: bool = True,
        **kwargs: Any,
    ) -> FaceRestorer:
        """A restorer for a face model given as anything :func:`glean_sr.load_model` takes;
        ``background`` is ``"bicubic"`` or a model source too. Other arguments as ``__init__``."""
        from ...weights.pretrained import load_model

        dev = resolve_device(device)

        def load(source):
            if isinstance(source, nn.Module):
                return source
            return load_model(source, device=dev, progress=progress)

        model = load(model_source)
        bg = background if background == "bicubic" else load(background)
        return cls(model, background=bg, device=dev, **kwargs)

    @property
    def in_size(self) -> int:
        return self.upscaler.in_size

    @property
    def out_size(self) -> int:
        return self.upscaler.out_size

    def __repr__(self) -> str:
        return (
            f"FaceRestorer({type(self.upscaler.model).__name__} {self.in_size} -> "
            f"{self.out_size}, upscale={self.upscale}, resize={self.resize!r}, "
            f"alignment={self.alignment!r}, background="
            f"{'bicubic' if self.background is None else repr(self.background)}, {self.detector})"
        )

    # ------------------------------------------------------------------------------------------
    # the stages

    def detect(self, image: ImageData) -> tuple[list[DetectedFace], list[str]]:
        """All faces in the photo (largest first) and notes about the search."""
        return self.detector.detect(image.pixels)

    def select(self, image: ImageData, faces: list[DetectedFace]) -> list[DetectedFace]:
        """The faces to restore: all, or with ``only_center_face`` the one whose eyes are
        nearest the photo's centre."""
        if not self.only_center_face or len(faces) < 2:
            return faces
        centre = np.array([(image.width - 1) / 2, (image.height - 1) / 2])
        return [min(faces, key=lambda f: float(np.hypot(*(f.center - centre))))]

    def align_face(self, face: DetectedFace) -> FaceAlignment:
        """The face's FFHQ square from its landmarks (``alignment`` rule)."""
        if self.alignment == "template":
            return FaceAlignment.from_template(face.points5)
        return FaceAlignment.from_ffhq(face.points5)

    def align(self, image: ImageData, faces: list[DetectedFace]) -> list[FaceRecord]:
        """Warp each face upright at its native size and resize it to ``in_size``."""
        s = self.in_size
        records = []
        for index, face in enumerate(faces, start=1):
            alignment = self.align_face(face)
            native = max(2, round(alignment.side))
            crop = warp_affine(image.pixels, alignment.crop_to_photo(native), (native, native))
            if native > s:
                how = self.resize
                resize = area_resize if how == "area" else imresize
                lq = resize(crop, size=(s, s))
            elif native < s:
                how, lq = "enlarged", imresize(crop, size=(s, s))
            else:
                how, lq = None, crop
            lq = np.clip(lq, 0, 1).astype(np.float32)
            if image.bit_depth == 8:  # an 8-bit photo's face is an 8-bit image, as in training
                lq = round_to_8bit(lq)
            records.append(FaceRecord(index, face, alignment, native, how, lq))
        return records

    def restore(self, faces: list[FaceRecord]) -> list[FaceRecord]:
        """Run the crops through the model, ``batch_size`` at a time; sets ``restored``."""
        size = self.upscaler.batch_size
        for start in range(0, len(faces), size):
            chunk = faces[start : start + size]
            channels = chunk[0].lq.shape[2]
            lq = pixels_to_tensor([f.lq for f in chunk], channels=self.upscaler.model.img_channels)
            sr = self.upscaler.forward(lq)
            for face, restored in zip(chunk, tensor_to_pixels(sr, channels), strict=True):
                face.restored = restored
        return faces

    def upscale_background(self, image: ImageData) -> tuple[ImageData, str]:
        """The photo enlarged ``upscale`` times (alpha included) and a description of how."""
        if self.background is None:
            u = self.upscale
            pixels = np.clip(imresize(image.pixels, scale=u), 0, 1) if u > 1 else image.pixels
            alpha = image.alpha
            if alpha is not None and u > 1:
                alpha = np.clip(imresize(alpha, scale=u), 0, 1)
            out = ImageData(
                pixels=np.ascontiguousarray(pixels, np.float32),
                alpha=None if alpha is None else np.ascontiguousarray(alpha, np.float32),
                bit_depth=image.bit_depth,
                icc_profile=image.icc_profile,
                source=image.source,
            )
            return out, f"background x{u} (MATLAB bicubic)"
        bg = self.background
        if bg.any_size:
            result = bg(image)
            tiles = result.record.tiles
            how = f"; {tiles[0] * tiles[1]} tiles" if tiles else ""
            return result.data, f"background x{self.upscale} ({bg.describe()}{how})"
        if (image.height, image.width) != (bg.in_size, bg.in_size):
            raise ImageError(
                f"{image.label}: the background model takes exactly {bg.in_size}x{bg.in_size} "
                f"pixels (it runs on the whole photo, without tiles), but the photo is "
                f"{image.width}x{image.height}; use the bicubic background (--background bicubic)"
            )
        result = bg(image)
        return result.data, f"background x{bg.scale} ({bg.describe()})"

    def paste_back(self, background: ImageData, faces: list[FaceRecord]) -> ImageData:
        """Blend each restored face into the enlarged photo (smallest first); sets each face's
        ``paste_size`` and ``paste``."""
        canvas = background.pixels.copy()
        scale = self.upscale
        for face in sorted(faces, key=lambda f: f.alignment.side):
            if face.restored is None:
                raise ValueError(f"face {face.index} has not been restored yet")
            m = max(2, round(face.alignment.side * scale))
            restored = face.restored
            if m != restored.shape[0]:
                restored = np.clip(imresize(restored, size=(m, m)), 0, 1).astype(np.float32)
            face.paste_size = m
            face.paste = paste_face(
                canvas, restored, face.alignment.scaled(scale), feather=self.feather
            )
        return background.replace(pixels=canvas)

    # ------------------------------------------------------------------------------------------
    # the one-call API

    def __call__(self, image: Any) -> FaceRestoreResult:
        """Restore every face of one photo: a PIL image, a NumPy array, an :class:`ImageData`
        or a file path (as :class:`Upscaler` takes them). The result's ``image`` is of the same
        kind (a path gives :class:`ImageData`)."""
        data = as_image_data(image)
        record = FaceRestoreRecord(
            source=str(data.source) if data.source is not None else None,
            input_hw=(data.height, data.width),
            upscale=self.upscale,
            steps=list(data.notes),
        )
        background, how = self.upscale_background(data)
        found, notes = self.detect(data)
        record.found = len(found)
        record.detected = list(found)
        record.steps.extend(notes)
        faces = self.select(data, found)
        record.steps.append(_found_line(len(found), len(faces)))
        faces = self.restore(self.align(data, faces))
        restored = self.paste_back(background, faces) if faces else background
        record.faces = faces
        record.steps.extend(f.describe() for f in faces)
        if data.is_grayscale:
            record.steps.append("grayscale: faces restored as 3 equal channels, back to luma")
        record.background = how
        record.steps.append(how)
        if data.alpha is not None:
            record.steps.append("alpha enlarged (bicubic) and reattached")
        record.output_hw = (restored.height, restored.width)
        return FaceRestoreResult(image_like(image, restored), restored, background, record)


def _found_line(found: int, kept: int) -> str:
    if found == 0:
        return "no face found"
    what = f"{found} face{'s' if found != 1 else ''} found"
    return what + (" (the most central one restored)" if kept < found else "")
