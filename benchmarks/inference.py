"""Inference speed and memory of glean-sr presets, against this machine's 3x3-conv throughput.

    python benchmarks/inference.py                       # every preset, batch 1 and 4, fp32 (+bf16)
    python benchmarks/inference.py --preset glean_ffhq_16x --batch 1 --precision fp32
    python benchmarks/inference.py --json results.json --device cuda

Each configuration runs in a fresh child process so that its peak memory is its own: process
peak RSS (``VmHWM``, see ``peak_rss_bytes``) on CPU, the allocator's peak on GPU. Weights are
deterministic (seeded normal draws); building a preset downloads nothing. Latency is the median
over ``--repeats`` runs after ``--warmup`` runs. ``gflops`` is 2 x the counted
multiply-accumulates of every convolution and matrix product (see glean_sr.analysis);
``conv_peak_gflops_per_s`` is the best throughput of plain 3x3 convolutions measured in the same
run, on shapes that occur in GLEAN, interleaved with the timed runs: after each timed run the
measured process waits while this one times the convolutions, so that both figures come from the
same minutes of a machine whose speed drifts (see ``ConvProbe``). On the CPU the measured
process keeps freed memory for reuse as ``glean_sr.Upscaler`` does, and runs with the glibc
tunable the ``glean-sr`` inference commands set for themselves
(``GLIBC_TUNABLES=glibc.malloc.tcache_count=0``, see glean_sr.process);
``GLEAN_SR_REUSE_HEAP=0`` in the environment measures without both (see glean_sr.models.heap).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: (batch, channels, size) of the 3x3 convolutions used to measure the machine's conv throughput
CONV_SHAPES = [(1, 64, 512), (1, 128, 256), (1, 256, 128), (1, 512, 64)]
FORMATS = [torch.contiguous_format, torch.channels_last]
#: what the measured process prints when it waits for the parent's conv probe
PAUSE = "pause for the conv probe"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dtype(precision: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class ConvProbe:
    """Best GFLOP/s of a plain 3x3 convolution (C -> C, padding 1) over CONV_SHAPES, in both
    memory formats (NCHW and channels-last): each :meth:`measure` times every shape ``runs``
    times after one untimed run (so weights and code are warm); :meth:`peak` is the best
    shape's median over all measurements so far.

    The benchmark measures between the model's timed runs, in its own process while the
    measured one waits, so that the peak and the model's throughput are taken in the same
    minutes: on a shared machine both drift (this project's VM: the peak alone measured
    396-488 GFLOP/s in consecutive invocations), and a peak taken a quarter of a minute
    earlier made the ratio swing with it.
    """

    def __init__(self, device: torch.device, precision: str, runs: int = 2):
        self.device, self.runs = device, runs
        dtype = _dtype(precision)
        self.cases = []
        for (n, c, s), fmt in [(shape, fmt) for shape in CONV_SHAPES for fmt in FORMATS]:
            conv = torch.nn.Conv2d(c, c, 3, padding=1).to(device, dtype, memory_format=fmt)
            x = torch.randn(n, c, s, s, device=device, dtype=dtype).contiguous(memory_format=fmt)
            self.cases.append((conv, x, 2 * n * c * c * 9 * s * s, []))

    def reset(self) -> None:
        """Forget the measurements so far (each row of the table has its own)."""
        for _, _, _, times in self.cases:
            times.clear()

    def measure(self) -> None:
        with torch.no_grad():
            for conv, x, _, times in self.cases:
                conv(x)
                _sync(self.device)
                for _ in range(self.runs):
                    t0 = time.perf_counter()
                    conv(x)
                    _sync(self.device)
                    times.append(time.perf_counter() - t0)

    def peak(self) -> float:
        return max(flops / statistics.median(times) / 1e9 for _, _, flops, times in self.cases)


def build_preset(name: str, device: torch.device) -> torch.nn.Module:
    """The preset's architecture with seeded N(0, 1/fan_in) weights; no download."""
    from glean_sr.models.registry import build_model
    from glean_sr.presets import PRESETS

    model = build_model(PRESETS[name].config, device="meta")
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # in place: no temporaries, so the process holds just the weights
        for key, t in sorted(model.state_dict(keep_vars=True).items()):
            if key.endswith(".kernel"):
                k = torch.tensor([1.0, 3.0, 3.0, 1.0])
                t.copy_(k[None] * k[:, None] / 16)  # every GLEAN FIR kernel: outer / 64 * 4
            elif key.endswith(("weight_orig", ".input", ".z")) or "injected_noise" in key:
                t.normal_(0.0, 1.0, generator=g)
            elif key.endswith(".weight") and t.ndim >= 2:
                t.normal_(0.0, 1.0 / t[0].numel() ** 0.5, generator=g)
            elif key.endswith("style_modulation.bias"):
                t.fill_(1.0)
            else:
                t.normal_(0.0, 0.1, generator=g)
    return model.to(device).eval()


