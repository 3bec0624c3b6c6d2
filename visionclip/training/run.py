"""One training run, composed in order: accelerator -> embedded data -> model -> loss -> optimizer and schedule ->
data stream -> evaluator, handed to the loop (`Trainer`), then the export of the Hub-ready model folder.

The fault handling around it: errors raised on every process at the same point are said once and stop them all;
the main process holds the output folder for the run (`run_folder`); a failure on one process in code it runs
alone stops every process (`distributed.FailureBarrier`).
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

import torch
import yaml
from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration, set_seed

from ..hardware import fused_optimizer, tune_backends
from ..locking import FolderInUseError
from ..losses import build_loss
from ..precision import PrecisionChoice, resolve_precision
from ..zeroshot.heldout import HeldOutEvaluator, mean_auroc
from .config import TrainConfig
from .data import DatasetError, check_dataset, dataset_source, split_files, training_stream
from .distributed import FailureBarrier, ProcessFailedError, on_main_process
from .export import export_model
from .loop import NonFiniteLossError, Trainer
from .model import prepare_model
from .optim import optimizer_and_schedule
from .run_folder import OutputFolderError, owned_output_folder, start_run
from .state_files import CheckpointError
from .supervised import SupervisedHeldOutEvaluator, SupervisedLoss

# errors raised on every process at the same point (the main process's decisions are shared): said once
RAISED_TOGETHER = (
    ProcessFailedError,
    NonFiniteLossError,
    CheckpointError,
    DatasetError,
    OutputFolderError,
    FolderInUseError,
)


def run_training(config: TrainConfig) -> int:
    """Train as `config` says (every process of a launch calls this); returns the exit status. Errors that every
    process meets together are said once; one this process may have met alone stops it at once."""
    accelerator, precision = start_accelerator(config)
    config = dataclasses.replace(config, mixed_precision=precision.mixed_precision)
    resolved = precision.annotate_yaml(yaml.safe_dump(config.to_dict(), sort_keys=False))
    announce(accelerator, precision, resolved)
    output = Path(config.output_dir)
    started = time.time()
    with contextlib.ExitStack() as ownership:
        try:
            # the main process holds the output folder until the run ends; every process stops if it cannot
            on_main_process(
                accelerator, lambda: ownership.enter_context(owned_output_folder(output, config)), RAISED_TOGETHER
            )
            on_main_process(accelerator, lambda: check_dataset(config), RAISED_TOGETHER)
            trainer = build_trainer(config, accelerator)
            trainer.resume()
            on_main_process(accelerator, lambda: start_run(output, config, resolved), RAISED_TOGETHER)
            if config.report_to != "none":
                accelerator.init_trackers(
                    "visionclip",
                    config={k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))},
                )
            results = trainer.train()
            with trainer.failures.guard():  # the others wait for the main process's export, and stop if it fails
                if accelerator.is_main_process:
                    export(trainer, results, minutes=(time.time() - started) / 60)
        except RAISED_TOGETHER as error:
            if accelerator.is_main_process:
                print(f"{program()}: error: {error}", file=sys.stderr)
            accelerator.end_training()
            return 2
        except (ValueError, FileNotFoundError) as error:
            print(f"{program()}: error: {error}", file=sys.stderr)
            return stop_alone(accelerator, 2)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def start_accelerator(config: TrainConfig) -> tuple[Accelerator, PrecisionChoice]:
    """The process group first, so that every process runs in the precision the main process chose; then the
    Accelerator in that precision, with torch's threads set for CPU runs."""
    # without a GPU, say so: torchrun-launched processes then form a gloo process group (MULTI_CPU)
    cpu = not torch.accelerator.is_available()
    precision = resolve_precision(config.mixed_precision, PartialState(cpu=cpu).device)
    output = Path(config.output_dir)
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=precision.mixed_precision,
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
    return accelerator, precision


