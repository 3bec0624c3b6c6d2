"""Export a trained VisionCLIP model to ONNX (image and text encoders, processor, prompts, a torch-free runtime):
see `visionclip/cli/export_onnx.py`.

python export_onnx.py --help
"""

import sys

from visionclip.cli.export_onnx import main

if __name__ == "__main__":
    sys.exit(main())
