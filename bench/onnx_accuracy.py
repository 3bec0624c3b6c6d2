"""Zero-shot accuracy of the ONNX export, fp32 and dynamic int8, against the eager model on the shared real
photographs (HRF, CSDI, MFIDDR; every image, each set's evaluation task): see `visionclip/onnx/accuracy.py`.

    python bench/onnx_accuracy.py                                   # the main job's model, exported now with int8
    python bench/onnx_accuracy.py --model runs/visionclip/model --export runs/visionclip/onnx
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visionclip.onnx.accuracy import REAL_SETS, compare_on_real_sets, markdown  # noqa: E402
from visionclip.onnx.export import export_onnx  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("runs/visionclip/model"), help="saved model folder")
    parser.add_argument("--export", type=Path, help="an existing export (default: export now, with int8, to a temp)")
    parser.add_argument("--sets", nargs="+", choices=REAL_SETS, default=list(REAL_SETS))
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: its own choice)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onnx-accuracy-") as scratch:
        export = args.export or export_onnx(args.model, Path(scratch) / "onnx", quantize=True)
        print(markdown(compare_on_real_sets(args.model, export, tuple(args.sets), threads=args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
