"""Write the Space's bundled examples: synthetic photographs from the project's generator (never real ones), one
with glaucoma, one with referable diabetic retinopathy (grade >= 2) and one without findings, as small JPEG files.

    python space/make_examples.py            # into space/examples
"""

from __future__ import annotations

import argparse
from pathlib import Path

from visionclip.shards import atomic_write_bytes
from visionclip.synthetic.generator import FundusGenerator, encode_jpeg
from visionclip.synthetic.writer import split_seed

EXAMPLES = Path(__file__).resolve().parent / "examples"
IMAGE_SIZE = 512
JPEG_QUALITY = 85
SEARCHED = 500  # generated images looked through at most


def example_name(record: dict) -> str | None:
    """Which example a generated record makes, if any (the same choice as a trained model folder's examples)."""
    grade = int(record["dr_grade"] or 0)
    if record["is_gc"] and not grade:
        return "glaucoma"
    if grade >= 2 and not record["is_gc"]:
        return "diabetic_retinopathy"
    if not record["is_abnormal"] and record["is_retinal_region_readable"]:
        return "normal"
    return None


def write_examples(folder: Path = EXAMPLES, seed: int = 0) -> list[Path]:
    """The first held-out (validation split) generated image of each example kind, written to `folder`."""
    generator = FundusGenerator(IMAGE_SIZE, seed=split_seed(seed, "validation"), encode_png=False)
    written: dict[str, Path] = {}
    for sample in generator.samples(0, SEARCHED):
        name = example_name(sample.record)
        if name and name not in written:
            written[name] = folder / f"{name}.jpg"
            atomic_write_bytes(written[name], encode_jpeg(sample.image, quality=JPEG_QUALITY))
        if len(written) == 3:
            return sorted(written.values())
    raise RuntimeError(f"only {sorted(written)} found among the first {SEARCHED} generated images")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=EXAMPLES, help="folder to write the examples to")
    args = parser.parse_args(argv)
    for path in write_examples(args.out):
        print(f"{path}  ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