def run_one(
    preset: str,
    batch: int,
    precision: str,
    device_name: str,
    warmup: int,
    repeats: int,
    compile: bool = False,
    pause: Callable[[], None] | None = None,
):
    """Measure one configuration in this process; returns a result row (without the FLOP
    columns: the parent counts them, so that the counting machinery's memory is not in this
    process's peak). ``pause`` is called after each timed run (the parent's conv probe)."""
    from glean_sr.models.heap import reuse_freed_memory

    device = torch.device(device_name)
    torch.manual_seed(0)
    model = build_preset(preset, device)
    if device.type == "cpu":  # as Upscaler.from_pretrained does, once the model is loaded
        reuse_freed_memory()
        model.store_weights_channels_last()
    run = torch.compile(model) if compile else model  # the warm-up runs compile
    lq = torch.rand(batch, 3, model.in_size, model.in_size, device=device) * 2 - 1
    dtype = _dtype(precision)
    # as the Upscaler runs it: no cast cache (see glean_sr.inference.upscaler)
    enabled = precision != "fp32"
    autocast = torch.autocast(device.type, dtype=dtype, enabled=enabled, cache_enabled=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with torch.no_grad(), autocast:
        for i in range(warmup + repeats):
            _sync(device)
            t0 = time.perf_counter()
            run(lq)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                if pause is not None:
                    pause()
    latency = statistics.median(times)
    peak_rss = peak_rss_bytes()
    row = {
        "preset": preset,
        "device": device_name,
        "batch": batch,
        "precision": precision,
        "latency_s": latency,
        "images_per_s": batch / latency,
        "peak_rss_bytes": peak_rss,
        "gpu_peak_bytes": torch.cuda.max_memory_allocated(device)
        if device.type == "cuda"
        else None,
        "threads": torch.get_num_threads(),
        "compiled": compile,
    }
    return row


def peak_rss_bytes() -> int:
    """This process's peak resident memory: ``VmHWM`` of ``/proc/self/status`` where there is
    one. ``ru_maxrss`` also keeps the peak of the process this one was started from (Linux
    carries it across ``exec``), so a child would report at least its parent's peak: the
    parent's convolution probes alone hold 768 MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, else KiB


def _child(args: argparse.Namespace) -> int:
    def pause() -> None:  # let the parent time its convolutions while this process waits
        print(PAUSE, flush=True)
        sys.stdin.readline()

    row = run_one(
        args.preset[0], args.batch[0], args.precision[0], args.device, args.warmup,
        args.repeats, compile=args.compile, pause=pause,
    )  # fmt: skip
    print(json.dumps(row), flush=True)
    return 0


def run_child(cmd: list[str], env: dict[str, str], probe: ConvProbe) -> tuple[int, str, str]:
    """Run a ``--child`` command, measuring ``probe`` each time it pauses; returns
    ``(returncode, its last stdout line, its stderr)``."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=env
        )
        assert proc.stdin is not None and proc.stdout is not None
        last = ""
        for line in proc.stdout:
            if line.strip() == PAUSE:
                probe.measure()
                proc.stdin.write("\n")
                proc.stdin.flush()
            elif line.strip():
                last = line.strip()
        proc.stdin.close()
        code = proc.wait()
        err.seek(0)
        return code, last, err.read()


