"""How bench/gpu_check.py times things: a device's matmul peak, a Trainer's steps and FLOPs, a loader's images/s.
Nothing here knows about stages, budgets or where figures are recorded (gpu_check_stages.py does)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_device(device) -> dict[str, Any]:
    import torch

    if device.type != "cuda":
        from visionclip.precision import device_facts

        return {"type": device.type, "name": device_facts(device, probe=False).device_name}
    properties = torch.cuda.get_device_properties(device)
    return {
        "type": "cuda",
        "name": properties.name,
        "compute_capability": f"{properties.major}.{properties.minor}",
        "memory_gib": round(properties.total_memory / 2**30, 1),
        "multiprocessors": properties.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def with_trainer(accelerator, config, measure: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """`measure(trainer)` on a fresh Trainer; running out of GPU memory is a result, not a failure."""
    import torch

    from visionclip.training.run import build_trainer

    trainer = None
    try:
        trainer = build_trainer(config, accelerator)
        return measure(trainer)
    except torch.OutOfMemoryError as error:
        return {"status": "out of memory", "message": str(error).splitlines()[0]}
    finally:
        trainer = None
        accelerator.free_memory()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def first_micro_batches(trainer) -> list[dict[str, Any]]:
    trainer.train_mode()
    batches = trainer.micro_batches()
    micro = [next(batches) for _ in range(trainer.config.accum_steps)]
    batches.close()  # stops the loader workers
    return micro


def timed_steps(trainer, micro: list[dict[str, Any]], steps: int, warmup: int, progress=None) -> dict[str, Any]:
    """Images/s of `steps` optimizer steps on the batch `micro` (the loader is measured on its own), after `warmup`
    untimed ones; `progress(values)` hears the warm-up's seconds as soon as it ends."""
    import torch

    device = trainer.accelerator.device
    trainer.train_mode()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(warmup):
        trainer.train_step(micro)
    synchronize(device)
    warmup_s, started = time.perf_counter() - started, time.perf_counter()
    if progress is not None:
        progress({"warmup_steps_s": round(warmup_s, 2)})
    for _ in range(steps):
        loss = trainer.train_step(micro)
    synchronize(device)
    elapsed = time.perf_counter() - started
    cuda = device.type == "cuda"
    return {
        "images_per_s": round(steps * trainer.config.batch_size / elapsed, 1),
        "step_s": round(elapsed / steps, 4),
        "warmup_steps_s": round(warmup_s, 2),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved(device) / 2**30, 2) if cuda else None,
        "channels_last": getattr(trainer, "channels_last", None),
        "caption_tokens": int(micro[0]["input_ids"].shape[1]),
        "loss": float(loss),
    }


def step_flops_per_image(trainer) -> dict[str, Any]:
    """FLOPs of one optimizer step (forward + backward) per image, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    micro = first_micro_batches(trainer)
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(micro)
    return {"flops_per_image": counter.get_total_flops() / trainer.config.batch_size}


def matmul_peak(device, dtype, size: int) -> float:
    """FLOP/s of a square matrix product, the best this device does in `dtype`."""
    import torch

    repeats = 50 if device.type == "cuda" else 10  # 8192^3 in bf16 takes about 1.4 ms on an H100
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def loader_rate(trainer) -> dict[str, Any]:
    """Images/s over one pass of the set after the first batch (worker start-up is timed on its own)."""
    batches = trainer.micro_batches()
    started = time.perf_counter()
    next(batches)
    first, images = time.perf_counter(), 0
    last = first
    for batch in batches:
        if trainer.epoch > 0:  # the pass is over
            break
        images, last = images + len(batch["labels"]), time.perf_counter()
    batches.close()
    rate = images / (last - first) if images else None
    return {"images_per_s": rate and round(rate, 1), "first_batch_s": round(first - started, 2), "images": images}
