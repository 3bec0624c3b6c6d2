"""The label-efficiency study (issue 16): see `visionclip/cli/label_efficiency.py`.

python bench/label_efficiency.py --help
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: the package beside bench/

from visionclip.cli.label_efficiency import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
