"""glean_sr.models.heap: freed activations are reused instead of faulted in afresh (glibc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import SRC

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the heap settings are glibc's"
)

# In a child process: the setting is process-wide and permanent. Counts the minor page faults of
# writing a freshly allocated 64 MB tensor six times after a first time. Reused, the heap may
# grow by one more such block (a small block placed in the first freed region can make it too
# short) and then serves every round from the two.
SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from glean_sr.models.heap import release_free_memory, reuse_freed_memory
    took = reuse_freed_memory() if sys.argv[1] == "reuse" else False
    again = reuse_freed_memory() if took else False
    def faults_of_fill():
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(16 * 2**20).fill_(1.0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    faults_of_fill()
    release_free_memory(torch.zeros(1))  # kept memory is not handed back while reusing
    faults = sum(faults_of_fill() for _ in range(6))
    print(json.dumps({"took": took, "again": again, "faults": faults}))
    """
)


def _run(mode: str, **env_vars: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC), **env_vars}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout)


def test_reused_memory_is_not_faulted_in_again():
    plain, reused = _run("plain"), _run("reuse")
    assert plain["faults"] > 6 * 15_000  # 16 384 pages of 4 KB, mapped and zeroed each time
    assert reused["took"] and reused["again"]
    assert reused["faults"] < 16_384 + 1_000  # at most one block's worth, once


def test_reuse_can_be_switched_off():
    off = _run("reuse", GLEAN_SR_REUSE_HEAP="0")
    assert not off["took"] and off["faults"] > 6 * 15_000
