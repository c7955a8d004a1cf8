"""The one table of named models: architecture, where the weights come from, and their checksum.

Released GLEAN weights (mmediting 0.x, trained by the paper's authors) and the official StyleGAN2
banks converted by OpenMMLab. The 8 hex digits at the end of each file name are the first
8 digits of the file's SHA-256 (mmcv's ``publish_model``); downloads are verified against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import (
    GLEANBigGANConfig,
    GLEANColorizerConfig,
    GLEANConfig,
    LightGLEANBigGANConfig,
    LightGLEANConfig,
    RealESRGANConfig,
    StyleGAN2Config,
)

_GLEAN_URL = "https://download.openmmlab.com/mmediting/restorers/glean/"
_BANK_URL = "http://download.openmmlab.com/mmediting/stylegan2/official_weights/"


@dataclass(frozen=True)
class Preset:
    """A named model: its architecture and, for released weights, where to get them."""

    name: str
    config: Any
    category: str
    description: str
    url: str | None = None
    sha256_prefix: str | None = None
    psnr: float | None = None  # the released README's PSNR (RGB) on its test set
    #: a model directory shipped inside the package (``glean_sr/demo/<packaged>``): no download
    packaged: str | None = None
    #: copies of the original file on the Hugging Face Hub (``hf://owner/repo/file``), tried in
    #: turn after ``url``; each is checked against ``sha256_prefix``
    hub_copies: tuple[str, ...] = ()

    @property
    def sources(self) -> tuple[str, ...]:
        """Where the original file can come from, in the order they are tried."""
        return ((self.url,) if self.url else ()) + self.hub_copies

    @property
    def filename(self) -> str | None:
        return self.url.rsplit("/", 1)[-1] if self.url else None

    @property
    def packaged_path(self) -> Path | None:
        return DEMO_DIR / self.packaged if self.packaged else None


#: where the demo's files are installed
DEMO_DIR = Path(__file__).resolve().parent / "demo"
#: the model the commands use when no ``-m`` is given: a small demo that ships with glean-sr
DEMO_MODEL = "glyphs_demo_4x"
#: how the commands' help names it
DEMO_HELP = (
    f"default: {DEMO_MODEL}, the demo that ships with glean-sr: a small 8 -> 32 px restorer of "
    f"character glyphs (A-Z, a-z, 0-9) trained by glean-sr on Debian's fonts, not a model for "
    f"photos"
)


def _glean(name: str, in_size: int, out_size: int, **kwargs: Any) -> Preset:
    return Preset(name=name, config=GLEANConfig(in_size=in_size, out_size=out_size), **kwargs)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        _glean(
            "glean_cat_8x",
            32,
            256,
            category="cat",
            description="8x bicubic SR of cats (LSUN-cat bank), test set Cat100",
            url=_GLEAN_URL + "glean_cat_8x_20210614-d3ac8683.pth",
            sha256_prefix="d3ac8683",
            psnr=23.98,
        ),
        _glean(
            "glean_ffhq_16x",
            64,
            1024,
            category="face",
            description="16x bicubic SR of aligned faces (FFHQ bank), test set CelebA-HQ val100",
            url=_GLEAN_URL + "glean_ffhq_16x_20210527-61a3afad.pth",
            sha256_prefix="61a3afad",
            psnr=26.91,
        ),
        _glean(
            "glean_cat_16x",
            16,
            256,
            category="cat",
            description="16x bicubic SR of cats (LSUN-cat bank), test set Cat100",
            url=_GLEAN_URL + "glean_cat_16x_20210527-68912543.pth",
            sha256_prefix="68912543",
            psnr=20.88,
        ),
        _glean(
            "glean_in128out1024_4x2_300k_ffhq_celebahq",
            128,
            1024,
            category="face",
            description="blind restoration of real aligned faces, 128 -> 1024 (FFHQ bank)",
            url=_GLEAN_URL + "glean_in128out1024_4x2_300k_ffhq_celebahq_20210812-acbcb04f.pth",
            sha256_prefix="acbcb04f",
            psnr=27.94,
        ),
    ]
}

#: The demo: trained by glean-sr itself (recipes glyphs32 and glyphs_glean_4x), stored in fp16
#: in the package, so it works with no network.
PRESETS[DEMO_MODEL] = Preset(
    DEMO_MODEL,
    GLEANConfig(
        in_size=8,
        out_size=32,
        rrdb_channels=32,
        num_rrdbs=2,
        style_channels=256,
        num_mlps=4,
        channel_table=((4, 128), (8, 128), (16, 64), (32, 32)),
        bank_img_channels=1,
    ),
    "glyph",
    "demo: 4x SR of 8 px character glyphs (A-Z, a-z, 0-9), glean-sr's own bank and restorer",
    packaged="glyphs_4x",
)

#: LightGLEAN (TPAMI 2023, Sec. 4) at the released GLEAN configurations. No weights were
#: released for it: these are architectures to build and train (``glean-sr train``).
for _name, _in, _out, _cat in [
    ("lightglean_cat_8x", 32, 256, "cat"),
    ("lightglean_ffhq_16x", 64, 1024, "face"),
    ("lightglean_cat_16x", 16, 256, "cat"),
    ("lightglean_in128out1024_ffhq_celebahq", 128, 1024, "face"),
]:
    PRESETS[_name] = Preset(
        _name,
        LightGLEANConfig(in_size=_in, out_size=_out),
        _cat,
        f"LightGLEAN {_in} -> {_out} (architecture only, no released weights)",
    )


#: GLEAN colorizers (TPAMI 2023, Sec. 5.4) around the released 256 px StyleGAN2 banks: L in,
#: RGB out at 256 x 256. No weights were released: architectures to train (``glean-sr train
#: glean_colorizer_<category>``) and then to run with ``glean-sr colorize``.
for _name, _cat in [
    ("glean_colorizer_cat_256", "cat"),
    ("glean_colorizer_church_256", "church"),
    ("glean_colorizer_horse_256", "horse"),
]:
    PRESETS[_name] = Preset(
        _name,
        GLEANColorizerConfig(out_size=256),
        _cat,
        f"GLEAN colorizer 256 px, stylegan2_{_cat}_256 bank (architecture only, no released "
        f"weights)",
    )

#: GLEAN with a BigGAN bank (TPAMI 2023, Sec. 5.3, Table 6): one restorer for ImageNet's 1000
#: classes, 256 px out, around BigGAN-PyTorch's 256 px generator (G_ch 96, hierarchical z of
#: 140, attention at 64 px). No weights were released, and no BigGAN-PyTorch G.pth at 256 px:
#: architectures to train (``glean-sr train glean_biggan_imagenet_<4x|8x>``) with a bank of that
#: architecture.
for _name, _in in [("glean_biggan_imagenet_8x", 32), ("glean_biggan_imagenet_4x", 64)]:
    PRESETS[_name] = Preset(
        _name,
        GLEANBigGANConfig(in_size=_in, out_size=256),
        "imagenet",
        f"GLEAN-BigGAN {_in} -> 256 for ImageNet classes (architecture only, no released weights)",
    )

#: LightGLEAN with the same BigGAN bank (TPAMI 2023, Sec. 4 and 5.3, Table 6): architectures to
#: train (``glean-sr train lightglean_biggan_imagenet_<4x|8x>``); no weights were released.
for _name, _in in [("lightglean_biggan_imagenet_8x", 32), ("lightglean_biggan_imagenet_4x", 64)]:
    PRESETS[_name] = Preset(
        _name,
        LightGLEANBigGANConfig(in_size=_in, out_size=256),
        "imagenet",
        f"LightGLEAN-BigGAN {_in} -> 256 for ImageNet classes (architecture only, no released "
        f"weights)",
    )

_REALESRGAN_URL = "https://github.com/xinntao/Real-ESRGAN/releases/download/"

#: General upscalers for whole photos and the background behind restored faces: Real-ESRGAN's
#: released generators (BasicSR ``RRDBNet``, ``{"params_ema": ...}``), which take any size. The
#: release names no checksum; the SHA-256 here is the full digest of each released file as
#: third-party download manifests record it (67,040,989 and 67,061,725 bytes).
UPSAMPLER_PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "realesrgan_x4plus",
            RealESRGANConfig(scale=4),
            "general",
            "Real-ESRGAN x4plus: x4 blind SR of real photos (any size)",
            _REALESRGAN_URL + "v0.1.0/RealESRGAN_x4plus.pth",
            "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        ),
        Preset(
            "realesrgan_x2plus",
            RealESRGANConfig(scale=2),
            "general",
            "Real-ESRGAN x2plus: x2 blind SR of real photos (any size)",
            _REALESRGAN_URL + "v0.2.1/RealESRGAN_x2plus.pth",
            "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
        ),
    ]
}
PRESETS.update(UPSAMPLER_PRESETS)


#: Official StyleGAN2 config-f banks as converted by OpenMMLab (mmagic layout: ``generator.*``,
#: ``generator_ema.*``, ``discriminator.*``). GLEAN training starts from ``generator_ema``.
BANK_PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "stylegan2_ffhq_1024",
            StyleGAN2Config(resolution=1024),
            "face",
            "StyleGAN2 config-f trained on FFHQ 1024",
            _BANK_URL + "stylegan2-ffhq-config-f-official_20210327_171224-bce9310c.pth",
            "bce9310c",
        ),
        Preset(
            "stylegan2_cat_256",
            StyleGAN2Config(resolution=256),
            "cat",
            "StyleGAN2 config-f trained on LSUN cat 256",
            _BANK_URL + "stylegan2-cat-config-f-official_20210327_172444-15bc485b.pth",
            "15bc485b",
        ),
        Preset(
            "stylegan2_car_512",
            StyleGAN2Config(resolution=512),
            "car",
            "StyleGAN2 config-f trained on LSUN car (512 x 384 padded to 512)",
            _BANK_URL + "stylegan2-car-config-f-official_20210327_172340-8cfe053c.pth",
            "8cfe053c",
        ),
        Preset(
            "stylegan2_horse_256",
            StyleGAN2Config(resolution=256),
            "horse",
            "StyleGAN2 config-f trained on LSUN horse 256",
            _BANK_URL + "stylegan2-horse-config-f-official_20210327_173203-ef3e69ca.pth",
            "ef3e69ca",
        ),
        Preset(
            "stylegan2_church_256",
            StyleGAN2Config(resolution=256),
            "church",
            "StyleGAN2 config-f trained on LSUN church 256",
            _BANK_URL + "stylegan2-church-config-f-official_20210327_172657-1d42b7d1.pth",
            "1d42b7d1",
        ),
    ]
}


def register_preset(preset: Preset) -> None:
    """Add an architecture-only or downloadable preset (used by model families added later)."""
    PRESETS[preset.name] = preset


def find_preset_for_config(config: Any) -> str | None:
    """Name of the first preset whose architecture equals ``config``, if any."""
    for name, preset in PRESETS.items():
        if preset.config == config:
            return name
    return None
