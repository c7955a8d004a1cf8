"""glean_sr.models.heap: freed activations are reused instead of faulted in afresh (glibc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import SRC
from glean_sr import process
from glean_sr.process import TCACHE_OFF, lean_heap_environ

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


# In a child process: a 64 MB block is freed, 40 000 small blocks are carved from its region
# and freed again, the last-made first; then 64 MB is asked for again. The first few of those
# frees land in glibc's per-thread cache, which counts them as in use.
PIN_SCRIPT = textwrap.dedent(
    """
    import ctypes, json
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
    libc.mallopt(-4, 0)  # M_MMAP_MAX 0, as glean_sr.models.heap.reuse_freed_memory sets
    libc.mallopt(-1, 1 << 30)
    big, count = 64 << 20, 40_000
    small = (ctypes.c_void_p * count)()  # made first: nothing else lands in the region
    block = libc.malloc(big)
    # A fence right after the block keeps it, once freed, from merging into the heap's top.
    # Small requests are served from free chunks left by the interpreter's start first, and
    # where those lie differs between machines: ask until one comes from right after the block.
    fence, tries = libc.malloc(4096), 1
    while not block + big <= fence < block + big + 8192:
        fence, tries = libc.malloc(4096), tries + 1
        assert tries < 10_000, "no small block came from after the big one"
    libc.free(block)
    for i in range(count):
        small[i] = libc.malloc(300)
    carved = sum(block <= small[i] < block + big for i in range(count))
    for i in reversed(range(count)):
        libc.free(small[i])
    top = libc.sbrk(0)
    libc.malloc(big)
    print(json.dumps({"carved": carved, "grew": libc.sbrk(0) - top, "tries": tries}))
    """
)


def _pin(**env_vars: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env.update(env_vars)
    out = subprocess.run(
        [sys.executable, "-c", PIN_SCRIPT], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout)


def test_cached_small_blocks_pin_a_freed_region_unless_the_cache_is_off():
    """Why the inference commands run with glibc's small-block caches off
    (glean_sr.process): with them, a freed 64 MB region that small blocks were carved from
    cannot serve the next 64 MB block, and the heap grows by 64 MB."""
    cached = _pin()
    assert cached["carved"] > 30_000  # the small blocks came from the freed region
    assert cached["grew"] >= 64 << 20
    off = _pin(GLIBC_TUNABLES=lean_heap_environ({})["GLIBC_TUNABLES"])
    assert off["carved"] > 30_000 and off["grew"] == 0


def test_lean_heap_environ_adds_the_tunable_once_and_respects_the_user():
    assert lean_heap_environ({"A": "1"}) == {"A": "1", "GLIBC_TUNABLES": TCACHE_OFF}
    other = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert lean_heap_environ(other)["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TCACHE_OFF}"
    assert lean_heap_environ({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=3"}) is None
    assert lean_heap_environ({"GLIBC_TUNABLES": TCACHE_OFF}) is None
    assert lean_heap_environ({"GLEAN_SR_REUSE_HEAP": "0"}) is None


# The command line as a program: prints its process id and tunables, then runs glean-sr.
CLI_SCRIPT = textwrap.dedent(
    """
    import os, sys
    print("start", os.getpid(), os.environ.get("GLIBC_TUNABLES"), flush=True)
    sys.argv = ["glean-sr", *sys.argv[1:]]
    from glean_sr.cli import main
    main()
    """
)


@pytest.mark.parametrize(
    "args,env_vars,reruns",
    [
        (["--debug", "upscale", "--help"], {}, True),
        (["eval", "--help"], {}, True),
        (["info", "--help"], {}, False),
        (["upscale", "--help"], {"GLEAN_SR_REUSE_HEAP": "0"}, False),
    ],
)
def test_inference_commands_rerun_themselves_with_the_cache_off(args, env_vars, reruns):
    env = {**os.environ, "PYTHONPATH": str(SRC), **env_vars}
    env.pop("GLIBC_TUNABLES", None)
    out = subprocess.run(
        [sys.executable, "-c", CLI_SCRIPT, *args], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    starts = [line.split() for line in out.stdout.splitlines() if line.startswith("start ")]
    if reruns:  # the same process (exec), the second time with the tunable
        assert [s[1] for s in starts] == [starts[0][1]] * 2
        assert [s[2] for s in starts] == ["None", TCACHE_OFF]
    else:
        assert [s[2] for s in starts] == ["None"]
    assert "usage: glean-sr" in out.stdout


def test_rerun_goes_on_when_the_process_cannot_be_started_again(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("GLEAN_SR_REUSE_HEAP", raising=False)
    monkeypatch.setattr(process, "is_glibc", lambda: True)
    calls = []

    def failing_execve(path, argv, env):
        calls.append((path, argv, env["GLIBC_TUNABLES"]))
        raise OSError("exec format error")

    monkeypatch.setattr(process.os, "execve", failing_execve)
    process.rerun_with_lean_heap(["python", "-m", "glean_sr", "upscale"])  # returns
    assert calls == [(sys.executable, ["python", "-m", "glean_sr", "upscale"], TCACHE_OFF)]
    process.rerun_with_lean_heap([])  # no command line to run again (embedded): nothing tried
    assert len(calls) == 1
