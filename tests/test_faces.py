"""Whole-photo face restoration on a real face: scikit-image's astronaut (Eileen Collins).

The restorer is run with conftest's small deterministic GLEAN (8 -> 32). Every stage is checked
against references computed here, without the code under test: the detected eyes against iris
centres labelled by eye on a 6x zoom of the photo; the alignment against the FFHQ template; the
model input against MATLAB bicubic of a SciPy bilinear warp; the paste-back against SciPy's
bilinear sampling of the restored face; the background against ``imresize``.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import data

from glean_sr.data.imresize import imresize
from glean_sr.errors import ConfigError, ImageError, MissingDependencyError
from glean_sr.inference.faces import (
    DlibFaceDetector,
    FaceAlignment,
    FaceRestorer,
    template_points,
)
from glean_sr.inference.upscaler import Upscaler
from glean_sr.io import from_array, pixels_to_tensor, tensor_to_pixels

pytest.importorskip("dlib", reason="needs the faces extra: pip install 'glean-sr[faces]'")

#: iris centres of the astronaut (512 x 512), labelled by eye on a 6x zoom: image-left, right
EYES_512 = np.array([[203.0, 101.0], [246.0, 104.0]])
UPSCALE = 2


def astronaut(size: int) -> np.ndarray:
    """The astronaut reduced to ``size`` (MATLAB bicubic), uint8 ``[size, size, 3]``."""
    return imresize(data.astronaut(), size=(size, size))


def to_photo(points_512: np.ndarray, size: int) -> np.ndarray:
    """Points of the 512-pixel astronaut in the ``size``-pixel reduction (pixel centres)."""
    return (points_512 + 0.5) * size / 512 - 0.5


def t_of(alignment: FaceAlignment, xy: np.ndarray) -> np.ndarray:
    """Normalised crop coordinates of photo points, solved from the alignment's definition
    ``p = center + (2 t_x - 1) x + (2 t_y - 1) y`` (not with the code's own inverse)."""
    basis = np.column_stack([alignment.x, alignment.y])
    return (np.linalg.solve(basis, (xy - alignment.center).reshape(-1, 2).T).T + 1) / 2


def bilinear(image: np.ndarray, xy: np.ndarray, mode: str) -> np.ndarray:
    """SciPy's bilinear samples of ``image: [H, W, C]`` at ``xy: [..., 2]``."""
    coords = [xy[..., 1].ravel(), xy[..., 0].ravel()]
    chans = [ndimage.map_coordinates(image[..., c].astype(np.float64), coords, order=1, mode=mode)
             for c in range(image.shape[2])]  # fmt: skip
    return np.stack(chans, axis=-1).reshape(*xy.shape[:-1], image.shape[2])


@pytest.fixture(scope="module")
def detector():
    return DlibFaceDetector()


@pytest.fixture(scope="module")
def restorer(tiny_model, detector):
    return FaceRestorer(tiny_model, upscale=UPSCALE, detector=detector, device="cpu")


@pytest.fixture(scope="module")
def astronaut_run(restorer):
    photo = astronaut(256)
    return photo, restorer(photo)


# ----------------------------------------------------------------------------------------------
# the astronaut: detect, align, restore, paste back


def test_astronaut_face_is_detected_at_its_eyes(astronaut_run):
    _, result = astronaut_run
    record = result.record
    assert record.found == 1 and len(record.faces) == 1  # the face; not the badges on the suit
    face = record.faces[0]
    assert face.detection.refined
    eyes = face.detection.points5[:2]
    # labelled to about a pixel at 512, i.e. half a pixel here, plus the landmark model's error
    np.testing.assert_allclose(eyes, to_photo(EYES_512, 256), atol=1.5)
    assert "1 face found" in record.describe()


@pytest.mark.parametrize("size", [128, 512])
def test_astronaut_aligned_eyes_sit_on_the_template(astronaut_run, size):
    """The FFHQ rule puts each face's eyes where FFHQ faces have them on average: within a few
    pixels of the 5-point template at the blind model's input size (128) and at 512."""
    _, result = astronaut_run
    face = result.record.faces[0]
    eyes_in_crop = t_of(face.alignment, face.detection.points5[:2]) * size - 0.5
    tolerance = 6 * size / 512  # 6 px at 512: this face's proportions, not the landmarks' error
    np.testing.assert_allclose(eyes_in_crop, template_points(size)[:2], atol=tolerance)
    # the least-squares fit of all five points to the template puts the eyes near it too, a
    # little further off: her wide smile (mouth corners 10 to 15 px wider than the template's
    # at 512) pulls the fit
    fitted = FaceAlignment.from_template(face.detection.points5)
    eyes_fitted = t_of(fitted, face.detection.points5[:2]) * size - 0.5
    np.testing.assert_allclose(eyes_fitted, template_points(size)[:2], atol=8 * size / 512)


def test_aligned_crop_pixels_show_the_eyes_on_the_template(astronaut_run, detector):
    """Not only the matrix: the warped crop's pixels, searched again by the detector, have the
    eyes at the template (so the warp moves pixels the way the alignment says)."""
    photo, result = astronaut_run
    face = result.record.faces[0]
    size = 256
    matrix = face.alignment.crop_to_photo(size)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    pts = np.stack([xs, ys], -1) @ matrix[:, :2].T + matrix[:, 2]
    crop = bilinear(photo.astype(np.float64) / 255, pts, "reflect").astype(np.float32)
    found, _ = detector.detect(crop)
    assert len(found) == 1
    np.testing.assert_allclose(found[0].points5[:2], template_points(size)[:2], atol=6 * 0.5 + 1)


def test_astronaut_model_input_is_the_bicubic_reduced_upright_crop(astronaut_run, tiny_model):
    photo, result = astronaut_run
    face = result.record.faces[0]
    n = face.native_size
    assert n == round(face.alignment.side) and face.resize == "bicubic"  # not the blind model
    matrix = face.alignment.crop_to_photo(n)
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float64)
    pts = np.stack([xs, ys], -1) @ matrix[:, :2].T + matrix[:, 2]
    crop = bilinear(photo.astype(np.float64) / 255, pts, "reflect")
    expected = np.clip(imresize(crop, size=(tiny_model.in_size,) * 2), 0, 1)
    expected = np.floor(expected * 255 + 0.5) / 255  # an 8-bit photo gives an 8-bit face
    assert face.lq.shape == (tiny_model.in_size, tiny_model.in_size, 3)
    # equal up to float32 rounding, which may flip a value across a rounding boundary
    assert np.abs(face.lq - expected).max() <= 1 / 255 + 1e-6
    assert np.mean(np.abs(face.lq - expected) > 1e-6) < 0.02
    with torch.no_grad():
        sr = tiny_model(pixels_to_tensor(face.lq))
    np.testing.assert_allclose(face.restored, tensor_to_pixels(sr)[0], atol=1e-5)


