"""Image files in and out, as real files come: every mode, 8 and 16 bits, EXIF, ICC, bad files.

The one in-memory form is :class:`ImageData`: float32 pixels ``[H, W, C]`` in ``[0, 1]`` with
``C = 1`` (grayscale) or ``3`` (RGB), the alpha channel kept apart (``[H, W]`` or ``None``), and
what is needed to write a faithful output: the source's bit depth and ICC profile. Everything that
reads images (``upscale``, face restoration, evaluation) goes through :func:`read_image`, and
everything that writes them through :func:`write_image`.

Reading (:func:`read_image`):

* PNG, JPEG, WebP, TIFF, BMP (and whatever else Pillow opens: GIF, ...); the first frame of an
  animation or a multi-page file.
* 8- and 16-bit samples. Pillow keeps 16 bits only for grayscale; for 16-bit RGB, RGBA and
  gray + alpha PNGs and 16-bit RGB(A) TIFFs it would keep the high byte alone, so those samples
  are decoded a second time with Pillow's own decoders to recover the low byte.
* Grayscale stays one channel; palette images become RGB (RGBA with transparency); CMYK, YCbCr
  and LAB are converted to RGB (their ICC profile no longer fits and is dropped, with a note).
* The EXIF orientation is applied to the pixels, so the image is upright as viewers show it.
* The ICC profile is kept when it fits the pixels (an RGB profile for RGB, GRAY for grayscale).
* A file with more pixels than ``max_pixels`` (default :func:`glean_sr.limits.max_pixels`,
  2 ** 26 = 8192 x 8192 unless ``GLEAN_SR_MAX_PIXELS`` says otherwise) is refused from its header,
  before it is decoded: such files are usually decompression bombs (a 9000 x 9000 PNG of one
  colour is 236 kB on disk and 243 MB decoded).
* Every failure is an :class:`~glean_sr.errors.ImageError` whose one-line message names the file
  and the problem: missing, empty, not an image, corrupt or truncated, too large.

Writing (:func:`write_image`): PNG keeps 8 or 16 bits, alpha and the ICC profile; JPEG (quality
95, no chroma subsampling), WebP (quality 95), TIFF and BMP write 8 bits (TIFF 16 bits for
grayscale); what a format cannot hold (alpha in JPEG and BMP, 16 bits) is dropped with a note.
Files are written atomically and never replace an existing file unless ``overwrite=True``.

Integer samples: :func:`quantize` is the one conversion from float pixels to 8- or 16-bit samples
in glean-sr (writing files, the 8-bit model inputs, evaluation, validation, the training
degradations); its docstring states the rounding rule. :func:`read_rgb` and :func:`list_images`
are the readers of training, preparation and evaluation data, with :data:`IMAGE_SUFFIXES` the one
set of suffixes taken as images.

Model tensors: :func:`pixels_to_tensor` and :func:`tensor_to_pixels` convert between pixels and
the ``[N, 3, H, W]`` RGB tensors in ``[-1, 1]`` that GLEAN takes and returns (Sec. 3 of the
CVPR paper uses StyleGAN2's RGB convention). Grayscale goes through an RGB model as three equal
channels and comes back as grayscale.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_write_bytes, atomic_writer
from .errors import ImageError
from .limits import max_pixels as default_max_pixels
from .png import PngWriter

if TYPE_CHECKING:
    from torch import Tensor

#: file suffix -> Pillow format name, for the formats :func:`write_image` writes
WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}

#: suffixes (lower case) taken as images when a folder or a pattern is searched for inputs
IMAGE_SUFFIXES = frozenset(WRITE_FORMATS) | {".gif"}

#: ITU-R BT.601 luma weights, the ones Pillow's ``convert("L")`` uses
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

_ORIENTATION_TAG = 0x0112
_ORIENTATIONS = {
    2: "mirrored",
    3: "rotated 180°",
    4: "flipped",
    5: "transposed",
    6: "rotated 90° clockwise",
    7: "transversed",
    8: "rotated 90° counter-clockwise",
}


@dataclass(eq=False)
class ImageData:
    """A decoded image.

    Attributes:
        pixels: float32 ``[H, W, C]``, ``C = 1`` (grayscale) or ``3`` (RGB), values in ``[0, 1]``.
        alpha: float32 ``[H, W]`` in ``[0, 1]`` (1 = opaque), or ``None``.
        bit_depth: bits per sample of the source, 8 or 16; a PNG output is written with it.
        mode: the source's colour mode as Pillow names it (``"RGB"``, ``"L"``, ``"P"``,
            ``"RGBA"``, ``"LA"``, ``"I;16"``, ``"CMYK"``, ...); set from the channels if empty.
        icc_profile: the ICC profile (bytes) to write back, or ``None``.
        source: the file it was read from, if any.
        format: the source's file format (``"PNG"``, ``"JPEG"``, ...), if known.
        notes: what reading did to get these pixels (``"EXIF orientation 6 applied ..."``).
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    mode: str = ""
    icc_profile: bytes | None = None
    source: Path | None = None
    format: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        p = self.pixels
        if not isinstance(p, np.ndarray) or p.dtype != np.float32:
            raise ValueError(f"pixels must be a float32 ndarray, got {type(p).__name__} {p.dtype}")
        if p.ndim != 3 or p.shape[2] not in (1, 3) or p.shape[0] < 1 or p.shape[1] < 1:
            raise ValueError(f"pixels must be [H, W, 1] or [H, W, 3], got shape {p.shape}")
        if self.alpha is not None:
            a = self.alpha
            if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != p.shape[:2]:
                raise ValueError(
                    f"alpha must be float32 [H, W] = {list(p.shape[:2])}, got "
                    f"{getattr(a, 'dtype', type(a).__name__)} {list(np.shape(a))}"
                )
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth!r}")
        if not self.mode:
            self.mode = ("L" if p.shape[2] == 1 else "RGB") + (
                "A" if self.alpha is not None else ""
            )
        self.notes = tuple(self.notes)

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        """Colour channels, 1 or 3 (alpha not counted)."""
        return self.pixels.shape[2]

    @property
    def is_grayscale(self) -> bool:
        return self.pixels.shape[2] == 1

    @property
    def label(self) -> str:
        """The source file as given, or ``"<image>"``: how messages name the image."""
        return str(self.source) if self.source is not None else "<image>"

    def replace(self, **changes) -> ImageData:
        """A copy with some fields changed (``pixels=``, ``alpha=``, ``notes=``, ...)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """``"480x360 RGBA 8-bit PNG"``: width x height, mode, bit depth, format."""
        fmt = f" {self.format}" if self.format else ""
        return f"{self.width}x{self.height} {self.mode} {self.bit_depth}-bit{fmt}"


# ----------------------------------------------------------------------------------------------
# reading


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _over_limit(path: Path, what: str, limit: int) -> ImageError:
    return ImageError(
        f"{path}: {what} more than the limit of {limit:,} (a decompression bomb?); raise it "
        "(--max-pixels or GLEAN_SR_MAX_PIXELS) only if you trust the file"
    )


def _pixel_limit(max_pixels: int | None) -> int:
    return default_max_pixels() if max_pixels is None else max_pixels


def _open_checked(path: Path, max_pixels: int | None) -> Image.Image:
    """``path`` opened by Pillow, which reads only the header, with its width x height checked
    against ``max_pixels`` (default :func:`glean_sr.limits.max_pixels`) before any pixel is
    decoded. Pillow refuses images over twice its own ``Image.MAX_IMAGE_PIXELS`` as it opens
    them; that limit is raised to ours where ours is higher, so ours is the one that counts."""
    limit = _pixel_limit(max_pixels)
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror or _one_line(exc)}") from None
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file")
    if size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # our own limit below applies; Pillow's warning would only be printed
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow: "Image size (N pixels) ..."
        what = f"{int(found.group(1)):,} pixels is" if found else "it has"
        raise _over_limit(path, what, limit) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path}: not an image file that can be read (PNG, JPEG, WebP, TIFF, BMP, GIF, ...)"
        ) from None
    except PermissionError:
        raise ImageError(f"{path}: cannot read: permission denied") from None
    except Exception as exc:  # Pillow raises many kinds on malformed headers
        raise ImageError(f"{path}: corrupt image header: {_one_line(exc)}") from None
    width, height = im.size
    if width * height > limit:
        im.close()
        raise _over_limit(path, f"{width}x{height} = {width * height:,} pixels is", limit)
    return im


def read_image_size(path: str | os.PathLike, *, max_pixels: int | None = None) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, nothing decoded; refused as
    :func:`read_image` refuses it (missing, not an image, more pixels than ``max_pixels``).

    Raises:
        ImageError: one line naming the file and the problem.
    """
    with _open_checked(Path(path), max_pixels) as im:
        return im.size


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> ImageData:
    """Read an image file into :class:`ImageData` (see the module docstring for what is handled).

    ``max_pixels`` (default: :func:`glean_sr.limits.max_pixels`, ``GLEAN_SR_MAX_PIXELS``) bounds
    width x height; a larger image is refused from its header, before its pixels are decoded.

    Raises:
        ImageError: one line naming the file and the problem.
    """
    path = Path(path)
    with _open_checked(path, max_pixels) as im:
        fmt = im.format
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                return _decode(im, path)
        except ImageError:
            raise
        except Image.DecompressionBombError:  # a later frame larger than the header says
            raise _over_limit(path, "a frame has", _pixel_limit(max_pixels)) from None
        except Exception as exc:  # truncated or corrupt data, whatever Pillow raises for it
            raise ImageError(
                f"{path}: corrupt or truncated {fmt or 'image'} data: {_one_line(exc)}"
            ) from None


