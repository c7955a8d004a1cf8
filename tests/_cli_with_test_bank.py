"""TEMPORARY entry point: ``glean-sr`` with the test bank reader installed as ``glean_sr.load_bank``
(until the bank loader of issue 4 is merged; then tests call ``python -m glean_sr`` directly)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import glean_sr
import training_helpers

glean_sr.load_bank = training_helpers.provisional_load_bank

from glean_sr.cli import main  # noqa: E402

sys.exit(main())