def test_astronaut_paste_back_is_background_outside_and_warped_face_inside(astronaut_run):
    photo, result = astronaut_run
    out = result.data.pixels.astype(np.float64)
    background = np.clip(imresize(photo.astype(np.float64) / 255, scale=UPSCALE), 0, 1)
    assert out.shape == (512, 512, 3)
    np.testing.assert_allclose(result.background.pixels, background, atol=1e-6)

    face = result.record.faces[0]
    m = face.paste_size
    assert m == round(face.alignment.side * UPSCALE)
    resized = np.clip(imresize(face.restored.astype(np.float64), size=(m, m)), 0, 1)
    # every output pixel's place in the face crop, from the alignment in the output photo
    ys, xs = np.mgrid[0:512, 0:512].astype(np.float64)
    photo_xy = (np.stack([xs, ys], -1) + 0.5) / UPSCALE - 0.5
    t = t_of(face.alignment, photo_xy).reshape(512, 512, 2)
    warped = bilinear(resized, t * m - 0.5, "nearest")
    inside = np.all((t > 0) & (t < 1), axis=-1)
    core = np.all((t > 0.11) & (t < 0.89), axis=-1)  # beyond the feather (10 % of the side)
    assert core.sum() > 100 * 100

    # outside the face's square: exactly the background upscale
    np.testing.assert_array_equal(out[~inside], result.background.pixels[~inside])
    np.testing.assert_allclose(out[~inside], background[~inside], atol=1e-6)
    # well inside: exactly the restored face warped back
    np.testing.assert_allclose(out[core], warped[core], atol=2e-5)
    # in the feather: one weight per pixel, the same for every channel, between 0 and 1
    top, left, bottom, right = face.paste.box
    mask = np.zeros((512, 512))
    mask[top:bottom, left:right] = face.paste.mask
    assert np.all(mask[core] == 1) and np.all(mask[~inside] == 0)
    blend = background * (1 - mask[..., None]) + warped * mask[..., None]
    np.testing.assert_allclose(out, blend, atol=2e-5)
    ring = inside & ~core & (mask > 0) & (mask < 1)
    assert ring.sum() > 1000
    # no seam: the weight rises over 10 % of the face's side (17 px here) without a jump
    assert np.abs(np.diff(mask, axis=0)).max() < 0.1 and np.abs(np.diff(mask, axis=1)).max() < 0.1


