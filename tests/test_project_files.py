"""The repository's tracked files: a clone tests itself, and its text describes the software.

Project files say what the software does and how to use and measure it, never how, when or on
which machines it was developed (git keeps the history). The phrases below are the forms such
narration takes; each is tight enough not to catch ordinary text ("scope='session'",
``ort.InferenceSession``, "this machine has 1 CUDA device").
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()

NARRATION = [
    r"(?<![\"'])\bsessions?\b(?!\s*=[^=]|\.\w|\(|[\"'])",  # not `session = ...`, `session.run(`
    r"\b(is|was|were|being) developed\b",
    r"\bdeveloped on\b",
    r"\bearlier (runs?|sessions?|sittings?|tries|attempts)\b",
    r"\b(was|were) tried\b",
    r"\b(we|I) tried\b",
    r"\btried and not kept\b",
    r"\blab diary\b",
    r"\bon this (shared |quiet |busy )?(virtual )?machine\b",
    r"\bshared (virtual )?machine\b",
    r"\b(quiet|busy|quietest|busiest) (machine|stretch|stretches|runs?|minutes)\b",
    r"\bmachine (is|was) (quiet|busy)\b",
    r"\bthis project's (machines?|VM|[\w-]*-core|CPU|first)\b",
    r"\b(the|our) (dev|development) (machine|box|VM)\b",
    r"\bour (machines?|VM|team)\b",
    r"\bthe team\b",
    r"\bsittings? of\b",
]
NARRATION_RE = re.compile("|".join(f"(?:{p})" for p in NARRATION), re.IGNORECASE)


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (git ls-files)")
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()


def text_files() -> list[str]:
    return [
        f
        for f in tracked_files()
        if (f.endswith((".py", ".md", ".toml", ".sh")) or f.startswith(".ci/"))
        and f != THIS_FILE
        and (ROOT / f).is_file()
    ]


def narration_hits(lines: list[str]) -> list[tuple[int, str]]:
    return [(i, m.group(0)) for i, line in enumerate(lines, 1) if (m := NARRATION_RE.search(line))]


def test_phrases_catch_narration_and_spare_ordinary_text():
    narration = [
        "Measured in the sixth session's quiet runs.",
        "the 2-core machine this project is developed on",
        "1.8-2.4 s when the shared machine is busy",
        "Tried and not kept in the ninth session (ad-hoc scripts):",
        "An earlier session had tried the same; earlier runs were slower.",
        "(this project's VM: the peak alone measured 450)",
        "in a quiet stretch: 1.67 s; then three sittings of twelve",
        "the CPU build on this project's machines",
        "Real released weights cannot be downloaded on this machine.",
    ]
    ordinary = [
        '@pytest.fixture(scope="session")',
        'session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])',
        'got = session.run(["sr"], {"lq": lq.numpy()})[0]',
        'raise ConfigError(f"no {dev}: this machine has 1 CUDA device(s)")',
        "fp32 on a 2-core CPU, torch 2.13: 1.2 s per image",
        "mmengine.logging.history_buffer.HistoryBuffer",
        "the machine's 3x3-conv throughput, measured before the models",
    ]
    assert [i for i, _ in narration_hits(narration)] == list(range(1, len(narration) + 1))
    assert narration_hits(ordinary) == []


def test_project_files_do_not_narrate_development():
    hits = []
    for name in text_files():
        lines = (ROOT / name).read_text(encoding="utf-8", errors="replace").splitlines()
        hits += [f"{name}:{i}: {phrase!r}" for i, phrase in narration_hits(lines)]
    assert not hits, "project files describe the software, not its development:\n" + "\n".join(hits)


def test_tests_read_their_data_from_the_repository():
    """A clone runs its tests: nothing under tests/ reads the sibling ../shared folder, and
    every file in tests/data is tracked (not caught by .gitignore)."""
    files = tracked_files()
    outside = re.compile(r"\.\./shared|[\"']shared[\"']|GLEAN_SR_SHARED")
    found = [
        f"{f}:{i}"
        for f in files
        if f.startswith("tests/") and f.endswith(".py") and f != THIS_FILE
        for i, line in enumerate((ROOT / f).read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert found == []
    data = ROOT / "tests" / "data"
    on_disk = {p.relative_to(ROOT).as_posix() for p in data.rglob("*") if p.is_file()}
    assert on_disk, "tests/data is missing"
    assert sorted(on_disk - set(files)) == []
