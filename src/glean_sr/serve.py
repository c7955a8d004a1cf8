"""``glean-sr serve``: a web demo whose endpoints are also the HTTP API (gradio; ``pip install
'glean-sr[web]'``).

The page has a tab per kind of work the ``-m`` models can do:

* ``upscale`` (API ``/upscale``): every restorer (a GLEAN model of a fixed input size, or a
  general upscaler that takes any size), as ``glean-sr upscale`` runs it;
* ``faces`` (API ``/faces``): the fixed-size models as face models, as ``glean-sr faces`` runs
  them (needs the ``faces`` extra);
* ``colorize`` (API ``/colorize``): the colorizer models, when this glean-sr has
  ``glean_sr.Colorizer``.

Each shows the input and the result side by side in a comparison slider and offers the result
as a file to download, written exactly as the command writes it (the same bytes for the same
input and options). A problem with the input is the command's one-line error, shown in the
page (and returned to API clients as the error message).

Limits, all stated at start-up: an upload larger than ``max_upload_bytes`` is refused by
gradio before it is stored; an image with more than ``max_pixels`` pixels is refused from its
header before it is decoded (:func:`glean_sr.io.read_image`); requests wait in one queue of at
most ``max_queue`` and run ``concurrency`` at a time, across all tabs.

Files: each request works in a temporary folder of its own, removed once gradio has taken the
result. Gradio keeps uploads and results in this server's own cache folder (created private,
under the system's temporary folder, removed when the server stops), deletes files older than
:data:`CACHE_MINUTES`, and serves each only under its unguessable cache path, which only the page
or client that made the request receives.

:class:`Restorers` does the work and knows nothing of gradio; :func:`build_app` is the page.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, GleanError, missing_extra
from .inference import ALIGNMENTS, FACE_RESIZES, FIT_MODES, PRECISION_NAMES, RESIZE_METHODS
from .presets import DEMO_MODEL

#: the default pixel limit of an uploaded image (2048 x 2048): a server's memory is shared
DEFAULT_MAX_PIXELS = 2048 * 2048
#: the default upload limit in bytes
DEFAULT_MAX_UPLOAD_BYTES = 20 << 20
#: gradio's cached uploads and results older than this are deleted (checked as often)
CACHE_MINUTES = 15
#: the comparison slider shows images at most this many pixels on their long side
DISPLAY_MAX_SIDE = 2048

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """What ``glean-sr serve`` loads and how it limits the work.

    Attributes:
        models: ``-m`` model sources (anything :func:`glean_sr.load_model` takes); their names
            in the page and the API are these strings.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        max_pixels: width x height an uploaded image may have.
        max_upload_bytes: bytes an upload may have.
        concurrency: requests run at once (all tabs together); more wait in the queue.
        max_queue: requests that may wait; more are refused until the queue has room.
    """

    models: tuple[str, ...] = (DEMO_MODEL,)
    device: str = "auto"
    precision: str = "fp32"
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    concurrency: int = 1
    max_queue: int = 16

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("give at least one model (-m MODEL)")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"a model is given twice: {', '.join(self.models)}")
        if self.precision not in PRECISION_NAMES:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISION_NAMES)}, got {self.precision!r}"
            )
        for name in ("max_pixels", "max_upload_bytes", "concurrency", "max_queue"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")

    def describe_limits(self) -> str:
        from .limits import format_bytes

        return (
            f"uploads up to {format_bytes(self.max_upload_bytes)} and {self.max_pixels:,} "
            f"pixels; {self.concurrency} request(s) at a time, up to {self.max_queue} waiting"
        )


@dataclass
class Outcome:
    """One restored image: ``before`` and ``after`` for the comparison (the same size),
    ``result`` to write, its file name, and what was done in words (the command's line)."""

    before: Any  # ImageData
    after: Any  # ImageData
    result: Any  # ImageData
    name: str
    text: str


def colorizer_class() -> type | None:
    """``glean_sr.Colorizer`` when this glean-sr has one, else ``None``."""
    import glean_sr

    return getattr(glean_sr, "Colorizer", None)


class Restorers:
    """The ``-m`` models, loaded once on the device, and the work of each tab.

    A model is offered where it fits: restorers (anything :class:`~glean_sr.Upscaler` takes) in
    ``upscale``, those of a fixed input size also in ``faces``, colorizers (with
    ``predict_ab``) in ``colorize``.

    Raises:
        GleanError: a model that cannot be loaded, or that no tab can use.
    """

    def __init__(self, options: ServeOptions, *, progress: bool = True):
        from .devices import resolve_device
        from .weights.pretrained import load_model

        self.options = options
        self.device = resolve_device(options.device)
        self.models: dict[str, Any] = {}
        self.upscale_names: list[str] = []
        self.face_names: list[str] = []
        self.colorize_names: list[str] = []
        for source in options.models:
            model = load_model(source, device=self.device, progress=progress)
            self.models[source] = model
            if hasattr(model, "predict_ab"):
                if colorizer_class() is None:
                    raise ConfigError(f"{source}: a colorizer, but this glean-sr cannot colorize")
                self.colorize_names.append(source)
            elif hasattr(model, "img_channels") and hasattr(model, "out_size"):
                self.upscale_names.append(source)
                if hasattr(model, "in_size"):
                    self.face_names.append(source)
            elif hasattr(model, "img_channels") and hasattr(model, "scale"):
                self.upscale_names.append(source)  # a general upscaler (any size)
            else:
                raise ConfigError(f"{source}: not a restorer or colorizer glean-sr can serve")
        self._detector = None
        self._faces_lock = threading.Lock()  # one dlib detector, used by one request at a time

    def _model(self, name: str, names: list[str], what: str) -> Any:
        if name not in names:
            offered = ", ".join(names) or "none"
            raise ConfigError(f"model {name!r} is not served for {what} (served: {offered})")
        return self.models[name]

    def _read(self, path: str | os.PathLike) -> Any:
        from .io import read_image

        return read_image(path, max_pixels=self.options.max_pixels)

    def upscale(
        self,
        path: str | os.PathLike,
        model: str,
        *,
        resize: str = "bicubic",
        fit: str | None = "pad",
        outscale: float | None = None,
        tile: int | None = None,
    ) -> Outcome:
        """Restore one image file as ``glean-sr upscale -m MODEL`` does. ``resize`` and ``fit``
        apply to a fixed-size model and ``tile`` to one that takes any size; each is ignored
        for the other kind."""
        from PIL import Image

        from .inference.upscaler import Upscaler
        from .io import from_pil, to_pil

        net = self._model(model, self.upscale_names, "upscale")
        fixed = hasattr(net, "in_size")
        upscaler = Upscaler(
            net,
            device=self.device,
            precision=self.options.precision,
            resize=resize if fixed else "error",
            fit=fit if fixed else None,
            tile=tile if not fixed else None,
            outscale=outscale,
        )
        image = self._read(path)
        [result] = upscaler.upscale([image])
        sr = result.data
        # the input as its pixels look enlarged (nearest), the size of the result
        before = from_pil(to_pil(image).resize((sr.width, sr.height), Image.Resampling.NEAREST))
        factor = f"{outscale:g}" if outscale is not None else upscaler.scale
        text = "; ".join([image.describe(), *result.record.steps])
        return Outcome(before, sr, sr, f"{Path(path).stem}_x{factor}.png", text)

    def faces(
        self,
        path: str | os.PathLike,
        model: str,
        *,
        upscale: int = 2,
        only_center_face: bool = False,
        face_resize: str = "auto",
        alignment: str = "ffhq",
    ) -> Outcome:
        """Restore every face of one photo as ``glean-sr faces -m MODEL`` does (bicubic
        background)."""
        from .inference.faces import DlibFaceDetector, FaceRestorer

        net = self._model(model, self.face_names, "faces")
        image = self._read(path)
        with self._faces_lock:
            if self._detector is None:
                self._detector = DlibFaceDetector()
            restorer = FaceRestorer(
                net,
                upscale=upscale,
                detector=self._detector,
                resize=face_resize,
                alignment=alignment,
                only_center_face=only_center_face,
                device=self.device,
                precision=self.options.precision,
            )
            result = restorer(image)
        text = "; ".join([image.describe(), *result.record.steps])
        name = f"{Path(path).stem}_faces.png"
        return Outcome(result.background, result.data, result.data, name, text)

    def colorize(self, path: str | os.PathLike, model: str) -> Outcome:
        """Colorize one photo as ``glean-sr colorize -m MODEL`` does."""
        net = self._model(model, self.colorize_names, "colorize")
        colorizer = colorizer_class()(net, device=self.device, precision=self.options.precision)
        image = self._read(path)
        data, record = colorizer.colorize_data(image)
        text = "; ".join([image.describe(), *record.steps])
        return Outcome(image, data, data, f"{Path(path).stem}_color.png", text)


def _display(image: Any, path: Path) -> Path:
    """An 8-bit PNG of ``image`` for the page, at most :data:`DISPLAY_MAX_SIDE` pixels on its
    long side (Lanczos)."""
    from PIL import Image

    from .io import to_pil

    pil = to_pil(image.replace(bit_depth=8, icc_profile=None))
    side = max(pil.size)
    if side > DISPLAY_MAX_SIDE:
        scale = DISPLAY_MAX_SIDE / side
        size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
        pil = pil.resize(size, Image.Resampling.LANCZOS)
    pil.save(path, format="PNG")
    return path


def one_line(exc: BaseException, upload: str | os.PathLike | None) -> str:
    """The error line for the page: the command's message, with the server's path of the
    upload shortened to its file name."""
    text = str(exc)
    if isinstance(exc, GleanError):
        return text.replace(str(upload), Path(upload).name) if upload else text
    return (
        f"internal error: {type(exc).__name__}: {text} (the server's log has the details; "
        f"please report it)"
    )


def run_request(work: Callable[[], Outcome], upload: str | None) -> Iterator[tuple]:
    """The work of one request in a temporary folder of its own: yields ``((before, after),
    result file, text)`` for gradio, which copies the files into its cache; the folder is
    removed when gradio asks for more (or drops the request)."""
    import gradio as gr

    from .io import write_image

    if not upload:
        raise gr.Error("upload an image first")
    folder = Path(tempfile.mkdtemp(prefix="glean-sr-request-"))
    try:
        try:
            outcome = work()
            write_image(outcome.result, folder / outcome.name)
        except Exception as exc:
            if not isinstance(exc, GleanError):
                log.exception("request failed")
            raise gr.Error(one_line(exc, upload), print_exception=False) from None
        before = _display(outcome.before, folder / "before.png")
        after = _display(outcome.after, folder / "after.png")
        yield (str(before), str(after)), str(folder / outcome.name), outcome.text
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _gradio():
    try:
        import gradio as gr
    except ImportError:
        raise missing_extra("gradio", "web") from None
    return gr


def build_app(restorers: Restorers) -> Any:
    """The page: a ``gradio.Blocks`` with a tab per kind of work (see the module docstring)."""
    gr = _gradio()
    from . import __version__

    options = restorers.options
    queue = {"concurrency_limit": options.concurrency, "concurrency_id": "restore"}

    def image_input() -> Any:
        # the upload as it came (no conversion): glean-sr reads it as the commands do
        return gr.Image(
            type="filepath", image_mode=None, sources=["upload", "clipboard"], label="Input"
        )

    def results() -> tuple[Any, Any, Any]:
        with gr.Column():
            slider = gr.ImageSlider(label="Before / after", type="filepath", format="png")
            file = gr.File(label="Result (download)")
            text = gr.Textbox(label="What was done", lines=2)
        return slider, file, text

    with gr.Blocks(title="glean-sr", analytics_enabled=False, delete_cache=_cache_rule()) as app:
        gr.Markdown(
            f"# glean-sr {__version__}\n"
            f"Large-factor restoration with generative latent banks (GLEAN). "
            f"Limits: {options.describe_limits()}."
        )
        if restorers.upscale_names:
            with gr.Tab("upscale"), gr.Row():
                with gr.Column():
                    upload = image_input()
                    model = gr.Dropdown(
                        restorers.upscale_names, value=restorers.upscale_names[0], label="Model"
                    )
                    resize = gr.Dropdown(
                        list(RESIZE_METHODS),
                        value="bicubic",
                        label="Resize (a GLEAN model's input size)",
                        info="error: refuse other sizes; bicubic: MATLAB-compatible; area",
                    )
                    fit = gr.Dropdown(
                        ["none", *FIT_MODES],
                        value="pad",
                        label="Fit (a non-square image, GLEAN models)",
                        info="none: refuse it; crop: the centred square; pad: mirror out",
                    )
                    outscale = gr.Number(
                        0, label="Output scale", info="0: the model's factor", minimum=0
                    )
                    tile = gr.Number(
                        0, label="Tile", info="0: whole; models that take any size", minimum=0
                    )
                    run = gr.Button("Restore", variant="primary")
                outputs = results()

            def upscale(path, model, resize, fit, outscale, tile):
                work = lambda: restorers.upscale(  # noqa: E731
                    path,
                    model,
                    resize=resize,
                    fit=None if fit == "none" else fit,
                    outscale=float(outscale) if outscale else None,
                    tile=int(tile) if tile else None,
                )
                yield from run_request(work, path)

            run.click(
                upscale,
                [upload, model, resize, fit, outscale, tile],
                list(outputs),
                api_name="upscale",
                **queue,
            )
        if restorers.face_names:
            with gr.Tab("faces"), gr.Row():
                with gr.Column():
                    upload = image_input()
                    model = gr.Dropdown(
                        restorers.face_names, value=restorers.face_names[0], label="Face model"
                    )
                    upscale_by = gr.Slider(1, 16, value=2, step=1, label="Enlarge the photo")
                    center = gr.Checkbox(False, label="Only the face nearest the centre")
                    face_resize = gr.Dropdown(list(FACE_RESIZES), value="auto", label="Face resize")
                    alignment = gr.Dropdown(list(ALIGNMENTS), value="ffhq", label="Alignment")
                    run = gr.Button("Restore faces", variant="primary")
                outputs = results()

            def faces(path, model, upscale_by, center, face_resize, alignment):
                work = lambda: restorers.faces(  # noqa: E731
                    path,
                    model,
                    upscale=int(upscale_by),
                    only_center_face=bool(center),
                    face_resize=face_resize,
                    alignment=alignment,
                )
                yield from run_request(work, path)

            run.click(
                faces,
                [upload, model, upscale_by, center, face_resize, alignment],
                list(outputs),
                api_name="faces",
                **queue,
            )
        if restorers.colorize_names:
            with gr.Tab("colorize"), gr.Row():
                with gr.Column():
                    upload = image_input()
                    model = gr.Dropdown(
                        restorers.colorize_names, value=restorers.colorize_names[0], label="Model"
                    )
                    run = gr.Button("Colorize", variant="primary")
                outputs = results()

            def colorize(path, model):
                yield from run_request(lambda: restorers.colorize(path, model), path)

            run.click(colorize, [upload, model], list(outputs), api_name="colorize", **queue)
    app.queue(max_size=options.max_queue, default_concurrency_limit=options.concurrency)
    return app


def _cache_rule() -> tuple[int, int]:
    """gradio's ``delete_cache``: (how often, older than), in seconds."""
    return CACHE_MINUTES * 60, CACHE_MINUTES * 60


def serve(
    options: ServeOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Load the models, build the page and serve it until interrupted.

    Gradio's cache goes to a private folder of this server (``GRADIO_TEMP_DIR``), removed
    when it stops. Pillow's own decompression-bomb check is switched off in this process, so
    that the pixel limit of ``options`` (checked from the header by
    :func:`glean_sr.io.read_image`) is the one that counts, with its one-line message.
    """
    _gradio()  # the extra's one-line error before any model is loaded
    from PIL import Image

    restorers = Restorers(options)
    cache = tempfile.mkdtemp(prefix="glean-sr-serve-")  # mode 0700
    os.environ["GRADIO_TEMP_DIR"] = cache
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    Image.MAX_IMAGE_PIXELS = None
    try:
        app = build_app(restorers)
        app.launch(
            server_name=host,
            server_port=port,
            max_file_size=options.max_upload_bytes,
            ssr_mode=False,
            show_error=False,
            prevent_thread_lock=True,
            quiet=True,
        )
        if on_ready is not None:
            on_ready(f"http://{host}:{port}")
        app.block_thread()
    finally:
        shutil.rmtree(cache, ignore_errors=True)


__all__ = [
    "CACHE_MINUTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "Outcome",
    "Restorers",
    "ServeOptions",
    "build_app",
    "colorizer_class",
    "one_line",
    "run_request",
    "serve",
]
