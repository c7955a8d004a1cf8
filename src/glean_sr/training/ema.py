"""Exponential moving average of the trainable weights (optional; not used by the reference).

``shadow = decay * shadow + (1 - decay) * weight`` after every optimiser step. Only trainable
parameters are averaged: the bank is frozen and buffers never change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class EMA:
    def __init__(self, params: dict[str, nn.Parameter], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.params = params
        self.shadow = {name: p.detach().clone().float() for name, p in params.items()}

    @torch.no_grad()
    def update(self) -> None:
        for name, p in self.params.items():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Temporarily put the averaged weights into the model (for validation and export)."""
        with torch.no_grad():
            saved = {name: p.detach().clone() for name, p in self.params.items()}
            for name, p in self.params.items():
                p.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(saved[name])

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ValueError("EMA state does not match the trainable parameters")
        for name, value in state.items():
            self.shadow[name].copy_(value)


__all__ = ["EMA"]
