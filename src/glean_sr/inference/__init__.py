"""Inference on real images: :class:`~glean_sr.inference.upscaler.Upscaler`, whole-photo face
restoration (:mod:`.faces`), and many files at once (:mod:`.batch`).

This package's ``__init__`` holds only the option names (no torch import), so the command line
can offer them without loading PyTorch.
"""

#: how an image of another size is brought to the model's input size
RESIZE_METHODS = ("error", "bicubic", "area")
#: how a non-square image is made square
FIT_MODES = ("crop", "pad")
#: inference precisions
PRECISION_NAMES = ("fp32", "bf16", "fp16")
#: output file formats of the batch commands (file suffixes without the dot)
OUTPUT_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp")
#: how a face crop is brought to the face model's input size
FACE_RESIZES = ("auto", "area", "bicubic")
#: how a face's square is found from its landmarks
ALIGNMENTS = ("ffhq", "template")
#: dlib's face detectors
DETECTORS = ("hog", "cnn")
