#!/usr/bin/env python
"""Generate synthetic colour fundus photographs with SynFundus-style labels.

The command lives in `visionclip/cli/generate.py` (installed as `visionclip-generate`); see `--help`.
"""

import sys

from visionclip.cli.generate import main

if __name__ == "__main__":
    sys.exit(main())
