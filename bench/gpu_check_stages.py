"""The stages of bench/gpu_check.py, each run in its own process by `run_stage` (see gpu_check.py's docstring).

They use the project's public entry points, so that changes inside the trainer do not break them: the generator
and train.py as subprocesses, and `Trainer` (`micro_batches`, `train_mode`, `train_step`) for the timed steps.
Every figure is written to `<work>/<stage>.json` as soon as it is measured, so a stage stopped at its time budget
keeps what it had.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import runpy
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpu_check_timing import (
    describe_device,
    first_micro_batches,
    loader_rate,
    matmul_peak,
    step_flops_per_image,
    timed_steps,
    with_trainer,
)

ROOT = Path(__file__).resolve().parents[1]
GPU_CHECK = Path(__file__).resolve().with_name("gpu_check.py")


@dataclasses.dataclass(frozen=True)
class Sizes:
    preset: str
    image_size: int  # px of the generated sets (the preset's input size)
    train_images: int  # per format; 120 shards of 8 serve 8 or 15 loader workers evenly
    validation_images: int
    rows_per_shard: int
    batch: int  # the step stage's global batch
    layout_batch: int  # channels-last / torch.compile variants, without gradient checkpointing
    flops_batch: int  # FLOPs are counted on a small batch, without checkpointing (model FLOPs)
    timed_steps: int
    warmup_steps: int  # untimed steps first: cuDNN autotuning, compilation
    step_workers: int  # loader workers feeding the (one, reused) batch of the timed steps
    loader_workers: tuple[int, ...]
    loader_batch: int
    matmul_size: int
    main_job: tuple[str, ...]  # train.py flags on top of its defaults
    ddp_batch: int


LOADER_WORKERS = max(1, (os.cpu_count() or 2) - 1)
FULL = Sizes(
    "flair-reference", 512, 960, 64, 8, 256, 128, 16, 10, 2, 2, (8, 15), 16, 8192,
    ("--num-workers", str(LOADER_WORKERS)), 32,
)  # fmt: skip
DRY = Sizes(
    "tiny", 64, 48, 16, 4, 8, 8, 4, 1, 1, 1, (1, 2), 8, 256,
    ("--preset", "tiny", "--synthetic-train", "64", "--synthetic-validation", "64", "--synthetic-image-size", "64",
     "--batch-size", "16", "--max-steps", "4", "--warmup-steps", "1", "--eval-every", "2", "--eval-samples", "64",
     "--save-every", "2", "--num-workers", "1", "--shuffle-buffer", "16"),
    16,
)  # fmt: skip
# train.py's output lines the main_job and ddp stages read
CURVE_LINE = re.compile(r"step (\d+): held-out zero-shot mean AUROC ([\d.]+)")
PRECISION_LINE = re.compile(r"mixed precision (\w+) -> (\w+): (.*)")
RATE = re.compile(r"img_s=([\d.]+)")
RESUMED_LINE = re.compile(r"resumed from \S+ at step (\d+) \(lr ([\d.e+-]+)\)")
DDP = {
    "processes": 2,
    "accum_steps": 2,
    "max_steps": 8,
    "warmup_steps": 2,
    "checkpoint_step": 4,
    "lr": 1e-3,
    "min_lr": 1e-5,
}


class Stage:
    """One stage's sizes, folders and results (written through on every `record`)."""

    def __init__(self, name: str, work: Path, dry_run: bool, budget_s: float | None = None):
        self.name, self.work, self.dry_run = name, work, dry_run
        self.sizes = DRY if dry_run else FULL
        self.results: dict[str, Any] = {}
        self.trainers = 0  # each Trainer gets its own output folder
        self.deadline = None if budget_s is None else time.monotonic() + budget_s

    def seconds_left(self) -> float:
        """Seconds until gpu_check.py stops this stage (infinite where it was run without a budget)."""
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def trainer_folder(self) -> str:
        self.trainers += 1
        return str(self.work / f"{self.name}-trainer-{self.trainers}")

    def record(self, **values: Any) -> None:
        from visionclip.shards import atomic_write_bytes

        self.results.update(values)
        atomic_write_bytes(self.work / f"{self.name}.json", (json.dumps(self.results, indent=2) + "\n").encode())
        print(f"{self.name}: {json.dumps(values)}", flush=True)

    def data(self, image_format: str) -> Path:
        folder = self.work / "data" / image_format
        if image_format not in self.earlier("data"):
            raise FileNotFoundError(f"{folder}: no generated set (the data stage did not finish it)")
        return folder

    def quickest_set(self) -> Path:
        """The JPEG set where there is one (its first batch decodes several times faster), else the PNG set: for
        stages that time steps on one batch read once, where the encoding does not matter."""
        return self.data("jpeg") if "jpeg" in self.earlier("data") else self.data("png")

    def earlier(self, stage: str) -> dict[str, Any]:
        path = self.work / f"{stage}.json"
        return json.loads(path.read_text()) if path.is_file() else {}


