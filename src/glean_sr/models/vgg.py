"""VGG16 ``features`` (Simonyan & Zisserman, ICLR 2015, configuration D), for the perceptual loss.

Written here so glean-sr does not depend on torchvision; the module indices are torchvision's, so
its ImageNet file ``vgg16-397923af.pth`` loads key for key (``features.{0,2,5,...,28}``):

    index  0  2     5   7      10  12  14      17  19  21      24  26  28
    conv   64 64 M  128 128 M  256 256 256 M  512 512 512 M   512 512 512 M
    name   1_1 1_2  2_1 2_2    3_1 3_2 3_3    4_1 4_2 4_3     5_1 5_2 5_3

(odd indices after a conv are ReLUs, ``M`` a 2x2 max-pool). GLEAN's perceptual loss reads
``features[21]`` = conv4_3 *before* its ReLU, so only ``features[:22]`` is built by default.
"""

from __future__ import annotations

from torch import Tensor, nn

#: torchvision's VGG16 ``features``: output channels per conv, "M" for max-pooling.
VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)  # fmt: skip

#: ``features`` index of conv4_3 (GLEAN's perceptual layer, read before its ReLU)
CONV4_3 = 21

#: ImageNet statistics the VGG weights were trained with (RGB, images in [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _build_features(num_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(item)
    return nn.Sequential(*layers[:num_layers])


class VGG16Features(nn.Module):
    """The first ``num_layers`` modules of VGG16 ``features`` (torchvision indices and keys).

    ``forward(x: [N, 3, H, W])`` returns the output of the last built module, e.g. conv4_3 before
    its ReLU ``[N, 512, H/8, W/8]`` for the default ``num_layers = 22``. The input is used as
    given: normalisation is the caller's business (see :class:`glean_sr.training.losses`).
    """

    def __init__(self, num_layers: int = CONV4_3 + 1):
        super().__init__()
        total = 2 * sum(1 for v in VGG16_LAYOUT if v != "M") + VGG16_LAYOUT.count("M")
        if not 1 <= num_layers <= total:
            raise ValueError(f"num_layers must be in [1, {total}], got {num_layers}")
        self.features = _build_features(num_layers)

    @property
    def num_layers(self) -> int:
        return len(self.features)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG16 input must be [N, 3, H, W], got {list(x.shape)}")
        return self.features(x)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}"


__all__ = ["CONV4_3", "IMAGENET_MEAN", "IMAGENET_STD", "VGG16_LAYOUT", "VGG16Features"]
