"""Inference on real images: :class:`~glean_sr.inference.upscaler.Upscaler`.

This package's ``__init__`` holds only the option names (no torch import), so the command line
can offer them without loading PyTorch.
"""

#: how an image of another size is brought to the model's input size
RESIZE_METHODS = ("error", "bicubic", "area")
#: how a non-square image is made square
FIT_MODES = ("crop", "pad")
#: inference precisions
PRECISION_NAMES = ("fp32", "bf16", "fp16")