# ------------------------------------------------------------------------------------------- helpers


def accelerator_and_precision(stage: Stage):
    """The run's Accelerator: CUDA in bf16 (the recipe's), or the CPU (dry run) in what `auto` picks there."""
    import torch
    from accelerate import Accelerator

    from visionclip.precision import resolve_precision

    cuda = torch.cuda.is_available() and not stage.dry_run
    choice = resolve_precision("bf16" if cuda else "auto", "cuda" if cuda else "cpu")
    return Accelerator(cpu=not cuda, mixed_precision=choice.mixed_precision), choice


RECIPE = ROOT / "configs" / "train" / "flair_reference.yaml"
RECIPE_MODEL_OPTIONS = ("lock_image", "lock_text", "loss")  # what the measured step trains, as the recipe sets it


def train_config(stage: Stage, precision: str, **overrides: Any):
    """A trainer's options for the step stages: the recipe's towers and loss at the stage's sizes."""
    import yaml

    from visionclip.training.config import TrainConfig

    recipe = yaml.safe_load(RECIPE.read_text()) or {}
    values = {
        **{option: recipe[option] for option in RECIPE_MODEL_OPTIONS if recipe.get(option) is not None},
        "preset": stage.sizes.preset,
        "dataset": str(stage.data("png")),
        "batch_size": stage.sizes.batch,
        "max_steps": 10_000,
        "warmup_steps": 1,
        "num_workers": stage.sizes.step_workers,
        "shuffle_buffer": 64,
        "report_to": "none",
        "output_dir": stage.trainer_folder(),
        "mixed_precision": precision,
        **overrides,
    }
    config = TrainConfig(**values)
    config.validate()
    return config


def measure_variant(stage: Stage, key: str, accelerator, config, shared: dict[str, Any]) -> dict[str, Any]:
    """`timed_steps` on a fresh Trainer for `config`, recorded under `key` phase by phase (building the trainer,
    reading the batch, the warm-up), so a stage stopped at its budget shows where it was. The batch is read once per
    stage (`shared`) and reused by the next variants: its first read decodes a whole batch on one loader worker."""
    sizes, phases = stage.sizes, {}

    def progress(values: dict[str, Any]) -> None:
        phases.update(values)
        stage.record(**{key: {"status": "measuring", **phases}})

    def measure(trainer) -> dict[str, Any]:
        progress({"trainer_built_s": round(time.perf_counter() - started, 2)})
        if "micro" not in shared:
            read = time.perf_counter()
            shared["micro"] = first_micro_batches(trainer)
            progress({"first_batch_s": round(time.perf_counter() - read, 2)})
        return timed_steps(trainer, shared["micro"], sizes.timed_steps, sizes.warmup_steps, progress)

    started = time.perf_counter()
    progress({})
    result = {**phases, **with_trainer(accelerator, config, measure)}
    stage.record(**{key: result})
    return result


