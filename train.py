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

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

import yaml


def main(argv: list[str] | None = None) -> int:
    from visionclip.training.config import load_config

    config = load_config(argv, description=__doc__)

    import torch
    from accelerate import Accelerator, PartialState
    from accelerate.utils import ProjectConfiguration

    from visionclip.locking import FolderInUseError
    from visionclip.precision import resolve_precision
    from visionclip.training.data import DatasetError, check_dataset
    from visionclip.training.distributed import ProcessFailedError, on_main_process
    from visionclip.training.loop import NonFiniteLossError, Trainer
    from visionclip.training.run_folder import OutputFolderError, owned_output_folder, start_run
    from visionclip.training.state_files import CheckpointError

    # errors raised on every process at the same point (the main process's decisions are shared): said once
    together = (
        ProcessFailedError,
        NonFiniteLossError,
        CheckpointError,
        DatasetError,
        OutputFolderError,
        FolderInUseError,
    )

    output = Path(config.output_dir)
    # without a GPU, say so: torchrun-launched processes then form a gloo process group (MULTI_CPU)
    cpu = not torch.accelerator.is_available()
    # the process group first, so that every process runs in the precision the main process chose
    precision = resolve_precision(config.mixed_precision, PartialState(cpu=cpu).device)
    config = dataclasses.replace(config, mixed_precision=precision.mixed_precision)
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=config.mixed_precision,
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(project_dir=str(output), logging_dir=str(output / "logs")),
    )
    if accelerator.device.type == "cpu":
        # `accelerate launch` sets OMP_NUM_THREADS=1 for CPU runs, which leaves cores idle
        local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
        torch.set_num_threads(config.cpu_threads or max(1, (os.cpu_count() or 1) // local))
    logging.basicConfig(
        level=logging.INFO if accelerator.is_main_process else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    resolved = precision.annotate_yaml(yaml.safe_dump(config.to_dict(), sort_keys=False))
    logging.getLogger("train").info(precision.summary())
    if precision.warning and accelerator.is_main_process:
        print(f"train.py: warning: {precision.warning}", file=sys.stderr)
    if accelerator.is_main_process:
        print(
            f"resolved configuration ({accelerator.num_processes} process(es), device {accelerator.device}, "
            f"{torch.get_num_threads()} threads):"
        )
        print(resolved)
    started = time.time()
    with contextlib.ExitStack() as ownership:
        try:
            # the main process holds the output folder until the run ends; every process stops if it cannot
            on_main_process(
                accelerator, lambda: ownership.enter_context(owned_output_folder(output, config)), together
            )
            on_main_process(accelerator, lambda: check_dataset(config), together)
            trainer = Trainer(config, accelerator)
            trainer.resume()
            on_main_process(accelerator, lambda: start_run(output, config, resolved), together)
            if config.report_to != "none":
                accelerator.init_trackers(
                    "visionclip",
                    config={k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))},
                )
            results = trainer.train()
            with trainer.failures.guard():  # the others wait for the main process's export, and stop if it fails
                if accelerator.is_main_process:
                    export(trainer, results, minutes=(time.time() - started) / 60)
        except together as error:
            if accelerator.is_main_process:
                print(f"train.py: error: {error}", file=sys.stderr)
            accelerator.end_training()
            return 2
        except (ValueError, FileNotFoundError) as error:
            print(f"train.py: error: {error}", file=sys.stderr)
            return stop_alone(accelerator, 2)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def export(trainer, results: dict, minutes: float) -> None:
    """The main process's end of a run: a summary, the Hub-ready model folder and the held-out results."""
    from visionclip.training.export import export_model
    from visionclip.zeroshot.heldout import mean_auroc

    config, accelerator = trainer.config, trainer.accelerator
    summary = (
        f"Trained for {trainer.step} steps ({trainer.epoch + 1} epoch(s) of the training stream, "
        f"global batch {config.batch_size}) on {accelerator.num_processes} process(es) "
        f"({accelerator.device.type}); this run took {minutes:.1f} minutes including data generation "
        f"and evaluation; {trainer.nonfinite_total} non-finite steps were skipped. Held-out mean "
        f"zero-shot AUROC: {mean_auroc(results) or float('nan'):.3f}."
    )
    folder = export_model(trainer, results, summary)
    print(json.dumps(results, indent=2))
    print(f"Hub-ready model folder: {folder}")


def stop_alone(accelerator, status: int) -> int:
    """Stop after an error that this process may have met alone. The others may be waiting in a collective it will
    never join (tearing down the process group could wait for them too), so with several processes it leaves at
    once: its launcher (torchrun) then stops the rest, and a gloo peer sees the closed connection."""
    if accelerator.num_processes == 1:
        accelerator.end_training()
        return status
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
