"""``glean-sr publish MODEL OUT_DIR [--repo owner/name]``: a Hub-ready model folder (config,
weights with provenance, model card) and, with ``--repo``, its upload."""

from __future__ import annotations

import argparse

from ..presets import DEMO_MODEL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="write config.json + model.safetensors + a model card for the Hugging Face Hub "
        "(and upload with --repo)",
    )
    p.add_argument(
        "source",
        help=f"preset name, weight file, model directory, URL or Hub repo ({DEMO_MODEL} is the "
        f"shipped demo)",
    )
    p.add_argument("output", help="folder to write (created if needed)")
    p.add_argument(
        "--eval-summary",
        metavar="JSON",
        help="glean-sr eval's summary.json: its metrics go into the model card",
    )
    p.add_argument(
        "--eval-row", metavar="NAME", help="this model's row of the summary (when it has several)"
    )
    p.add_argument("--name", help="the model's name in the card (default: preset or folder name)")
    p.add_argument(
        "--license",
        default="apache-2.0",
        help="licence id for the card's metadata (default apache-2.0, glean-sr's and the "
        "released GLEAN weights')",
    )
    p.add_argument("--repo", metavar="OWNER/NAME", help="upload to this Hub model repository")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--overwrite", action="store_true", help="replace files already in OUT_DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..weights.publish import publish

    done = publish(
        args.source,
        args.output,
        summary_path=args.eval_summary,
        eval_row=args.eval_row,
        license=args.license,
        name=args.name,
        repo=args.repo,
        private=args.private,
        overwrite=args.overwrite,
    )
    print(f"wrote {done.folder} (config.json, model.safetensors, README.md)")
    if done.url:
        print(f"uploaded to {done.url}")
    return 0
