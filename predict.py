"""Zero-shot classification of fundus photographs with a VisionCLIP model: see `visionclip/cli/predict.py`.

python predict.py --help
"""

import sys

from visionclip.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
