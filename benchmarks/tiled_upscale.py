"""Peak memory of ``glean-sr upscale --tile`` at two photo sizes: what grows with the photo and
what does not.

    python benchmarks/tiled_upscale.py                        # 1500 x 1000 and 3000 x 2000, x4
    python benchmarks/tiled_upscale.py --sizes 800x600 3000x2000 --tile 256 --json rows.json

Each size runs the command line as a user does (``glean-sr upscale PHOTO -m MODEL --tile N``,
in-process in a fresh child process, so its peak memory is its own) on a photo made from
scikit-image's astronaut resized to that size (PNG), with a narrow RRDBNet x4 (``--channels``,
``--blocks``; seeded weights scaled as in tests/test_background.py, so the output is an image and
not a clipped flat one) saved as a glean-sr model directory. A narrow network keeps the run to
minutes on a CPU.

Columns: ``peak_rss_mib``, the child's peak resident memory (``VmHWM``) over the whole command:
the interpreter and PyTorch, the model, reading the photo, the tiled run, and writing the PNG
band by band; ``output_mpix``, output pixels in millions; ``seconds``, the command's wall time.
The output is never whole in memory, so what can grow with the photo is the photo itself and the
band of one row of tiles. Each row shows them as sizes computed from the geometry: ``band_mib``,
the float32 band (``(tile + 2 * (tile_pad // 2)) * 4`` output rows by the output width, 12 bytes
per RGB pixel), ``photo_mib``, the decoded photo (Pillow's 4 bytes per pixel while decoding, the
8-bit array and the float32 pixels: 19 bytes per input pixel), and ``rest_mib``, the peak less
both: the same at every size when nothing else grows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


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


def make_inputs(folder: Path, sizes: list[tuple[int, int]], channels: int, blocks: int) -> Path:
    """The photos (``photo_<W>x<H>.png``) and the model directory; returns the model's path."""
    import numpy as np
    from PIL import Image
    from skimage import data

    from glean_sr.config import RealESRGANConfig
    from glean_sr.models.realesrgan import RRDBNet
    from test_background import reference_state_dict

    for w, h in sizes:
        photo = Image.fromarray(np.asarray(data.astronaut())).resize((w, h), Image.LANCZOS)
        photo.save(folder / f"photo_{w}x{h}.png")
    config = RealESRGANConfig(scale=4, rrdb_channels=channels, num_rrdbs=blocks, growth_channels=8)
    model = RRDBNet(config)
    model.load_state_dict(reference_state_dict(4, nf=channels, nb=blocks, gc=8, seed=0))
    return model.save_pretrained(folder / "rrdbnet_x4")


def child(args: argparse.Namespace) -> None:
    """Run ``glean-sr upscale`` once and print its row as JSON."""
    from glean_sr.cli import main

    start = time.perf_counter()
    command = ["upscale", args.photo, "-m", args.model, "-o", args.out, "--device", "cpu"]
    command += ["--overwrite", "--tile", str(args.tile), "--tile-pad", str(args.tile_pad)]
    status = main(command)
    seconds = time.perf_counter() - start
    print(json.dumps({"status": status, "seconds": seconds, "peak_rss": peak_rss_bytes()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["1500x1000", "3000x2000"], help="W x H")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--tile-pad", type=int, default=10)
    p.add_argument("--channels", type=int, default=16, help="RRDBNet width (released: 64)")
    p.add_argument("--blocks", type=int, default=1, help="RRDBs (released: 23)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads in each child")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--photo", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return

    sizes = [tuple(int(n) for n in s.lower().split("x")) for s in args.sizes]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GLEAN_SR_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = make_inputs(folder, sizes, args.channels, args.blocks)
        for w, h in sizes:
            run = subprocess.run(
                [sys.executable, __file__, "--child", "--photo", str(folder / f"photo_{w}x{h}.png"),
                 "--model", str(model), "--out", str(folder / "out"), "--tile", str(args.tile),
                 "--tile-pad", str(args.tile_pad)],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            result = json.loads(run.stdout.strip().splitlines()[-1])
            if result["status"] != 0:
                raise SystemExit(f"upscale failed on {w}x{h}:\n{run.stdout}\n{run.stderr}")
            blend = min(args.tile_pad, args.tile) // 2
            band = (args.tile + 2 * blend) * 4 * (4 * w) * 12 / 2**20
            photo = 19 * w * h / 2**20
            peak = result["peak_rss"] / 2**20
            rows.append(
                {
                    "size": f"{w}x{h}",
                    "output": f"{4 * w}x{4 * h}",
                    "output_mpix": 16 * w * h / 1e6,
                    "peak_rss_mib": peak,
                    "band_mib": band,
                    "photo_mib": photo,
                    "rest_mib": peak - band - photo,
                    "seconds": result["seconds"],
                }
            )
    print(f"RRDBNet x4 ({args.channels} channels, {args.blocks} RRDB), --tile {args.tile} "
          f"--tile-pad {args.tile_pad}, {args.threads} thread(s)")  # fmt: skip
    print("| photo | output | output Mpix | peak RSS MiB | band MiB | photo MiB | rest MiB | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['output']} | {r['output_mpix']:.0f} | "
              f"{r['peak_rss_mib']:.0f} | {r['band_mib']:.0f} | {r['photo_mib']:.0f} | "
              f"{r['rest_mib']:.0f} | {r['seconds']:.0f} |")  # fmt: skip
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"ratio {b['size']} / {a['size']}: peak {b['peak_rss_mib'] / a['peak_rss_mib']:.2f} "
              f"for {b['output_mpix'] / a['output_mpix']:.1f}x the output pixels; rest "
              f"{a['rest_mib']:.0f} vs {b['rest_mib']:.0f} MiB")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