def run_logged(command: list[str], env: dict[str, str] | None = None, on_line: Callable[[str], None] | None = None):
    """Run a command with its output into this stage's log (and, line by line, to `on_line`); its return code."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env, errors="replace"
    )
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        if on_line is not None:
            on_line(line)
    sys.stdout.flush()
    return process.wait()


# -------------------------------------------------------------------------------------------- stages


def stage_data(stage: Stage) -> None:
    """The PNG set from the generator, then the JPEG set from it by re-encoding the same images."""
    from gpu_check_data import derive_jpeg_set

    sizes, workers = stage.sizes, 1 if stage.dry_run else LOADER_WORKERS
    images = sizes.train_images + sizes.validation_images
    png, started = stage.work / "data" / "png", time.perf_counter()
    command = [
        *(sys.executable, str(ROOT / "generate_fundus.py"), "--out", str(png)),
        *("--splits", f"train={sizes.train_images},validation={sizes.validation_images}"),
        *("--image-size", str(sizes.image_size), "--rows-per-shard", str(sizes.rows_per_shard)),
        *("--workers", str(workers), "--image-format", "png", "--quiet"),
    ]
    if run_logged(command):
        raise RuntimeError("generate_fundus.py failed")
    stage.record(png=made(images, started, workers, "generate_fundus.py"))
    started = time.perf_counter()
    derive_jpeg_set(png, stage.work / "data" / "jpeg", workers=workers)
    stage.record(jpeg=made(images, started, workers, "the PNG set's images re-encoded (bench/gpu_check_data.py)"))


def made(images: int, started: float, workers: int, how: str) -> dict[str, Any]:
    seconds = time.perf_counter() - started
    return {
        "images": images,
        "seconds": round(seconds, 1),
        "images_per_s": round(images / seconds, 1),
        "workers": workers,
        "how": how,
    }


# torch.compile of the flair-reference step took 91 s on the H100 machine (2026-11-27), and its timed steps a few
# more: below this many seconds left, the layout stage records why it did not try instead of overrunning
COMPILE_NEEDS_S = 120


def stage_step(stage: Stage) -> None:
    """Images/s and peak memory at the recipe's batch without and with checkpointing first; then the matmul peak
    and the FLOP count that turn them into MFU (a third trainer, at a small batch)."""
    import torch

    accelerator, choice = accelerator_and_precision(stage)
    sizes, shared = stage.sizes, {}
    options = {option: getattr(train_config(stage, choice.mixed_precision), option) for option in RECIPE_MODEL_OPTIONS}
    stage.record(
        device=describe_device(accelerator.device), precision=choice.summary(), preset=sizes.preset, trains=options
    )
    results = {}
    for checkpointing in (False, True):
        key = f"batch_{sizes.batch}_gradient_checkpointing_{'on' if checkpointing else 'off'}"
        config = train_config(
            stage, choice.mixed_precision, dataset=str(stage.quickest_set()), gradient_checkpointing=checkpointing
        )
        results[key] = measure_variant(stage, key, accelerator, config, shared)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(choice.mixed_precision, torch.float32)
    peak = matmul_peak(accelerator.device, dtype, sizes.matmul_size)
    stage.record(matmul_peak_tflops=round(peak / 1e12, 3), matmul=f"{sizes.matmul_size}^3 {dtype}")
    config = train_config(
        stage, choice.mixed_precision, dataset=str(stage.quickest_set()), batch_size=sizes.flops_batch
    )
    counted = with_trainer(accelerator, config, step_flops_per_image)
    if "flops_per_image" not in counted:
        stage.record(step_flops=counted)
        return
    flops = counted["flops_per_image"]
    stage.record(step_gflops_per_image=round(flops / 1e9, 2), flops_batch=sizes.flops_batch)
    for key, result in results.items():
        if "images_per_s" in result:  # model FLOPs: the recomputation of checkpointing does not count
            stage.record(**{key: {**result, "mfu": round(result["images_per_s"] * flops / peak, 4)}})


def stage_layout_compile(stage: Stage) -> None:
    import torch

    accelerator, choice = accelerator_and_precision(stage)
    sizes, shared = stage.sizes, {}
    if stage.dry_run:  # trace with dynamo but generate no code: seconds instead of minutes on a CPU
        compile_ = torch.compile
        torch.compile = lambda model, **kwargs: compile_(model, backend="eager", **kwargs)
    stage.record(batch=sizes.layout_batch, precision=choice.summary(), note="without gradient checkpointing")
    variants = {"channels_last": {}, "contiguous": {"channels_last": False}, "torch_compile": {"torch_compile": True}}
    for name, overrides in variants.items():
        left = stage.seconds_left()
        if name == "torch_compile" and left < COMPILE_NEEDS_S:
            stage.record(
                torch_compile={
                    "status": f"not run: compiling this model needs about {COMPILE_NEEDS_S} s (91 s to compile on an "
                    f"H100 machine) and this stage had {left:.0f} s left; measure it on its own with "
                    "`--stages data,layout_compile --stage-budget layout_compile=400`"
                }
            )
            continue
        config = train_config(
            stage,
            choice.mixed_precision,
            dataset=str(stage.quickest_set()),
            batch_size=sizes.layout_batch,
            **overrides,
        )
        measure_variant(stage, name, accelerator, config, shared)


def stage_loader(stage: Stage) -> None:
    accelerator, choice = accelerator_and_precision(stage)
    sizes = stage.sizes
    steps = [v for v in stage.earlier("step").values() if isinstance(v, dict) and "images_per_s" in v]
    step_rate = max((v["images_per_s"] for v in steps), default=None)
    stage.record(step_images_per_s=step_rate, batch=sizes.loader_batch)
    for image_format in ("png", "jpeg"):
        for workers in sizes.loader_workers:
            config = train_config(
                stage,
                choice.mixed_precision,
                dataset=str(stage.data(image_format)),
                batch_size=sizes.loader_batch,
                num_workers=workers,
            )
            result = with_trainer(accelerator, config, loader_rate)
            if step_rate and result.get("images_per_s"):
                result["vs_step_rate"] = round(result["images_per_s"] / step_rate, 2)
            stage.record(**{f"{image_format}_{workers}_workers": result})


def readme_cpu_curve(text: str) -> dict[int, float]:
    """README.md's held-out mean AUROC of the CPU main job: {step: AUROC}."""
    match = re.search(
        r"held-out\s+mean\s+zero-shot\s+AUROC\s+((?:[\d.]+\s*/\s*)*[\d.]+)\s+after\s+((?:[\d,]+\s*/\s*)*[\d,]+)\s+steps",
        text,
    )
    if match is None:
        return {}
    values = [float(v) for v in re.split(r"\s*/\s*", match.group(1))]
    steps = [int(s.replace(",", "")) for s in re.split(r"\s*/\s*", match.group(2))]
    return dict(zip(steps, values, strict=True))


