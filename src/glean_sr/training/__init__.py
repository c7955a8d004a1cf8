"""Training GLEAN: recipes, the loop, losses, checkpoints, data-parallel helpers.

``glean_sr.training.train(load_recipe("glean_cat_8x", ["bank.source=..."]))`` is what
``glean-sr train`` runs. Submodules are imported on first use so that importing the package
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Recipe": "glean_sr.training.recipe",
    "load_recipe": "glean_sr.training.recipe",
    "recipe_names": "glean_sr.training.recipe",
    "train": "glean_sr.training.loop",
    "export_checkpoint": "glean_sr.training.parts",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'glean_sr.training' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_EXPORTS)
