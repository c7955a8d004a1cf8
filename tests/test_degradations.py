"""The blind degradation pipeline: each step against an independent computation, the random
choices' statistics, and determinism for a fixed seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glean_sr.data.degradations import (
    BlindDegradation,
    add_gaussian_noise,
    filter2d,
    gaussian_kernel,
    jpeg_compress,
    resize,
)
from glean_sr.io import round_to_8bit


def _photo(size: int = 64) -> np.ndarray:
    import skimage.data

    from glean_sr.data.imresize import imresize

    img = imresize(skimage.data.astronaut()[:400, 50:450], size=(size, size))
    return img.astype(np.float32) / 255.0


@pytest.mark.parametrize(
    "sx,sy,theta", [(1.0, 1.0, 0.0), (2.5, 1.0, 0.0), (3.0, 1.2, 0.6), (1.5, 2.8, -2.0)]
)
def test_blur_kernel_is_a_normalised_gaussian_with_the_asked_covariance(sx, sy, theta):
    k = gaussian_kernel(41, sx, sy, theta)
    assert k.shape == (41, 41) and k.sum() == pytest.approx(1.0, abs=1e-12)
    r = np.arange(41) - 20.0
    x, y = np.meshgrid(r, r, indexing="xy")  # x: column, y: row
    mean = np.array([(k * x).sum(), (k * y).sum()])
    cov = np.array([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    expected = rot @ np.diag([sx**2, sy**2]) @ rot.T
    np.testing.assert_allclose(mean, 0, atol=1e-12)
    np.testing.assert_allclose(cov, expected, rtol=1e-6, atol=1e-8)
    # the principal axis along theta carries sigma_x
    np.testing.assert_allclose(np.array([c, s]) @ cov @ np.array([c, s]), sx**2, rtol=1e-6)


def test_wide_kernels_are_truncated_to_the_window_but_still_sum_to_one():
    k = gaussian_kernel(41, 10.0, 10.0)
    assert k.sum() == pytest.approx(1.0) and np.allclose(k, k.T) and np.allclose(k, k[::-1])
    assert k[20, 20] == k.max()


def test_filter2d_is_correlation_with_reflect101_borders():
    rng = np.random.default_rng(0)
    img = rng.random((13, 17, 3)).astype(np.float32)
    kernel = rng.random((5, 5))
    kernel /= kernel.sum()
    padded = np.pad(img.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode="reflect")  # 'dcb|abcd'
    expected = np.zeros(img.shape)
    for dy in range(5):
        for dx in range(5):
            expected += kernel[dy, dx] * padded[dy : dy + 13, dx : dx + 17]
    np.testing.assert_allclose(filter2d(img, kernel), expected, atol=1e-6)


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "area"])
def test_resize_keeps_constants(method):
    img = np.full((23, 31, 3), 0.37, np.float32)
    for size in [(7, 9), (23, 31), (50, 61), (1, 1)]:
        np.testing.assert_allclose(resize(img, size, method), 0.37, atol=1e-6)


def test_area_down_by_integer_factor_is_the_block_mean():
    img = np.random.default_rng(1).random((24, 36, 3)).astype(np.float32)
    expected = img.reshape(6, 4, 9, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resize(img, (6, 9), "area"), expected, atol=1e-6)


def test_resizes_match_opencv():
    cv2 = pytest.importorskip("cv2", reason="OpenCV (the 'faces' extra) is the reference here")
    img = np.random.default_rng(2).random((37, 53, 3)).astype(np.float32)
    flags = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}
    for method, flag in flags.items():
        for size in [(10, 13), (74, 106), (100, 61), (5, 7), (19, 26), (37, 53)]:
            ours = resize(img, size, method)
            theirs = cv2.resize(img, size[::-1], interpolation=flag)
            np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=f"{method} {size}")
    kernel = gaussian_kernel(41, 3.0, 1.5, 0.7)
    np.testing.assert_allclose(
        filter2d(img, kernel), cv2.filter2D(img, -1, kernel.astype(np.float32)), atol=1e-5
    )


def test_gaussian_noise_has_the_asked_sigma_and_is_seeded():
    img = np.full((256, 256, 3), 0.5, np.float32)
    noisy = add_gaussian_noise(img, 20 / 255, np.random.default_rng(3))
    diff = noisy - img
    assert abs(diff.mean()) < 1e-3
    assert diff.std() == pytest.approx(20 / 255, rel=0.01)
    again = add_gaussian_noise(img, 20 / 255, np.random.default_rng(3))
    assert np.array_equal(noisy, again)


def test_jpeg_and_quantize():
    img = _photo(64)
    low, high = jpeg_compress(img, 5), jpeg_compress(img, 90)
    assert low.shape == img.shape and low.dtype == np.float32
    assert np.array_equal(low * 255, np.round(low * 255))  # decoded 8-bit values
    err_low, err_high = np.abs(low - img).mean(), np.abs(high - img).mean()
    assert err_high < err_low / 2
    q = round_to_8bit(np.array([-0.2, 0.5 / 255, 1.6 / 255, 0.999, 1.3], np.float32))
    np.testing.assert_allclose(q * 255, [0, 0, 2, 255, 255], atol=1e-4)


def test_blind_degradation_is_deterministic_for_a_seed():
    gt = _photo(128)
    d = BlindDegradation(out_size=32)
    a = d.degrade(gt, np.random.default_rng(7))
    b = d.degrade(gt, np.random.default_rng(7))
    c = d.degrade(gt, np.random.default_rng(8))
    assert a.shape == (32, 32, 3) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_blind_choices_follow_the_reference_ranges():
    d = BlindDegradation()
    rng = np.random.default_rng(0)
    draws = [d.sample(rng) for _ in range(3000)]
    iso = [p for p in draws if p.isotropic]
    assert len(iso) / len(draws) == pytest.approx(0.5, abs=0.04)
    assert all(p.sigma_y == p.sigma_x and p.theta == 0 for p in iso)
    for name, low, high in [
        ("sigma_x", 0.2, 10),
        ("sigma_y", 0.2, 10),
        ("down_scale", 1 / 32, 1),
        ("noise_sigma", 0, 50 / 255),
    ]:
        values = np.array([getattr(p, name) for p in draws])
        assert low <= values.min() and values.max() <= high, name
        assert values.mean() == pytest.approx((low + high) / 2, rel=0.05), name  # uniform
    thetas = np.array([p.theta for p in draws if not p.isotropic])
    assert -math.pi <= thetas.min() and thetas.max() <= math.pi and abs(thetas.mean()) < 0.15
    qualities = [p.jpeg_quality for p in draws]
    assert (
        min(qualities) == 5 and max(qualities) == 50 and all(isinstance(q, int) for q in qualities)
    )
    for attr in ("down_method", "up_method"):
        counts = {m: sum(getattr(p, attr) == m for p in draws) for m in d.resize_methods}
        assert set(counts) == {"bilinear", "area", "bicubic"}
        assert all(abs(c / len(draws) - 1 / 3) < 0.04 for c in counts.values()), counts
