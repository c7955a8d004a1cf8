"""``glean-sr train-bank RECIPE [--resume] [key=value ...]``: train a StyleGAN2 latent bank.

RECIPE is a bank recipe (TOML), the name of a shipped one (``--list``) or, with ``--resume``, a
run folder. Several GPUs: ``python -m torch.distributed.run --nproc_per_node N -m glean_sr
train-bank RECIPE ...``.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-bank",
        help="train a StyleGAN2 latent bank on your images (resumable, torchrun for many GPUs)",
        description="Train a StyleGAN2 generator and discriminator (Karras et al. 2020: "
        "non-saturating loss, lazy R1, style mixing, EMA, adaptive augmentation) on a folder of "
        "images or an array file, and write a bank directory that sample-bank, train and "
        "convert-bank take. Override any recipe value with section.key=value, e.g. "
        "data.source=/data/cats optim.total_kimg=2000 train.threads=2.",
    )
    p.add_argument("recipe", nargs="?", help="bank recipe file, shipped recipe name, or run folder")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
    p.add_argument("--resume", action="store_true", help="continue the run in out_dir/last.pt")
    p.add_argument("--list", action="store_true", help="list the shipped bank recipes and exit")
    p.add_argument(
        "--print-recipe", action="store_true", help="print the resolved recipe as TOML and exit"
    )
    p.add_argument(
        "--untrained",
        metavar="DIR",
        help="write the recipe's seeded, untrained generator and discriminator (the weights the "
        "run starts from) as a bank directory to DIR and exit: the random-bank baseline",
    )
    p.add_argument("--overwrite", action="store_true", help="with --untrained: replace a bank")
    p.set_defaults(func=run, extra_positionals="overrides")


def write_untrained(recipe, directory: str, *, overwrite: bool) -> str:
    """The networks :func:`~glean_sr.training.bank_loop.train_bank` starts from, as a bank."""
    import torch

    from ..models.discriminator import StyleGAN2Discriminator
    from ..models.stylegan2 import StyleGAN2Generator
    from ..weights.banks import LoadedBank, check_bank_directory

    check_bank_directory(directory, overwrite=overwrite)
    with torch.random.fork_rng(devices=[]):  # the same draws as build_networks
        torch.manual_seed(recipe.seed)
        generator = StyleGAN2Generator(recipe.generator)
        discriminator = StyleGAN2Discriminator(recipe.discriminator)
    bank = LoadedBank(
        generator=generator.eval(),
        discriminator=discriminator.eval(),
        source=f"{recipe.name}, untrained (seed {recipe.seed})",
        format="glean-sr train-bank",
        source_channel_order="RGB",
        ema=None,
    )
    return str(bank.save(directory, overwrite=overwrite))


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..training.bank_recipe import (
        apply_bank_overrides,
        bank_recipe_from_dict,
        bank_recipe_names,
        read_bank_recipe_dict,
    )
    from ..training.checkpoint import read_run_or_recipe

    if args.list:
        for name in bank_recipe_names():
            print(name)
        return 0
    if not args.recipe:
        raise ConfigError(
            f"name a bank recipe: a TOML file or one of {', '.join(bank_recipe_names())}"
        )
    data = read_run_or_recipe(args.recipe, run=args.resume, read_recipe=read_bank_recipe_dict)
    recipe = bank_recipe_from_dict(apply_bank_overrides(data, args.overrides))
    if args.print_recipe:
        print(recipe.to_toml(), end="")
        return 0
    if args.untrained:
        out = write_untrained(recipe, args.untrained, overwrite=args.overwrite)
        print(f"wrote the untrained bank of {recipe.name} to {out}")
        return 0
    from ..training.bank_loop import train_bank

    summary = train_bank(recipe, resume=args.resume)
    if summary["rank"] == 0:
        state = "finished" if summary["finished"] else "stopped"
        line = f"{state} at {summary['kimg']:g} kimg; bank in {summary['bank']}"
        if summary["fid"] is not None:
            line += f"; last FID {summary['fid']:.3f}"
        if not summary["finished"]:
            line += f" (continue with: glean-sr train-bank {summary['out_dir']} --resume)"
        print(line)
    return 0