def stage_main_job(stage: Stage) -> None:
    cpu = readme_cpu_curve((ROOT / "README.md").read_text())
    command = [sys.executable, str(ROOT / "train.py"), *stage.sizes.main_job]
    command += ["--output-dir", str(stage.work / "main_job"), "--cache-dir", str(stage.work / "cache")]
    stage.record(command=" ".join(command[1:]), cpu_curve_in_readme=cpu, curve=[])
    started, curve, rates = time.perf_counter(), [], []

    def on_line(line: str) -> None:
        if (precision := PRECISION_LINE.search(line)) is not None:
            stage.record(precision=precision.group(0))
        rates.extend(float(rate) for rate in RATE.findall(line))
        for step, auroc in CURVE_LINE.findall(line):
            point = {"step": int(step), "mean_auroc": float(auroc), "seconds": round(time.perf_counter() - started)}
            if int(step) in cpu:
                point |= {"cpu": cpu[int(step)], "difference": round(float(auroc) - cpu[int(step)], 3)}
            curve.append(point)
            stage.record(curve=curve, images_per_s_shown=rates[-1] if rates else None)

    returncode = run_logged(command, on_line=on_line)
    stage.record(
        returncode=returncode,
        seconds=round(time.perf_counter() - started, 1),
        images_per_s_shown=rates[-1] if rates else None,
    )
    if returncode:
        raise RuntimeError(f"train.py exited with {returncode}")


def scheduled_lr(steps: int, warmup: int, max_steps: int, lr: float, min_lr: float) -> float:
    """The learning rate of train.py's schedule after `steps` scheduler steps."""
    import torch

    from visionclip.training.optim import warmup_cosine

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = warmup_cosine(optimizer, warmup, max_steps, min_lr / lr)
    for _ in range(steps):
        optimizer.step()
        schedule.step()
    return schedule.get_last_lr()[0]


