"""List the model presets, or write an untrained model + processor folder for one.

python -m visionclip.presets list
python -m visionclip.presets build small ./untrained-small
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..factory import build_model
from ..presets import list_presets, load_preset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the presets")
    build = commands.add_parser("build", help="write an untrained model + processor folder for a preset")
    build.add_argument("preset", help=f"one of {list_presets()} or a YAML file")
    build.add_argument("output_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in list_presets():
            print(f"{name:18s} {load_preset(name).description}")
        return 0
    try:
        model, processor = build_model(args.preset)
    except ValueError as error:
        parser.error(str(error))
    model.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    print(f"wrote untrained {args.preset} model ({model.num_parameters():,} parameters) to {args.output_dir}")
    return 0
