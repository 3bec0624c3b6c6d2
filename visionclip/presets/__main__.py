"""`python -m visionclip.presets list|build ...`: the command line of `visionclip/cli/presets.py`."""

import sys

from visionclip.cli.presets import main

sys.exit(main())
