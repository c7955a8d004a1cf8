"""Evaluation: full-reference and no-reference image quality metrics and ``evaluate()``.

Modules are imported on use: ``metrics`` (PSNR, SSIM, Y conversion), ``niqe`` (NIQE),
``networks`` (LPIPS, FID's InceptionV3, ArcFace iresnet, built from user-supplied weight files),
``identity`` (dlib face descriptors) and ``evaluate`` (the ``glean-sr eval`` pipeline).
"""