def lr_schedule_check(
    observed: float, steps: int, processes: int, warmup: int, max_steps: int, lr: float, min_lr: float
):
    """Does the learning rate after `steps` optimizer steps equal the single-process schedule's? (Where each of
    `processes` processes stepped the scheduler, it equals the schedule after steps x processes instead.)"""
    expected = scheduled_lr(steps, warmup, max_steps, lr, min_lr)
    stepped_per_process = scheduled_lr(steps * processes, warmup, max_steps, lr, min_lr)
    if math.isclose(expected, stepped_per_process, rel_tol=0.05):
        raise ValueError(f"step {steps} of this schedule cannot tell per-process scheduler steps apart")
    return {
        "steps": steps,
        "processes": processes,
        "observed": observed,
        "expected": expected,
        "if_every_process_stepped_the_scheduler": stepped_per_process,
        "ok": math.isclose(observed, expected, rel_tol=0.01),  # train.py prints 3 significant digits
    }


def stage_ddp(stage: Stage) -> None:
    sizes, output = stage.sizes, stage.work / "ddp"
    flags = [
        *("--preset", "tiny", "--dataset", str(stage.data("png")), "--batch-size", str(sizes.ddp_batch)),
        *("--accum-steps", str(DDP["accum_steps"]), "--max-steps", str(DDP["max_steps"]), "--lr", str(DDP["lr"])),
        *("--min-lr", str(DDP["min_lr"])),
        *("--warmup-steps", str(DDP["warmup_steps"]), "--save-every", str(DDP["checkpoint_step"])),
        *("--eval-every", "0", "--eval-samples", str(sizes.validation_images), "--report-to", "none"),
        *("--num-workers", "1", "--shuffle-buffer", "16", "--output-dir", str(output)),
    ]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(DDP["processes"])]
    launch += [str(GPU_CHECK), "--ddp-worker"]
    # two processes on one GPU: no device ids for DDP (each process would otherwise claim GPU <rank>)
    env = {**os.environ, "ACCELERATE_BYPASS_DEVICE_MAP": "true", "OMP_NUM_THREADS": "1"}
    if run_logged([*launch, *flags], env=env):
        raise RuntimeError("the two-process run failed")
    checkpoint = output / "checkpoints" / f"step_{DDP['checkpoint_step']:08d}"
    files = sorted(p.name for p in checkpoint.iterdir()) if checkpoint.is_dir() else []
    ranks = range(DDP["processes"])
    stage.record(
        first_run="ok",
        checkpoint_files={"files": files, "every_rank_stream": all(f"stream_rank{r}.json" in files for r in ranks)},
    )
    lines: list[str] = []
    if run_logged([*launch, *flags, "--resume", str(checkpoint)], env=env, on_line=lines.append):
        raise RuntimeError("the two-process run resumed from its checkpoint failed")
    resumed = RESUMED_LINE.search("".join(lines))
    if resumed is None:
        raise RuntimeError("the resumed run did not report its step and learning rate")
    check = lr_schedule_check(
        float(resumed.group(2)), int(resumed.group(1)), DDP["processes"], DDP["warmup_steps"], DDP["max_steps"],
        DDP["lr"], DDP["min_lr"],
    )  # fmt: skip
    stage.record(resumed_run="ok", lr_schedule=check)


def ddp_worker(train_args: list[str]) -> int:
    """One torchrun process: a gloo process group (NCCL refuses two processes on one GPU), then train.py."""
    import functools

    import torch.distributed as dist

    dist.init_process_group("gloo")
    barrier = dist.barrier

    @functools.wraps(barrier)
    def barrier_on_the_cpu(*args: Any, device_ids: list[int] | None = None, **kwargs: Any):
        # Accelerate's wait_for_everyone names GPU <local rank>, absent where two processes share one GPU (torch
        # would allocate the barrier's tensor there); without device ids a gloo barrier runs on the CPU
        return barrier(*args, **kwargs)

    dist.barrier = barrier_on_the_cpu
    train_main = runpy.run_path(str(ROOT / "train.py"), run_name="train")["main"]  # the checkout's entry point
    return train_main(train_args)


STAGES: dict[str, Callable[[Stage], None]] = {
    "data": stage_data,
    "step": stage_step,
    "layout_compile": stage_layout_compile,
    "loader": stage_loader,
    "main_job": stage_main_job,
    "ddp": stage_ddp,
}


def run_stage(name: str, work: Path, dry_run: bool, budget_s: float | None = None) -> int:
    stage = Stage(name, work, dry_run, budget_s)
    try:
        STAGES[name](stage)
    except Exception as error:  # recorded for the report; the next stage runs regardless
        traceback.print_exc()
        stage.record(error=f"{type(error).__name__}: {error}")
        return 1
    return 0