def read_rgb(
    path: str | os.PathLike, *, keep_uint8: bool = False, max_pixels: int | None = None
) -> np.ndarray:
    """An image file as ``[H, W, 3]`` RGB pixels, through :func:`read_image` (EXIF orientation
    applied, 16 bits kept); grayscale is repeated to three channels and alpha is ignored.

    Returns float32 in ``[0, 1]``; with ``keep_uint8`` an 8-bit file comes back as its uint8
    samples, exactly as stored (what MATLAB's ``imresize`` and the reference's data pipeline
    read), and a 16-bit file still as float32.

    Raises:
        ImageError: one line naming the file and the problem.
    """
    image = read_image(path, max_pixels=max_pixels)
    pixels = image.pixels  # [H, W, 1 or 3]
    if image.is_grayscale:
        pixels = np.repeat(pixels, 3, axis=2)
    if keep_uint8 and image.bit_depth == 8:
        return quantize(pixels, 8)
    return np.ascontiguousarray(pixels)


def is_image_file(path: str | os.PathLike) -> bool:
    """``path`` is a file with a suffix in :data:`IMAGE_SUFFIXES` whose name does not start with
    a dot (hidden files, such as macOS's ``._name.png`` metadata, are not images)."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()


def list_images(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """The image files (:func:`is_image_file`) directly inside ``folder``, or with ``recursive``
    in it and every folder below it, sorted by path. An empty list if there are none.

    Raises:
        ImageError: ``folder`` is not a folder.
    """
    d = Path(folder)
    if not d.is_dir():
        raise ImageError(f"{d}: not a folder")
    return sorted(p for p in (d.rglob("*") if recursive else d.iterdir()) if is_image_file(p))


def as_image_data(image: Any) -> ImageData:
    """Any image the library takes as :class:`ImageData`: a PIL image (:func:`from_pil`), a
    NumPy array (:func:`from_array`), a file path (:func:`read_image`) or an ``ImageData``
    (returned as it is)."""
    if isinstance(image, ImageData):
        return image
    if isinstance(image, Image.Image):
        return from_pil(image)
    if isinstance(image, np.ndarray):
        return from_array(image)
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    raise TypeError(
        f"expected a PIL image, a NumPy array, an ImageData or a path, got {type(image).__name__}"
    )


def image_like(original: Any, data: ImageData) -> Any:
    """``data`` in the kind and layout of ``original`` (what :func:`as_image_data` was given):
    a PIL image (:func:`to_pil`); a NumPy array of the same dtype, ``[H, W]`` if it was 2-D,
    alpha as the last channel (integer arrays through :func:`quantize`); otherwise the
    ``ImageData`` itself."""
    if isinstance(original, Image.Image):
        return to_pil(data)
    if isinstance(original, np.ndarray):
        if original.dtype in (np.uint8, np.uint16):
            out = to_array(data, bit_depth=16 if original.dtype == np.uint16 else 8)
        elif np.issubdtype(original.dtype, np.floating):
            parts = [data.pixels] + ([data.alpha[..., None]] if data.alpha is not None else [])
            out = np.concatenate(parts, axis=2).astype(original.dtype)
        else:
            out = to_array(data, bit_depth=8)
        return out[..., 0] if original.ndim == 2 else out
    return data


def from_pil(image: Image.Image, *, source: str | os.PathLike | None = None) -> ImageData:
    """Convert a PIL image (any mode) to :class:`ImageData`, applying its EXIF orientation.

    A PIL image holds at most 8 bits per colour sample (16 for grayscale); read files with
    :func:`read_image` to keep 16-bit colour.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    return _decode(image, Path(source) if source is not None else None, allow_reread=False)


