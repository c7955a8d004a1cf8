"""Library calls leave the process alone: importing glean_sr, restoring an image with an
``Upscaler`` and running ``evaluate`` change neither the environment nor glibc's allocator.

A program that imports glean_sr to restore one image must not inherit a changed ``malloc``.
The calls run in a fresh interpreter so that no other test interferes; the allocator is
probed there before and after them, through ``mallinfo2`` (glibc >= 2.33):

- a 64 MiB ``malloc`` is served by its own mapping (``hblks`` goes up by one), as it is by
  default (the mmap threshold is at most 32 MiB); ``mallopt(M_MMAP_MAX, 0)`` would stop that;
- about 250 MiB of 100 KiB blocks freed in reverse order are handed back to the system
  (the heap's ``arena`` shrinks back to within the trim threshold, which glibc keeps at or
  below 64 MiB); a raised ``M_TRIM_THRESHOLD`` would keep them. Part of the blocks may reuse
  free space the heap already had, so what counts is the growth that is handed back.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import SRC

MIB = 1 << 20

SCRIPT = r"""
import ctypes, json, os, sys

import numpy as np
import torch  # third-party imports come first: only glean_sr's doings are measured


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
    )]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
C_ENVIRON = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")


def c_environ():
    out, i = [], 0
    while C_ENVIRON[i] is not None:
        out.append(C_ENVIRON[i].decode("utf-8", "replace"))
        i += 1
    return sorted(out)


def allocator():
    hblks = libc.mallinfo2().hblks
    block = libc.malloc(64 << 20)
    mapped = libc.mallinfo2().hblks - hblks
    libc.free(block)
    blocks = (ctypes.c_void_p * 2500)()
    start = libc.mallinfo2().arena
    for i in range(len(blocks)):
        blocks[i] = libc.malloc(100 << 10)
    grown = libc.mallinfo2().arena - start
    for i in reversed(range(len(blocks))):
        libc.free(blocks[i])
    released = start + grown - libc.mallinfo2().arena
    return {"big_block_mapped": mapped, "heap_grown": grown, "heap_released": released}


model_dir, gt_dir, out_dir = sys.argv[1:4]
before = {"environ": dict(os.environ), "c_environ": c_environ(), "allocator": allocator()}

import glean_sr
from glean_sr.evaluation.evaluate import EvalOptions, evaluate

model = glean_sr.load_model(model_dir)
upscaler = glean_sr.Upscaler(model, device="cpu")
lq = np.random.default_rng(0).integers(0, 256, (model.in_size, model.in_size, 3), dtype=np.uint8)
sr, _ = upscaler(lq)
summary = evaluate(
    [model], gt_dir, out_dir, options=EvalOptions(device="cpu", report_images=1), progress=False
)

after = {"environ": dict(os.environ), "c_environ": c_environ(), "allocator": allocator()}
print(json.dumps({"before": before, "after": after, "sr_shape": list(sr.shape),
                  "summary": sorted(summary)}))
"""


def _has_mallinfo2() -> bool:
    if platform.libc_ver()[0] != "glibc":
        return False
    return hasattr(ctypes.CDLL(None), "mallinfo2")


@pytest.fixture(scope="module")
def probed(tiny_model_dir, tmp_path_factory):
    if not _has_mallinfo2():
        pytest.skip("the allocator probe needs glibc >= 2.33 (mallinfo2)")
    gt_dir = tmp_path_factory.mktemp("gt")
    rng = np.random.default_rng(1)
    for k in range(2):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # the tiny model's out_size
        Image.fromarray(pixels).save(gt_dir / f"{k}.png")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    out_dir = tmp_path_factory.mktemp("report") / "r"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_model_dir), str(gt_dir), str(out_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["sr_shape"] == [32, 32, 3]  # the calls really ran
    assert (out_dir / "summary.json").is_file()
    return result


@pytest.mark.slow
def test_environment_is_unchanged(probed):
    before, after = probed["before"], probed["after"]
    added = sorted(set(after["environ"]) - set(before["environ"]))
    removed = sorted(set(before["environ"]) - set(after["environ"]))
    changed = sorted(
        k for k in set(before["environ"]) & set(after["environ"])
        if before["environ"][k] != after["environ"][k]
    )  # fmt: skip
    assert (added, removed, changed) == ([], [], [])
    assert after["c_environ"] == before["c_environ"]  # putenv/setenv from C code too


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
def test_allocator_has_glibc_defaults(probed, when):
    probe = probed[when]["allocator"]
    assert probe["big_block_mapped"] == 1, "a 64 MiB block was not mmapped: M_MMAP_MAX changed?"
    assert probe["heap_grown"] >= 128 * MIB, probe
    assert probe["heap_released"] >= probe["heap_grown"] - 65 * MIB, (
        f"freed heap was kept ({probe}): M_TRIM_THRESHOLD raised?"
    )
