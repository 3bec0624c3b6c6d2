#!/usr/bin/env python
"""Publish a trained VisionCLIP folder to the Hugging Face Hub, safely.

The command lives in `visionclip/cli/publish.py` (installed as `visionclip-publish`); see `--help`.
"""

import sys

from visionclip.cli.publish import main

if __name__ == "__main__":
    sys.exit(main())