def _decode(im: Image.Image, path: Path | None, allow_reread: bool = True) -> ImageData:
    """Pixels, alpha, bit depth and notes of an opened (not necessarily loaded) image."""
    notes: list[str] = []
    n_frames = getattr(im, "n_frames", 1)
    if n_frames > 1:
        notes.append(f"first of {n_frames} frames used")
    tiles = list(getattr(im, "tile", None) or [])  # before load() empties it
    im.load()  # first: decoding errors must surface here, not inside getexif() (PNG loads there)
    icc = im.info.get("icc_profile") or None
    orientation = _exif_orientation(im, notes)

    wide = None
    if allow_reread and path is not None:
        try:
            wide = _read_16bit_colour(path, im.mode, tiles)
        except Exception as exc:  # Pillow's decoders changed: keep the 8 bits it gave, say so
            notes.append(f"16-bit colour read with 8 bits only ({_one_line(exc)})")
    if wide is not None:
        samples, mode = wide
        values = samples.astype(np.float32) / 65535
        color, alpha = (values[..., :-1], values[..., -1]) if mode.endswith("A") else (values, None)
        bit_depth = 16
    else:
        color, alpha, bit_depth, mode = _pixels_of(im, notes)

    if orientation in _ORIENTATIONS:
        color = _orient(color, orientation)
        alpha = _orient(alpha, orientation) if alpha is not None else None
        notes.append(f"EXIF orientation {orientation} applied ({_ORIENTATIONS[orientation]})")

    if icc is not None:
        space = icc[16:20].decode("latin-1").strip() if len(icc) >= 20 else ""
        wanted = "GRAY" if color.shape[2] == 1 else "RGB"
        if space != wanted:
            notes.append(f"{space or 'unreadable'} ICC profile dropped (the pixels are {wanted})")
            icc = None

    return ImageData(
        pixels=np.ascontiguousarray(color, dtype=np.float32),
        alpha=None if alpha is None else np.ascontiguousarray(alpha, dtype=np.float32),
        bit_depth=bit_depth,
        mode=mode,
        icc_profile=icc,
        source=path,
        format=getattr(im, "format", None),
        notes=tuple(notes),
    )


