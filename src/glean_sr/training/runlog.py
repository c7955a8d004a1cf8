"""What a run reports, from rank 0 only: ``log.jsonl`` (one JSON object per event: start/resume,
train, val, checkpoint, final), TensorBoard scalars (the ``train`` extra) and a progress bar
with the losses and the speed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError


def check_tensorboard() -> None:
    """Fail before training starts when TensorBoard logging is asked for but not installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "TensorBoard logging needs the optional package 'tensorboard': install it with "
            "pip install 'glean-sr[train]', or set train.tensorboard=false"
        ) from None


class RunLog:
    def __init__(
        self,
        out_dir: Path,
        *,
        active: bool,
        tensorboard: bool,
        progress_bar: bool,
        total_steps: float,
        start_step: float,
        name: str,
        unit: str = "it",
    ):
        self.active = active
        self.writer = None
        self.bar = None
        if not active:
            return
        self.file = open(out_dir / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"))
        if progress_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc=name, unit=unit)

    def event(self, kind: str, step: int, **values: Any) -> None:
        """Record one event; numbers also go to TensorBoard as ``kind/name``."""
        if not self.active:
            return
        self.file.write(json.dumps({"event": kind, "step": step, **values}) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)
        if self.bar is not None and kind == "train":
            shown = {k.removeprefix("loss_"): f"{v:.4g}" for k, v in values.items() if "loss" in k}
            if "img_s" in values:  # bank training: images per second beside the kimg count
                shown["img/s"] = f"{values['img_s']:.1f}"
            self.bar.set_postfix(shown, refresh=False)
        elif self.bar is not None and kind == "val":
            self.bar.write(f"step {step}: PSNR {values['psnr']:.3f} dB, SSIM {values['ssim']:.4f}")

    def note(self, text: str) -> None:
        """A line for the person watching (above the progress bar when there is one)."""
        if not self.active:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def image(self, tag: str, img: Any, step: int) -> None:
        """An ``[H, W, 3]`` uint8 picture to TensorBoard (when it is on)."""
        if self.active and self.writer is not None:
            self.writer.add_image(tag, img, step, dataformats="HWC")

    def advance(self, n: float = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if not self.active:
            return
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        self.file.close()


__all__ = ["RunLog", "check_tensorboard"]
