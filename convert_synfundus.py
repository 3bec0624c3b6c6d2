#!/usr/bin/env python
"""Convert a SynFundus-1M release folder (images + metadata CSV/TSV) into a sharded parquet `datasets` folder.

The command lives in `visionclip/cli/convert.py` (installed as `visionclip-convert`); see `--help`.
"""

import sys

from visionclip.cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