def _exif_orientation(im: Image.Image, notes: list[str]) -> int:
    try:
        value = im.getexif().get(_ORIENTATION_TAG)
    except Exception:  # a damaged EXIF block must not cost the image
        notes.append("EXIF data unreadable, orientation ignored")
        return 1
    if value is None or value == 1:
        return 1
    if value not in _ORIENTATIONS:
        notes.append(f"invalid EXIF orientation {value!r} ignored")
        return 1
    return int(value)


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 2..8 to ``[H, W, ...]`` (what a viewer does to show it upright)."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return a[::-1, ::-1].swapaxes(0, 1)
    return np.rot90(a, 1)  # 8


def _pixels_of(im: Image.Image, notes: list[str]):
    """``(color [H, W, C], alpha [H, W] | None, bit_depth, mode)`` of a loaded PIL image."""
    mode = im.mode
    has_key = "transparency" in im.info  # a palette entry or colour key marked transparent
    if mode in ("1", "L") and not has_key:
        return _scaled(np.asarray(im.convert("L")))[..., None], None, 8, mode
    if mode in ("1", "L", "LA", "La"):
        la = _scaled(np.asarray(im.convert("LA")))
        return la[..., :1], la[..., 1], 8, mode
    if mode.startswith("I;16"):
        return _scaled(np.asarray(im).astype(np.uint16))[..., None], None, 16, mode
    if mode in ("I", "F"):
        values = np.asarray(im).astype(np.float64)
        values = values / 65535 if mode == "I" else values
        if values.min() < 0 or values.max() > 1:
            notes.append(f"{mode} samples outside the range clipped")
        return np.clip(values, 0, 1).astype(np.float32)[..., None], None, 16, mode
    if mode == "RGB" and not has_key:
        return _scaled(np.asarray(im)), None, 8, mode
    if mode in ("RGBA", "RGBa", "P", "PA", "RGB") and (mode != "P" or has_key):
        if mode in ("P", "PA"):
            notes.append("palette expanded to RGBA")
        rgba = _scaled(np.asarray(im.convert("RGBA")))
        return rgba[..., :3], rgba[..., 3], 8, mode
    if mode == "P":
        notes.append("palette expanded to RGB")
    elif mode != "RGBX":
        notes.append(f"converted from {mode} to RGB")
    return _scaled(np.asarray(im.convert("RGB"))), None, 8, mode


