"""Export a trained VisionCLIP model folder to ONNX for CPU inference without torch.

    python export_onnx.py runs/visionclip/model --output runs/visionclip/onnx
    python export_onnx.py runs/visionclip/model --output runs/visionclip/onnx --quantize     # + int8 encoders

Writes the image and text encoders (dynamic batch, dynamic text length), the processor's files, the prompts
(zero_shot.json) and `visionclip_onnx.py`, a runtime that does zero-shot with onnxruntime, numpy, Pillow and
transformers' tokenizer and image processor, without torch:

    cd runs/visionclip/onnx && python -c "from visionclip_onnx import OnnxZeroShot; \\
        print(OnnxZeroShot('.').zero_shot(['photo.jpg'], task='glaucoma').predictions)"

The encoders are checked against the eager model before the folder is swapped in (it is built beside --output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..onnx.export import export_onnx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a saved VisionCLIP model folder (what training or publish writes)")
    parser.add_argument("--output", type=Path, required=True, help="the export folder to write (replaced whole)")
    parser.add_argument("--quantize", action="store_true", help="also write dynamic int8 encoders (*.int8.onnx)")
    parser.add_argument("--opset", type=int, help="ONNX opset (18-23; default: the exporter's)")
    args = parser.parse_args(argv)
    try:
        output = export_onnx(args.model, args.output, quantize=args.quantize, opset=args.opset)
    except (FileNotFoundError, ValueError) as error:
        print(f"export_onnx.py: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {output}: " + ", ".join(sorted(path.name for path in output.iterdir())))
    return 0
