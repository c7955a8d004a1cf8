"""Evaluation: full-reference and no-reference image quality metrics and ``evaluate()``.

Modules are imported on use: ``metrics`` (PSNR, SSIM, Y conversion), ``niqe`` (NIQE),
``lpips``, ``fid`` (InceptionV3 + Frechet distance) and ``arcface`` (iresnet), networks written
here for user-supplied weight files (read by ``weightfiles``), ``identity`` (dlib face
descriptors), ``scorers`` (the optional metrics of a run), ``evaluate`` (the ``glean-sr eval``
pipeline) and ``report`` (its HTML page).
"""
