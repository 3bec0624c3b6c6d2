"""Train VisionCLIP with Accelerate: `accelerate launch train.py [options]` (see `--help`).

The training entry point is `visionclip.training.main.main` (installed as the `visionclip-train` command); this
script at the repository root keeps `python train.py` and `accelerate launch train.py` working from a checkout.
"""

import sys

from visionclip.training.main import main

if __name__ == "__main__":
    sys.exit(main())
