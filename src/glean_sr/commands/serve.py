"""``glean-sr serve [-m MODEL ...] [--host 127.0.0.1 --port 7860]``: the web demo and HTTP API
(:mod:`glean_sr.serve`; ``pip install 'glean-sr[web]'``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from ..inference import PRECISION_NAMES
from ..presets import DEMO_HELP, DEMO_MODEL
from .options import positive_int


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from ..serve import CACHE_MINUTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES

    p = sub.add_parser(
        "serve",
        help="a web demo (upscale, faces, colorize) whose endpoints are also an HTTP API",
        description="Serve a gradio page with a tab for each kind of work the models can do "
        "(upscale; faces for the fixed-size models; colorize for colorizers): upload, choose "
        "the model and options, compare before and after, download the result. Each tab's "
        "endpoint (/upscale, /faces, /colorize) is also the HTTP API (gradio_client or curl; "
        "the page's 'Use via API' link lists them). Needs pip install 'glean-sr[web]'. "
        f"Uploads and results are deleted from the server after {CACHE_MINUTES} minutes.",
    )
    p.add_argument(
        "-m",
        "--model",
        action="append",
        dest="models",
        metavar="MODEL",
        help=f"a model to offer (repeat for several): preset name, model directory, weight "
        f"file, URL or Hub repo ({DEMO_HELP})",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this computer only; 0.0.0.0 for all)",
    )
    p.add_argument("--port", type=_port, default=7860, help="port (default 7860)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=PRECISION_NAMES, default="fp32", help="(default fp32)")
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=1,
        help="requests restored at once, all tabs together (default 1); others wait in the queue",
    )
    p.add_argument(
        "--max-queue",
        type=positive_int,
        default=16,
        help="requests that may wait (default 16); more are refused until there is room",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        help=f"refuse larger uploaded images, from their headers (default: "
        f"$GLEAN_SR_MAX_PIXELS, else {DEFAULT_MAX_PIXELS:,} = 2048 x 2048)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
        metavar="MB",
        help=f"refuse larger uploads (MiB; default {DEFAULT_MAX_UPLOAD_BYTES / 2**20:g})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import limits
    from ..errors import ConfigError
    from ..serve import DEFAULT_MAX_PIXELS, ServeOptions, serve

    if not 0 < args.max_upload_mb <= 1 << 20:
        raise ConfigError(f"--max-upload-mb must be a positive number, got {args.max_upload_mb}")
    max_pixels = args.max_pixels
    if max_pixels is None and os.environ.get("GLEAN_SR_MAX_PIXELS", "").strip():
        max_pixels = limits.max_pixels()  # else a server's own default, below
    options = ServeOptions(
        models=tuple(args.models or [DEMO_MODEL]),
        device=args.device,
        precision=args.precision,
        max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
        max_upload_bytes=max(1, round(args.max_upload_mb * 2**20)),
        concurrency=args.concurrency,
        max_queue=args.max_queue,
    )
    # a stop by SIGTERM (a service manager, kill) cleans up as Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    def ready(url: str) -> None:
        print(f"serving {', '.join(options.models)} on {url} ({options.describe_limits()})")
        print(f"API: {url}/?view=api  (Ctrl-C stops)", flush=True)

    serve(options, host=args.host, port=args.port, on_ready=ready)  # until Ctrl-C or SIGTERM
    return 0