def test_comparison_puts_background_and_result_side_by_side(astronaut_run):
    _, result = astronaut_run
    cmp = result.comparison(gap=4).pixels
    assert cmp.shape == (512, 512 * 2 + 4, 3)
    np.testing.assert_array_equal(cmp[:, :512], result.background.pixels)
    np.testing.assert_array_equal(cmp[:, 516:], result.data.pixels)
    assert np.all(cmp[:, 512:516] == 1)


# ----------------------------------------------------------------------------------------------
# a group photo made of astronaut faces at several scales and rotations

GROUP = [  # (scale, rotation in degrees, where the eye midpoint goes (x, y))
    (0.55, -20.0, (90.0, 80.0)),
    (0.8, 0.0, (250.0, 95.0)),
    (1.0, 15.0, (400.0, 150.0)),
    (0.65, 25.0, (140.0, 230.0)),
]


def similarity(scale: float, degrees: float, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``[2, 3]``: rotate by ``degrees`` (clockwise on screen) and scale about ``src``, moved to
    ``dst``."""
    th = math.radians(degrees)
    a = scale * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    return np.column_stack([a, dst - a @ src])


@pytest.fixture(scope="module")
def group_photo():
    """A 520 x 320 photo: a blurred coffee-cup background and four astronaut faces pasted in
    with soft round edges; returns the photo and the eye positions of each face."""
    rng = np.random.default_rng(0)
    base = data.astronaut().astype(np.float64) / 255
    h, w = 320, 520
    coffee = data.coffee().astype(np.float64) / 255
    photo = np.clip(imresize(coffee, size=(h, w)), 0, 1)
    photo = ndimage.gaussian_filter(photo, (4, 4, 0)) + rng.normal(0, 0.01, (h, w, 3))
    eye_mid = EYES_512.mean(0)
    expected = []
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    for scale, degrees, where in GROUP:
        fwd = similarity(scale, degrees, eye_mid, np.array(where))
        inv = np.linalg.inv(np.vstack([fwd, [0, 0, 1]]))[:2]
        src = np.stack([xs, ys], -1) @ inv[:, :2].T + inv[:, 2]  # [h, w, 2] in the astronaut
        face = bilinear(base, src, "nearest")
        r = np.hypot(*(src - (eye_mid + np.array([0, 25]))).transpose(2, 0, 1))
        alpha = np.clip((95 - r) / 10, 0, 1)[..., None]  # a disc around the face, soft edge
        photo = photo * (1 - alpha) + face * alpha
        expected.append(EYES_512 @ fwd[:, :2].T + fwd[:, 2])
    photo = np.floor(np.clip(photo, 0, 1) * 255 + 0.5).astype(np.uint8)
    return photo, expected


@pytest.fixture(scope="module")
def group_run(group_photo, restorer):
    photo, _ = group_photo
    return restorer(photo)


def test_group_photo_every_face_found_at_its_eyes(group_photo, group_run):
    _, expected = group_photo
    faces = group_run.record.faces
    assert group_run.record.found == len(GROUP) == len(faces)
    for eyes in expected:
        match = [f for f in faces if np.abs(f.detection.points5[:2] - eyes).max() < 2.5]
        assert len(match) == 1, f"no face found with its eyes at {eyes.round(1).tolist()}"


def test_group_photo_each_face_pasted_back_in_its_place(group_photo, group_run):
    _, expected = group_photo
    out = group_run.data.pixels
    background = group_run.background.pixels
    changed = np.any(out != background, axis=-1)
    covered = np.zeros(changed.shape, bool)
    angles = []
    for eyes in expected:
        face = next(f for f in group_run.record.faces
                    if np.abs(f.detection.points5[:2] - eyes).max() < 2.5)  # fmt: skip
        angles.append(face.alignment.angle)
        truth = FaceAlignment.from_ffhq(five_points_of_truth(eyes, face))
        assert abs(face.alignment.angle - truth.angle) < 2
        assert abs(face.alignment.side / truth.side - 1) < 0.05
        assert np.hypot(*(face.alignment.center - truth.center)) < 0.05 * truth.side
        # the pasted square in the output is this face's square, twice as large
        top, left, bottom, right = face.paste.box
        centre_out = (face.alignment.center + 0.5) * UPSCALE - 0.5
        assert top < centre_out[1] < bottom and left < centre_out[0] < right
        region = np.zeros(changed.shape, bool)
        region[top:bottom, left:right] = face.paste.mask > 0
        covered |= region
        # the eyes of the output are the restored face's, not the background's
        for x, y in ((eyes + 0.5) * UPSCALE - 0.5).round().astype(int):
            assert changed[y, x]
    # nothing changed outside the pasted squares
    assert not np.any(changed & ~covered)
    # each square is turned as its face was turned (the astronaut's own tilt cancels out)
    turned = np.array([degrees for _, degrees, _ in GROUP])
    np.testing.assert_allclose(np.array(angles) - angles[1], turned - turned[1], atol=2)


def five_points_of_truth(eyes: np.ndarray, face) -> np.ndarray:
    """The true eyes with the detected mouth corners (the pasted faces' mouths are where the
    astronaut's are, so the FFHQ square from these differs from the detected one only by the
    eyes' error)."""
    p = face.detection.points5.copy()
    p[:2] = eyes
    return p


def test_only_center_face_restores_the_most_central(group_photo, tiny_model, detector):
    photo, expected = group_photo
    one = FaceRestorer(tiny_model, detector=detector, only_center_face=True, device="cpu")
    result = one(photo)
    assert result.record.found == len(GROUP) and len(result.record.faces) == 1
    centre = np.array([(photo.shape[1] - 1) / 2, (photo.shape[0] - 1) / 2])
    nearest = min(expected, key=lambda e: np.hypot(*(e.mean(0) - centre)))
    np.testing.assert_allclose(result.record.faces[0].detection.points5[:2], nearest, atol=2.5)
    assert "most central" in result.record.describe()


# ----------------------------------------------------------------------------------------------
# edge cases


def test_photo_without_a_face_is_still_enlarged(restorer):
    photo = imresize(data.coffee(), size=(100, 150))
    result = restorer(photo)
    assert result.record.faces == [] and "no face found" in result.record.describe()
    expected = np.clip(imresize(photo.astype(np.float64) / 255, scale=UPSCALE), 0, 1)
    np.testing.assert_allclose(result.data.pixels, expected, atol=1e-6)


def test_grayscale_photo_restored_as_luma(restorer, astronaut_run):
    photo, rgb_result = astronaut_run
    gray = from_array(np.asarray(np.round(photo @ [0.299, 0.587, 0.114]), np.uint8))
    result = restorer(gray)
    assert result.data.pixels.shape == (512, 512, 1) and len(result.record.faces) == 1
    face = result.record.faces[0]
    assert face.lq.shape[2] == 1 and face.restored.shape[2] == 1
    # same face, same place as in colour (the detector sees the same luminance)
    np.testing.assert_allclose(
        face.alignment.center, rgb_result.record.faces[0].alignment.center, atol=1.5
    )
    background = np.clip(imresize(gray.pixels.astype(np.float64), scale=UPSCALE), 0, 1)
    outside = result.data.pixels == result.background.pixels
    np.testing.assert_allclose(result.background.pixels, background, atol=1e-6)
    assert outside.mean() > 0.7 and not outside.all()


def test_rgba_photo_keeps_its_alpha(restorer):
    photo = astronaut(256)
    ramp = np.linspace(0, 255, 256).astype(np.uint8)[None].repeat(256, 0)
    result = restorer(np.dstack([photo, ramp]))
    assert result.image.shape == (512, 512, 4) and len(result.record.faces) == 1
    expected = np.clip(imresize(ramp.astype(np.float64) / 255, scale=UPSCALE), 0, 1)
    np.testing.assert_allclose(result.data.alpha, expected, atol=1e-6)
    assert "alpha" in result.record.describe()


def test_face_cut_by_the_border(restorer):
    """A face whose FFHQ square reaches past the top and left edges: the crop is mirrored out,
    and only the part of the square inside the photo is pasted."""
    photo = data.astronaut()[60:316, 160:416]
    photo = imresize(photo, size=(128, 128))  # 256 -> 128: the face is about 45 px wide
    result = restorer(photo)
    assert len(result.record.faces) == 1
    face = result.record.faces[0]
    corners = face.alignment.corners()
    assert corners[:, 0].min() < 0 and corners[:, 1].min() < 0  # really past the edges
    top, left, bottom, right = face.paste.box
    assert (top, left) == (0, 0) and bottom <= 256 and right <= 256
    assert result.data.pixels.shape == (256, 256, 3)


def test_large_face_filling_the_photo(restorer):
    """A face larger than the model's output: the crop is shrunk to in_size and the restored
    face enlarged again to its size in the output."""
    photo = data.astronaut()[40:300, 95:355]  # the face fills most of this 260-pixel photo
    result = restorer(photo)
    assert len(result.record.faces) == 1
    face = result.record.faces[0]
    assert face.native_size > 100 and face.paste_size > restorer.out_size


class _Resizer(torch.nn.Module):
    """A stand-in restorer with any input size (only ``align`` uses it here)."""

    def __init__(self, in_size: int):
        super().__init__()
        self.in_size, self.out_size, self.img_channels = in_size, in_size * 4, 3

    def forward(self, lq):
        return torch.nn.functional.interpolate(lq, scale_factor=4, mode="nearest")


def test_small_face_is_enlarged_to_the_input_size():
    """A face smaller than the model's input is enlarged with MATLAB bicubic, not 'area'."""
    photo = imresize(data.astronaut(), size=(96, 96))  # face square about 33 px
    big_input = FaceRestorer(_Resizer(64), detector=DlibFaceDetector(min_face=20), device="cpu")
    faces, _ = big_input.detect(from_array(photo))
    assert len(faces) == 1
    record = big_input.align(from_array(photo), faces)[0]
    assert record.native_size < 64 and record.resize == "enlarged"
    assert record.lq.shape == (64, 64, 3)


def test_blind_model_crops_are_area_resized(detector):
    from glean_sr.inference.faces.restorer import default_face_resize
    from glean_sr.presets import PRESETS

    blind = PRESETS["glean_in128out1024_4x2_300k_ffhq_celebahq"].config
    x16 = PRESETS["glean_ffhq_16x"].config
    assert default_face_resize(type("M", (), {"config": blind})()) == "area"
    assert default_face_resize(type("M", (), {"config": x16})()) == "bicubic"
    restorer = FaceRestorer(_Resizer(16), resize="area", detector=detector, device="cpu")
    photo = from_array(astronaut(256))
    faces, _ = restorer.detect(photo)
    record = restorer.align(photo, faces)[0]
    n = record.native_size
    matrix = record.alignment.crop_to_photo(n)
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float64)
    crop = bilinear(
        photo.pixels, np.stack([xs, ys], -1) @ matrix[:, :2].T + matrix[:, 2], "reflect"
    )
    # area average onto 16 x 16 with an independent box filter (a fine grid, then block means)
    fine = np.repeat(np.repeat(crop, 16, 0), 16, 1)  # [16 n, 16 n, 3]
    expected = fine.reshape(16, n, 16, n, 3).mean(axis=(1, 3))
    expected = np.floor(np.clip(expected, 0, 1) * 255 + 0.5) / 255
    assert record.resize == "area"
    assert np.abs(record.lq - expected).max() <= 1 / 255 + 1e-6


def test_background_model_runs_on_a_photo_of_its_input_size(tiny_model, detector):
    photo = astronaut(8)  # too small for any face: the background alone
    restorer = FaceRestorer(tiny_model, upscale=4, background=tiny_model, detector=detector,
                            device="cpu")  # fmt: skip
    result = restorer(photo)
    expected = Upscaler(tiny_model, device="cpu")(photo).data.pixels
    np.testing.assert_allclose(result.data.pixels, expected, atol=1e-6)
    assert "GLEAN 8 -> 32" in result.record.describe()
    with pytest.raises(ImageError, match=r"takes exactly 8x8 .* photo is 16x16.*bicubic"):
        restorer(astronaut(16))
    with pytest.raises(ConfigError, match=r"\(x4\), not x2"):
        FaceRestorer(tiny_model, upscale=2, background=tiny_model, detector=detector)


def test_missing_faces_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'glean-sr\[faces\]'"):
        DlibFaceDetector()


def test_bad_arguments_are_refused(tiny_model, detector):
    with pytest.raises(ConfigError, match="upscale"):
        FaceRestorer(tiny_model, upscale=0, detector=detector)
    with pytest.raises(ConfigError, match="alignment"):
        FaceRestorer(tiny_model, alignment="eyes", detector=detector)
    with pytest.raises(ConfigError, match="detector"):
        DlibFaceDetector(detector="retina")


def test_alignment_geometry_round_trips():
    """``t -> photo -> t`` is the identity; FFHQ's rule on an upright face of known proportions
    gives the square the FFHQ script gives (centre 0.1 eye-to-mouth below the eyes, side
    4 x eye distance when the eyes are far apart)."""
    points = np.array([[100.0, 100], [140, 100], [120, 120], [105, 135], [135, 135]])
    a = FaceAlignment.from_ffhq(points)
    assert a.side == pytest.approx(4 * 40)
    np.testing.assert_allclose(a.center, [120, 100 + 0.1 * 35])
    assert a.angle == pytest.approx(0)
    t = np.random.default_rng(0).random((10, 2))
    photo = t @ a.t_to_photo()[:, :2].T + a.t_to_photo()[:, 2]
    back = photo @ a.photo_to_t()[:, :2].T + a.photo_to_t()[:, 2]
    np.testing.assert_allclose(back, t, atol=1e-12)