def announce(accelerator: Accelerator, precision: PrecisionChoice, resolved: str) -> None:
    """The precision in the log; on the main process, a precision warning and the resolved configuration."""
    logging.getLogger("train").info(precision.summary())
    if not accelerator.is_main_process:
        return
    if precision.warning:
        print(f"{program()}: warning: {precision.warning}", file=sys.stderr)
    print(
        f"resolved configuration ({accelerator.num_processes} process(es), device {accelerator.device}, "
        f"{torch.get_num_threads()} threads):"
    )
    print(resolved)


def build_trainer(config: TrainConfig, accelerator: Accelerator) -> Trainer:
    """The parts of a run, in order: embedded data -> model -> loss -> optimizer and schedule -> data stream ->
    evaluator, handed to the loop."""
    device = accelerator.device
    failures = FailureBarrier(accelerator)
    source = dataset_source(
        config, workers=max(1, config.num_workers), show_progress=accelerator.is_local_main_process
    )
    set_seed(config.seed, device_specific=True)  # after the data: the model's initialisation starts from the seed
    tune_backends(device)
    model = prepare_model(config, accelerator)
    # The loss is not prepared: its only parameter (SigLIP's bias) gets the same gradient on every process.
    loss_fn = objective_loss(config, model.model).to(device)
    optimizer, scheduler = optimizer_and_schedule([model.model, loss_fn], config, fused=fused_optimizer(device))
    # The loop steps the schedule once per optimizer step. Linked to the optimizer, Accelerate would step it once
    # per process, assuming a prepared DataLoader that divides the steps (the stream is not prepared).
    accelerator.step_scheduler_with_optimizer = False
    wrapped, optimizer, scheduler = accelerator.prepare(model.model, optimizer, scheduler)
    if config.torch_compile:  # after the DDP wrap, so that dynamo splits the graph at DDP's gradient buckets
        wrapped = torch.compile(wrapped)
    stream = training_stream(config, source, model.processor.image_processor, model.processor.tokenizer, accelerator)
    evaluator = None
    with failures.guard():  # held-out images are read on the main process; every process stops if that fails
        if accelerator.is_main_process:
            head = {"head": loss_fn} if config.objective == "supervised" else {}
            evaluator = (SupervisedHeldOutEvaluator if head else HeldOutEvaluator)(
                split_files(source, config.eval_split),
                model.processor.image_processor,
                model.processor.tokenizer,
                config.eval_samples,
                **head,
            )
    return Trainer(
        config,
        accelerator,
        failures,
        model=model,
        wrapped=wrapped,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=scheduler,
        stream=stream,
        evaluator=evaluator,
        source=source,
    )


def objective_loss(config: TrainConfig, model: torch.nn.Module) -> torch.nn.Module:
    """The contrastive loss of `config.loss`, or the supervised head's loss on the model's image embeddings."""
    if config.objective == "supervised":
        return SupervisedLoss(model.config.projection_dim)
    return build_loss(config.loss, config.label_similarity)


def export(trainer: Trainer, results: dict, minutes: float) -> None:
    """The main process's end of a run: a summary, the Hub-ready model folder and the held-out results."""
    config, accelerator = trainer.config, trainer.accelerator
    summary = (
        f"Trained for {trainer.step} steps ({trainer.epoch + 1} epoch(s) of the training stream, "
        f"global batch {config.batch_size}) on {accelerator.num_processes} process(es) "
        f"({accelerator.device.type}); this run took {minutes:.1f} minutes including data generation "
        f"and evaluation; {trainer.nonfinite_total} non-finite steps were skipped. Held-out mean "
        f"{trainer.evaluator.kind} AUROC: {mean_auroc(results) or float('nan'):.3f}."
    )
    folder = export_model(trainer, results, summary)
    print(json.dumps(results, indent=2))
    print(f"Hub-ready model folder: {folder}")


def stop_alone(accelerator: Accelerator, status: int) -> int:
    """Stop after an error that this process may have met alone. The others may be waiting in a collective it will
    never join (tearing down the process group could wait for them too), so with several processes it leaves at
    once: its launcher (torchrun) then stops the rest, and a gloo peer sees the closed connection."""
    if accelerator.num_processes == 1:
        accelerator.end_training()
        return status
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def program() -> str:
    """The name errors are reported under: `train.py`, or `visionclip-train` for the installed command."""
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "train.py"