def supported_precisions(device: str) -> list[str]:
    if device.startswith("cuda"):
        out = ["fp32", "fp16"]
        if torch.cuda.is_bf16_supported():
            out.append("bf16")
        return out
    # CPU: bf16 autocast is supported everywhere but only fast with AVX512-BF16/AMX; fp16 conv
    # kernels on CPU are reference implementations, so only bf16 is offered.
    return ["fp32", "bf16"]


def main() -> int:
    from glean_sr.analysis import count_macs
    from glean_sr.models.registry import build_model
    from glean_sr.presets import PRESETS
    from glean_sr.process import lean_heap_environ

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset", nargs="*", default=None,
        help="default: the released presets and lightglean_ffhq_16x",
    )  # fmt: skip
    parser.add_argument("--batch", nargs="*", type=int, default=[1, 4])
    parser.add_argument("--precision", nargs="*", default=None, help="fp32 bf16 fp16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--warmup", type=int, default=2,
        help="untimed runs first (default 2: on the CPU the second run can still fault in "
             "64 MB of fresh heap; from the third the heap is settled)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is kept")
    parser.add_argument("--json", type=Path, help="also write the rows as a JSON list here")
    parser.add_argument("--compile", action="store_true", help="torch.compile each model first")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)

    # the released models, and LightGLEAN at the size of TPAMI Table 5
    presets = args.preset or [n for n, p in PRESETS.items() if p.url] + ["lightglean_ffhq_16x"]
    precisions = args.precision or supported_precisions(args.device)
    device = torch.device(args.device)
    probes = {p: ConvProbe(device, p) for p in precisions}
    meta = {name: build_model(PRESETS[name].config, device="meta") for name in presets}
    rows = []
    header = (
        f"{'preset':44s} {'batch':>5s} {'prec':>5s} {'latency s':>10s} {'img/s':>7s} "
        f"{'peak MiB':>9s} {'GFLOP':>8s} {'GFLOP/s':>8s} {'conv peak':>9s} {'ratio':>6s}"
    )
    # each configuration runs as the glean-sr commands run (glean_sr.process)
    env = lean_heap_environ() or dict(os.environ)
    tunables = env.get("GLIBC_TUNABLES")
    print(
        f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}"
        + (f", GLIBC_TUNABLES={tunables}" if tunables else "")
    )
    print(header)
    for preset in presets:
        for batch in args.batch:
            for precision in precisions:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    "--preset",
                    preset,
                    "--batch",
                    str(batch),
                    "--precision",
                    precision,
                    "--device",
                    args.device,
                    "--warmup",
                    str(args.warmup),
                    "--repeats",
                    str(args.repeats),
                    *(["--compile"] if args.compile else []),
                ]
                probe = probes[precision]
                probe.reset()
                code, last, stderr = run_child(cmd, env, probe)
                if code != 0:
                    print(
                        f"{preset:44s} {batch:5d} {precision:>5s} failed: "
                        f"{stderr.strip().splitlines()[-1:]}"
                    )
                    continue
                row = json.loads(last)
                peak = probe.peak()
                row["glibc_tunables"] = tunables
                row["gflops"] = 2 * count_macs(meta[preset], batch=batch)["macs"] / 1e9
                row["achieved_gflops_per_s"] = row["gflops"] / row["latency_s"]
                row["conv_peak_gflops_per_s"] = peak
                row["ratio_to_conv_peak"] = row["achieved_gflops_per_s"] / peak
                rows.append(row)
                memory = row["gpu_peak_bytes"] or row["peak_rss_bytes"]
                print(
                    f"{preset:44s} {batch:5d} {precision:>5s} {row['latency_s']:10.3f} "
                    f"{row['images_per_s']:7.3f} {memory / 2**20:9.0f} {row['gflops']:8.1f} "
                    f"{row['achieved_gflops_per_s']:8.1f} {peak:9.1f} "
                    f"{row['ratio_to_conv_peak']:6.3f}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
