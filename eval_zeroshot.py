"""Zero-shot and few-shot evaluation of VisionCLIP on real external datasets: see `visionclip/cli/eval.py`.

python eval_zeroshot.py --help
"""

import sys

from visionclip.cli.eval import main

if __name__ == "__main__":
    sys.exit(main())
