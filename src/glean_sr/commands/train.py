"""``glean-sr train RECIPE [--resume] [key=value ...]``: train (or continue training) a restorer.

RECIPE is a TOML file, the name of a shipped recipe (``--list``) or, with ``--resume``, the
output folder of a run (its checkpoint holds the recipe). Several GPUs: launch through torchrun,
``python -m torch.distributed.run --nproc_per_node 4 -m glean_sr train RECIPE ...``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a restorer from a recipe (TOML), resumable, on one CPU or many GPUs",
        description="Train GLEAN from a recipe. Override any recipe value with section.key=value "
        "(TOML syntax; bare words are strings), e.g. bank.source=stylegan2-cat.pth "
        "data.gt_dir=/data/cats/GT train.batch_size=8. Multi-GPU: run this command through "
        "torchrun (python -m torch.distributed.run --nproc_per_node N -m glean_sr train ...).",
    )
    p.add_argument("recipe", nargs="?", help="recipe file, shipped recipe name, or run folder")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
    p.add_argument("--resume", action="store_true", help="continue the run in out_dir/last.pt")
    p.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    p.add_argument(
        "--print-recipe", action="store_true", help="print the resolved recipe as TOML and exit"
    )
    p.add_argument(
        "--export",
        metavar="DIR",
        help="write the model of the run's last checkpoint (EMA weights if kept) to DIR and exit",
    )
    p.add_argument("--overwrite", action="store_true", help="with --export: replace a model")
    p.set_defaults(func=run, extra_positionals="overrides")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..training.checkpoint import read_run_or_recipe
    from ..training.recipe import apply_overrides, recipe_from_dict, recipe_names

    if args.list:
        for name in recipe_names():
            print(name)
        return 0
    if not args.recipe:
        shipped = ", ".join(recipe_names())
        raise ConfigError(f"name a recipe: a TOML file or one of {shipped}")
    data = read_run_or_recipe(args.recipe, run=args.resume or bool(args.export))
    recipe = recipe_from_dict(apply_overrides(data, args.overrides))
    if args.print_recipe:
        print(recipe.to_toml(), end="")
        return 0
    if args.export:
        from ..training.parts import export_checkpoint

        last = Path(recipe.out_dir).expanduser() / "last.pt"
        out = export_checkpoint(last, args.export, overwrite=args.overwrite)
        print(f"exported the model of {recipe.out_dir}/last.pt to {out}")
        return 0
    from ..training.loop import train

    summary = train(recipe, resume=args.resume)
    if summary["rank"] == 0:
        best = summary["best"]
        state = "finished" if summary["finished"] else "stopped"
        line = f"{state} at step {summary['step']}; outputs in {summary['out_dir']}"
        if summary["stopped"]:
            line += " (stopped by a signal; continue with --resume)"
        if best["step"] >= 0:
            line += f"; best PSNR {best['psnr']:.3f} dB at step {best['step']}"
        print(line)
    return 0