def _scaled(a: np.ndarray) -> np.ndarray:
    """uint8 / uint16 samples to float32 in [0, 1]."""
    return a.astype(np.float32) / (65535 if a.dtype == np.uint16 else 255)


def _tile_rawmode(tile) -> str:
    args = tile[3]
    return args if isinstance(args, str) else (args[0] if args else "")


def _read_16bit_colour(path: Path, mode: str, tiles: list) -> tuple[np.ndarray, str] | None:
    """The full 16-bit samples ``uint16 [H, W, C]`` and the mode of a file that Pillow would
    truncate to 8 bits (16-bit RGB, RGBA, gray + alpha); ``None`` for any other file.

    Pillow unpacks such samples by keeping their high byte. The decoders (PNG's zlib + filters,
    TIFF's) are still right, so decoding again with the rawmode of the opposite byte order keeps
    the low bytes instead, and the two together are the samples. Gray + alpha (4 bytes a pixel)
    is decoded once with a rawmode that copies the bytes unchanged.
    """
    rawmodes = {_tile_rawmode(t) for t in tiles}
    if mode not in ("RGB", "RGBA") or len(rawmodes) != 1:
        return None
    rawmode = rawmodes.pop()
    base, sep, order = rawmode.partition(";16")
    if not sep or order not in ("B", "L", "N"):
        return None
    if order == "N":
        order = "L" if sys.byteorder == "little" else "B"
    if base == "LA" and mode == "RGBA":
        b = _decode_tiles(path, tiles, "RGBA").astype(np.uint16)  # [H, W, 4] bytes as stored
        hi, lo = (b[..., 0::2], b[..., 1::2]) if order == "B" else (b[..., 1::2], b[..., 0::2])
        return (hi << 8) | lo, "LA"
    if base != mode:
        return None
    hi = _decode_tiles(path, tiles, f"{base};16{order}").astype(np.uint16)
    lo = _decode_tiles(path, tiles, f"{base};16{'L' if order == 'B' else 'B'}").astype(np.uint16)
    return (hi << 8) | lo, mode


def _decode_tiles(path: Path, tiles: list, rawmode: str) -> np.ndarray:
    with Image.open(path) as im:
        if len(im.tile) != len(tiles):
            raise OSError("the file changed while it was read")
        im.tile = [_with_rawmode(t, rawmode) for t in im.tile]
        im.load()
        return np.asarray(im)


