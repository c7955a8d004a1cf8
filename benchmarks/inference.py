"""Inference latency and peak memory of glean-sr presets: the CPU fast path against the plain
definition, side by side in one run.

    python benchmarks/inference.py                                   # glean_ffhq_16x, glean_cat_8x
    python benchmarks/inference.py --preset glean_cat_8x --ablate    # + each part switched off
    python benchmarks/inference.py --json rows.json --device cuda    # plain only on GPUs

Every measurement runs in a fresh child process, so that its peak memory is its own, and the
variants of a preset take turns (``--rounds`` rounds of every variant), so that a machine whose
speed drifts affects all of them alike. Weights are seeded random draws: building a preset
downloads nothing (see ``build_preset`` for why the draws are scaled).

Variants: ``plain`` is the model as :mod:`glean_sr.models` defines it; ``fast`` is
:class:`glean_sr.inference.cpu_fast.CPUFastPath` (what ``glean-sr upscale`` runs on a CPU). With
``--ablate``: ``fast-unbanded`` and ``fast-nchw`` switch one part of the fast
path off (:class:`~glean_sr.inference.cpu_fast.Options`), and ``fast+malloc`` runs the fast
path with glibc's allocator told to keep freed memory (``GLIBC_TUNABLES``, see
``MALLOC_TUNABLES``), an opt-in of the command line that glean-sr never sets itself.

Columns: ``latency_s``, the median over rounds of each child's median over ``--repeats`` timed
runs (after ``--warmup`` untimed ones); ``peak_rss_mib``, the child's peak resident memory
(``VmHWM``) from just before the first run to the end, so model weights plus the largest
working set of inference (on CUDA: the allocator's peak); ``gflops``, 2 x the multiply-
accumulates of one forward (glean_sr.analysis); ``x_plain``, ``latency_s`` and
``peak_rss_mib`` as a ratio to the ``plain`` row of the same preset.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: the opt-in allocator setting measured by ``fast+malloc``: no block gets its own mapping,
#: the heap's free top is not handed back, no per-thread caches of small blocks
MALLOC_TUNABLES = (
    "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824:glibc.malloc.tcache_count=0"
)
#: variant -> (fast path options or None for the plain model, extra environment)
VARIANTS: dict[str, tuple[dict | None, dict[str, str]]] = {
    "plain": (None, {}),
    "fast": ({}, {}),
    "fast-unbanded": ({"rows": 1 << 20}, {}),
    "fast-nchw": ({"channels_last": False}, {}),
    "fast+malloc": ({}, {"GLIBC_TUNABLES": MALLOC_TUNABLES}),
}
DEFAULT_PRESETS = ["glean_ffhq_16x", "glean_cat_8x"]


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM``; Linux), or ``ru_maxrss`` elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> None:
    """Start ``VmHWM`` again from the current resident size (Linux >= 4.0; else no-op)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def build_preset(name: str, device):
    """The preset's architecture with seeded unit-variance weights (``N(0, 1 / fan_in)`` for
    plain layers, ``N(0, 1)`` for the equalized-lr ones), so that activations stay O(1) through
    the network as with trained weights: the default initialisation of a deep RRDB trunk shrinks
    them into float32's subnormal range, where CPUs compute many times slower."""
    import torch

    from glean_sr.models.registry import build_model
    from glean_sr.presets import PRESETS

    model = build_model(PRESETS[name].config, device="meta").to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
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


def measure(args: argparse.Namespace) -> dict:
    """The child: build, run and time one preset in one variant; returns its row."""
    import gc

    import torch

    from glean_sr.inference.cpu_fast import CPUFastPath, Options

    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    model = build_preset(args.preset, device)
    options, _ = VARIANTS[args.variant]
    run = model if options is None else CPUFastPath(model, Options(**options))
    lq = torch.rand(args.batch, 3, model.in_size, model.in_size, device=device) * 2 - 1
    gc.collect()
    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def once() -> float:
        start = time.perf_counter()
        with torch.no_grad(), torch.autocast(device.type, dtype, enabled=args.precision != "fp32"):
            run(lq)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for _ in range(args.warmup):
        once()
    latency = statistics.median(once() for _ in range(args.repeats))
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()
    return {"latency_s": latency, "peak_rss_bytes": peak}


def gflops(preset: str) -> float:
    from glean_sr.analysis import count_macs
    from glean_sr.models.registry import build_model
    from glean_sr.presets import PRESETS

    model = build_model(PRESETS[preset].config, device="meta")
    return 2 * count_macs(model)["macs"] / 1e9


def child_row(args: argparse.Namespace, preset: str, variant: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--preset", preset, "--variant", variant]
    cmd += ["--batch", str(args.batch), "--precision", args.precision, "--device", args.device]
    cmd += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **VARIANTS[variant][1]}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{preset} {variant} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", nargs="+", default=DEFAULT_PRESETS)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ablate", action="store_true", help="also switch each part off")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="run exactly these")
    parser.add_argument("--rounds", type=int, default=2, help="turns of every variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per child")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per child (median)")
    parser.add_argument("--json", type=Path, help="also write the rows as a JSON list here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="fast", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.preset = args.preset[0]
        print(json.dumps(measure(args)))
        return 0

    variants = args.variants or (list(VARIANTS) if args.ablate else ["plain", "fast"])
    if args.device != "cpu":  # the fast path is the CPU's
        variants = [v for v in variants if v == "plain"]
    import torch

    print(f"# torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
          f"{args.precision}, batch {args.batch}, {args.rounds} rounds")  # fmt: skip
    header = f"{'preset':24} {'variant':14} {'latency_s':>9} {'x_plain':>7} "
    print(header + f"{'peak_rss_mib':>12} {'x_plain':>7} {'gflops':>8}")
    rows = []
    for preset in args.preset:
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for variant in variants:
                runs[variant].append(child_row(args, preset, variant))
        flops = gflops(preset)
        table = {
            v: {
                "latency_s": statistics.median(r["latency_s"] for r in rs),
                "latency_all_s": [r["latency_s"] for r in rs],
                "peak_rss_bytes": max(r["peak_rss_bytes"] for r in rs),
            }
            for v, rs in runs.items()
        }
        base = table.get("plain")
        for variant, row in table.items():
            row.update(preset=preset, variant=variant, batch=args.batch, gflops=flops,
                       precision=args.precision, device=args.device)  # fmt: skip
            if base:
                row["latency_x_plain"] = row["latency_s"] / base["latency_s"]
                row["peak_rss_x_plain"] = row["peak_rss_bytes"] / base["peak_rss_bytes"]
            rows.append(row)
            print(
                f"{preset:24} {variant:14} {row['latency_s']:9.3f} "
                f"{row.get('latency_x_plain', float('nan')):7.2f} "
                f"{row['peak_rss_bytes'] / 2**20:12.0f} "
                f"{row.get('peak_rss_x_plain', float('nan')):7.2f} {flops:8.1f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
