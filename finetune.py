"""Fine-tune a VisionCLIP model on a small labelled set into an image classifier: see `visionclip/cli/finetune.py`.

python finetune.py --help
"""

import sys

from visionclip.cli.finetune import main

if __name__ == "__main__":
    sys.exit(main())