def _with_rawmode(tile, rawmode: str):
    args = tile[3]
    new_args = rawmode if isinstance(args, str) else (rawmode, *args[1:])
    if hasattr(tile, "_replace"):
        return tile._replace(args=new_args)
    return (tile[0], tile[1], tile[2], new_args)


def from_array(array: np.ndarray, *, bit_depth: int | None = None) -> ImageData:
    """Wrap a NumPy image: ``[H, W]``, ``[H, W, 1]`` gray, ``[H, W, 2]`` gray + alpha,
    ``[H, W, 3]`` RGB or ``[H, W, 4]`` RGBA; uint8, uint16 or float in ``[0, 1]``.

    ``bit_depth`` defaults to 16 for uint16 and 8 otherwise.
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"an image array must be [H, W] or [H, W, 1 to 4], got shape {a.shape}")
    if a.dtype == np.uint8:
        values, depth = a.astype(np.float32) / 255, 8
    elif a.dtype == np.uint16:
        values, depth = a.astype(np.float32) / 65535, 16
    elif a.dtype == np.bool_:
        values, depth = a.astype(np.float32), 8
    elif np.issubdtype(a.dtype, np.floating):
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not (lo >= 0 and hi <= 1):
            raise ValueError(f"a float image must be in [0, 1], got values in [{lo}, {hi}]")
        values, depth = a.astype(np.float32), 8
    else:
        raise ValueError(f"an image array must be uint8, uint16 or float in [0, 1], got {a.dtype}")
    has_alpha = a.shape[2] in (2, 4)
    return ImageData(
        pixels=np.ascontiguousarray(values[..., :-1] if has_alpha else values),
        alpha=np.ascontiguousarray(values[..., -1]) if has_alpha else None,
        bit_depth=depth if bit_depth is None else bit_depth,
    )


# ----------------------------------------------------------------------------------------------
# converting back


_QUANTIZE_BLOCK = 1 << 22


def quantize(values: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Float samples to uint8 (``bit_depth=8``) or uint16 (``16``): the one conversion from
    float pixels to integer samples in glean-sr.

    The rule: clip to ``[0, 1]``, multiply by ``2**bit_depth - 1`` (in the input's float
    precision), round to the nearest integer with ties to even (``np.rint``). So
    ``0.5 / 255 -> 0``, ``1.5 / 255 -> 2``, ``2.5 / 255 -> 2``; values outside ``[0, 1]`` go to
    ``0`` and ``2**bit_depth - 1``. This is the rounding of mmediting's ``tensor2img``
    (``(x * 255.0).round()`` on float32, NumPy rounds ties to even), which made the 8-bit
    outputs behind the released PSNR/SSIM numbers, and of the reference degradation's
    quantisation and OpenCV's float-to-uint8 conversion. Ties are rare in practice: only
    values that land exactly halfway between two levels are affected.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    top, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    out = np.empty(values.shape, dtype)
    # in blocks of 4 Mi samples: a whole float temporary of a large photo would cost gigabytes
    flat, flat_out = values.reshape(-1), out.reshape(-1)
    for start in range(0, flat.size, _QUANTIZE_BLOCK):
        block = np.clip(flat[start : start + _QUANTIZE_BLOCK], 0, 1)
        block *= top
        flat_out[start : start + _QUANTIZE_BLOCK] = np.rint(block, out=block)
    return out


def round_to_8bit(values: np.ndarray) -> np.ndarray:
    """Float pixels snapped to the 8-bit grid, ``quantize(values, 8) / 255`` as float32: what an
    8-bit file holds, back in ``[0, 1]``."""
    return quantize(values, 8).astype(np.float32) / np.float32(255)


def to_array(image: ImageData, *, bit_depth: int | None = None) -> np.ndarray:
    """``[H, W, C]`` uint8 or uint16 (the image's bit depth unless given), alpha appended as the
    last channel; ``C`` is 1 to 4."""
    values = image.pixels
    if image.alpha is not None:
        values = np.concatenate([values, image.alpha[..., None]], axis=2)
    return quantize(values, bit_depth or image.bit_depth)


def to_pil(image: ImageData) -> Image.Image:
    """A PIL image (mode ``L``, ``LA``, ``RGB``, ``RGBA``, or ``I;16`` for 16-bit grayscale
    without alpha) carrying the ICC profile in ``info``. PIL cannot hold 16-bit colour, so
    16-bit colour images come back as 8 bits."""
    if image.bit_depth == 16 and image.is_grayscale and image.alpha is None:
        pil = Image.fromarray(quantize(image.pixels[..., 0], 16))
    else:
        arr = to_array(image, bit_depth=8)
        pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    if image.icc_profile:
        pil.info["icc_profile"] = image.icc_profile
    return pil


# ----------------------------------------------------------------------------------------------
# writing


def write_image(
    image: ImageData,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    quality: int = 95,
) -> tuple[str, ...]:
    """Write ``image`` to ``path`` in the format its suffix names (see :data:`WRITE_FORMATS`).

    The file is written atomically. Without ``overwrite`` an existing file is never replaced.
    Returns notes on what the format could not hold (e.g. ``"alpha dropped (JPEG has none)"``).

    Raises:
        ImageError: unknown suffix, the file exists, or it cannot be written.
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted({s.lstrip(".") for s in WRITE_FORMATS}))
        raise ImageError(f"{path}: unknown image file suffix (known: {known})")
    if not overwrite and path.exists():
        raise ImageError(f"{path}: exists; pass --overwrite (overwrite=True) to replace it")
    data, notes = encode_image(image, fmt, quality=quality)
    with _write_errors(path):
        atomic_write_bytes(path, data, overwrite=overwrite)
    return notes


