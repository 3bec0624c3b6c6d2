"""Train VisionCLIP with Accelerate, from one CPU to many GPUs.

    accelerate launch train.py                      # the main job: `small` preset on the embedded synthetic set
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml train.py --preset tiny --max-steps 50
    accelerate launch --config_file configs/accelerate/8gpu_ddp.yaml train.py --config configs/train/flair_reference.yaml
    accelerate launch train.py --resume latest      # continue after an interruption
    accelerate launch train.py --overwrite true     # replace the run in the output folder

Options come from the dataclass in visionclip/training/config.py: defaults < --config YAML < flags. The resolved
configuration is printed and saved beside the run; the run ends with a Hub-ready folder in <output-dir>/model.
An output folder belongs to one run (visionclip/training/run_folder.py): another run there is refused unless it
resumes that run (--resume) or replaces it (--overwrite).
"""

from __future__ import annotations

import sys

from .config import load_config


def main(argv: list[str] | None = None) -> int:
    """`train.py` and `visionclip-train`: read the options (defaults < --config YAML < flags), then train."""
    config = load_config(argv, description=__doc__)
    # The training stack (torch, transformers, accelerate, datasets, scikit-learn: seconds to import) loads once the
    # options are read, so that --help and a mistyped option answer at once.
    from .run import run_training

    return run_training(config)


if __name__ == "__main__":
    sys.exit(main())
