"""``glean-sr eval -m MODEL [-m MODEL2 ...] --gt GT_DIR [--lq LQ_DIR] -o REPORT_DIR``; under
``torchrun --nproc-per-node N -m glean_sr eval ...`` the processes share the images out and rank 0
writes the one report."""

from __future__ import annotations

import argparse
import os

from ..presets import DEMO_MODEL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score models against ground truth (PSNR/SSIM/NIQE/LPIPS/FID/identity), "
        "with a CSV, a JSON summary and an HTML report",
        description="Restore the LQ version of every GT image with each model and score it. "
        "Without --lq, LQ is made from GT with MATLAB-compatible bicubic at the models' factor "
        "(the released models' protocol); bicubic up-sampling is always scored as a baseline. "
        "The defaults (PSNR and SSIM on RGB, no border crop) reproduce the README numbers.",
    )
    p.add_argument(
        "-m",
        "--model",
        action="append",
        required=True,
        dest="models",
        metavar="MODEL",
        help=f"preset name, model directory, weight file, URL or Hub repo (owner/repo, "
        f"hf://owner/repo/file.pth; repeat to compare models); "
        f"{DEMO_MODEL} is the demo that ships with glean-sr",
    )
    p.add_argument(
        "--gt",
        required=True,
        metavar="GT_DIR",
        help="folder of ground-truth images (out_size square)",
    )
    p.add_argument(
        "--lq", metavar="LQ_DIR", help="folder of LQ inputs named like the GT files (default: made)"
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="REPORT_DIR", help="report folder to write"
    )
    p.add_argument(
        "--metrics",
        default="psnr,ssim",
        help="comma-separated: psnr, ssim, niqe, lpips, fid, identity (dlib), arcface, chars "
        "(character accuracy and glyph FID, with --glyph-classifier) (default: psnr,ssim)",
    )
    p.add_argument(
        "--channel",
        choices=("rgb", "y", "both"),
        default="rgb",
        help="PSNR/SSIM on RGB (the release), on BT.601 Y (many SR papers) or both",
    )
    p.add_argument(
        "--crop-border", type=int, default=0, metavar="N", help="pixels cut from each edge"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="images restored at once")
    p.add_argument(
        "--plain",
        action="store_true",
        help="run the networks' plain definition on the CPU instead of the fast path",
    )
    p.add_argument(
        "--report-images", type=int, default=8, metavar="N", help="images shown in report.html"
    )
    p.add_argument(
        "--crop-size", type=int, default=256, metavar="N", help="crop side shown per image"
    )
    p.add_argument(
        "--lpips-weights", metavar="FILE", help="lpips package's v0.1 alex.pth or vgg.pth"
    )
    p.add_argument(
        "--lpips-backbone", metavar="FILE", help="torchvision's alexnet/vgg16 ImageNet .pth"
    )
    p.add_argument(
        "--fid-weights", metavar="FILE", help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid)"
    )
    p.add_argument(
        "--arcface-weights", metavar="FILE", help="insightface arcface_torch iresnet backbone.pth"
    )
    p.add_argument(
        "--glyph-classifier",
        metavar="DIR",
        help="classifier of the chars metric (glean-sr train-glyph-classifier's output)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import GleanError
    from ..evaluation.evaluate import EvalOptions, evaluate
    from ..inference.sharding import Shard

    metrics = tuple(m.strip().lower() for m in args.metrics.split(",") if m.strip())
    if any(_is_colorizer(m) for m in args.models):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # it would run whole in every process
            raise GleanError("eval of colorizers runs in one process: start it without torchrun")
        return _run_colorization(args, metrics)
    options = EvalOptions(
        metrics=metrics,
        channel=args.channel,
        crop_border=args.crop_border,
        device=args.device,
        batch_size=args.batch_size,
        fast=not args.plain,
        report_images=args.report_images,
        crop_size=args.crop_size,
        lpips_weights=args.lpips_weights,
        lpips_backbone=args.lpips_backbone,
        fid_weights=args.fid_weights,
        arcface_weights=args.arcface_weights,
        glyph_classifier=args.glyph_classifier,
        overwrite=args.overwrite,
    )
    # under torchrun each process scores its part of the images; rank 0 writes the report
    with Shard.join(args.device) as shard:
        summary = evaluate(
            args.models,
            args.gt,
            args.output,
            lq_dir=args.lq,
            options=options,
            progress=not args.quiet,
            shard=shard,
        )
    if not shard.is_main:
        return 0
    return _print_summary(summary, args.output)


def _print_summary(summary: dict, output: str) -> int:
    from ..evaluation.evaluate import HTML_NAME

    columns = summary["columns"]
    width = max(len(m) for m in summary["results"])
    print(f"{'method':<{width}}  " + "  ".join(f"{c:>12}" for c in columns))
    for method, row in summary["results"].items():
        cells = []
        for c in columns:
            v = row.get(c)
            cells.append(f"{'-' if v is None else f'{v:.4f}':>12}")
        print(f"{method:<{width}}  " + "  ".join(cells))
    for s in summary["skipped"]:
        print(f"skipped {s['image']}: {s['reason']}")
    print(
        f"{summary['num_images']} images in {summary['seconds']:.1f} s; report: "
        f"{output}/{HTML_NAME}"
    )
    return 1 if summary["skipped"] else 0


def _is_colorizer(source: str) -> bool:
    from ..evaluation.colorization import is_colorizer_source

    return is_colorizer_source(source)


def _run_colorization(args: argparse.Namespace, metrics: tuple[str, ...]) -> int:
    """Colorizers: PSNR/SSIM on RGB and colourfulness against colour photos."""
    from ..errors import GleanError
    from ..evaluation.colorization import evaluate_colorization

    if not all(_is_colorizer(m) for m in args.models):
        raise GleanError("-m: colorizers and super-resolution models cannot share one report")
    unsupported = [
        name
        for name, used in [
            ("--lq", args.lq is not None),
            (f"--metrics {','.join(metrics)}", set(metrics) - {"psnr", "ssim", "lpips"}),
            (f"--channel {args.channel}", args.channel != "rgb"),
            ("--crop-border", args.crop_border != 0),
        ]
        if used
    ]
    if "lpips" in metrics and not args.lpips_weights:
        raise GleanError("--metrics lpips needs --lpips-weights (the lpips package's v0.1 file)")
    if unsupported:
        raise GleanError(
            f"a colorizer is scored with PSNR and SSIM on RGB, colourfulness and (given "
            f"--lpips-weights) LPIPS, from the GT's own L*; {', '.join(unsupported)} does not apply"
        )
    summary = evaluate_colorization(
        args.models,
        args.gt,
        args.output,
        device=args.device,
        report_images=args.report_images,
        crop_size=args.crop_size,
        overwrite=args.overwrite,
        lpips_weights=args.lpips_weights if "lpips" in metrics else None,
        lpips_backbone=args.lpips_backbone,
    )
    return _print_summary(summary, args.output)