def write_image_rows(
    path: str | os.PathLike,
    bands: Iterable[np.ndarray],
    *,
    width: int,
    height: int,
    bit_depth: int = 8,
    icc_profile: bytes | None = None,
    overwrite: bool = False,
) -> None:
    """Write a PNG whose rows come a band at a time, so the image is never whole in memory:
    ``bands`` yields float ``[n, width, C]`` pixels in ``[0, 1]`` (C = 1 gray, 2 gray + alpha,
    3 RGB, 4 RGBA), ``height`` rows in all, each band quantised by :func:`quantize`. The bytes
    are those :func:`write_image` writes for the same image; atomic, never replacing a file
    unless ``overwrite``.

    Raises:
        ImageError: ``path`` is not a ``.png``, exists, or cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ImageError(f"{path}: images written band by band are PNG files; name it .png")
    if not overwrite and path.exists():
        raise ImageError(f"{path}: exists; pass --overwrite (overwrite=True) to replace it")
    with _write_errors(path), atomic_writer(path, overwrite=overwrite) as f:
        png = None
        for band in bands:
            if png is None:
                png = PngWriter(f, width, height, band.shape[2], bit_depth, icc_profile=icc_profile)
            png.write(quantize(band, bit_depth))
        if png is None:
            raise ValueError("no rows to write")
        png.close()


@contextmanager
def _write_errors(path: Path) -> Iterator[None]:
    """A file that exists or cannot be written as one :class:`ImageError` line."""
    try:
        yield
    except FileExistsError:
        raise ImageError(
            f"{path}: exists; pass --overwrite (overwrite=True) to replace it"
        ) from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot write: {exc.strerror or _one_line(exc)}") from None


def encode_image(image: ImageData, fmt: str, *, quality: int = 95) -> tuple[bytes, tuple[str, ...]]:
    """The file bytes of ``image`` in Pillow format ``fmt`` and the notes of what was dropped."""
    notes: list[str] = []
    icc = image.icc_profile
    if fmt == "PNG":  # glean-sr's own encoder: the bytes of a streamed write (write_image_rows)
        samples = to_array(image)
        buffer = io.BytesIO()
        png = PngWriter(buffer, samples.shape[1], samples.shape[0], samples.shape[2],
                        image.bit_depth, icc_profile=icc)  # fmt: skip
        png.write(samples)
        png.close()
        return buffer.getvalue(), ()
    alpha = image.alpha
    if alpha is not None and fmt in ("JPEG", "BMP"):
        notes.append(f"alpha dropped ({fmt} output has none)")
        alpha = None
    gray16 = fmt == "TIFF" and image.is_grayscale and alpha is None
    if image.bit_depth == 16 and not gray16:
        notes.append("written with 8 bits (16 bits: PNG, or TIFF for grayscale)")
    pixels = image.pixels
    if fmt == "WEBP" and image.is_grayscale:
        pixels = np.repeat(pixels, 3, axis=2)  # WebP has no grayscale mode
        if icc is not None:
            notes.append("GRAY ICC profile dropped (WebP stores RGB)")
            icc = None
    if image.bit_depth == 16 and gray16:
        pil = Image.fromarray(quantize(pixels[..., 0], 16))
    else:
        arr = quantize(pixels if alpha is None else np.dstack([pixels, alpha]), 8)
        pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    options: dict = {}
    if fmt == "JPEG":
        options = {"quality": quality, "subsampling": 0}
    elif fmt == "WEBP":
        options = {"quality": quality, "exact": alpha is not None}  # keep colour under alpha 0
    if icc is not None:
        if fmt == "BMP":
            notes.append("ICC profile dropped (BMP output keeps none)")
        else:
            options["icc_profile"] = icc
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **options)
    return buffer.getvalue(), tuple(notes)


# ----------------------------------------------------------------------------------------------
# model tensors


def _to_channels(values: np.ndarray, channels: int) -> np.ndarray:
    """``[H, W, C]`` to ``[H, W, channels]``: gray repeated to RGB, RGB to BT.601 luma."""
    if values.shape[2] == channels:
        return values
    if values.shape[2] == 1:
        return np.repeat(values, channels, axis=2)
    if channels == 1:
        return (values @ np.asarray(LUMA_WEIGHTS, dtype=values.dtype))[..., None]
    raise ValueError(f"cannot convert {values.shape[2]} channels to {channels}")


def pixels_to_tensor(pixels: Sequence[np.ndarray] | np.ndarray, channels: int = 3) -> Tensor:
    """Stack ``[H, W, C]`` float pixels in ``[0, 1]`` (all the same size) into a model input.

    Returns ``[N, channels, H, W]`` float32 in ``[-1, 1]`` (``x * 2 - 1``); grayscale pixels
    become ``channels`` equal channels, RGB pixels become luma for a one-channel model.
    """
    import torch

    if isinstance(pixels, np.ndarray):
        pixels = [pixels]
    batch = np.stack([_to_channels(p, channels) for p in pixels])  # [N, H, W, C]
    t = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
    return t.permute(0, 3, 1, 2).contiguous() * 2 - 1  # [N, C, H, W]


def tensor_to_pixels(sr: Tensor, channels: int | Sequence[int] = 3) -> list[np.ndarray]:
    """Model output ``sr: [N, C, H, W]`` (RGB, nominally ``[-1, 1]``, unclamped) to a list of
    float32 ``[H, W, channels]`` pixels in ``[0, 1]``, clamped: ``(sr + 1) / 2``.

    ``channels`` (one value, or one per image) is what each image had on input: 1 turns the
    output into BT.601 luma (as Pillow's ``convert("L")``), the grayscale of the restored colour.
    """
    if sr.ndim != 4:
        raise ValueError(f"sr must be [N, C, H, W], got {list(sr.shape)}")
    n = sr.shape[0]
    wanted = [channels] * n if isinstance(channels, int) else list(channels)
    if len(wanted) != n:
        raise ValueError(f"channels has {len(wanted)} entries for {n} images")
    values = ((sr.detach().float().cpu() + 1) / 2).clamp_(0, 1)
    values = values.permute(0, 2, 3, 1).numpy()  # [N, H, W, C]
    return [
        np.ascontiguousarray(np.clip(_to_channels(v, c), 0, 1), dtype=np.float32)
        for v, c in zip(values, wanted, strict=True)
    ]
