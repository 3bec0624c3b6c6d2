"""bf16 against fp32 on this CPU, natively and with the instruction set capped to AVX2, in the same run.

A CPU without AVX512-BF16 or AMX runs bf16 matrix products and convolutions many times slower than fp32, which is
why `--mixed-precision auto` measures before it picks. This bench shows both sides on one machine: each setting
runs in a fresh process, natively and under `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` (the emulation of an
AVX2-only CPU that the tests and the README's AVX2 figures use), with both cores:

- a 1024 x 1024 matrix product (GFLOP/s), fp32 and under bf16 autocast;
- a 3x3 convolution, 64 -> 64 channels on 64 channels-last images of 96 px (seconds), fp32 and bf16 autocast;
- one training step of the `small` preset as the main job runs it (batch 64, 192 px, channels-last, fp32 and bf16);
- what `--mixed-precision auto` picks, and why.

    python bench/bench_precision.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def best_seconds(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def in_bf16(function):
    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return function()

    return run


def kernels() -> dict[str, float]:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    images = torch.randn(64, 64, 96, 96).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(64, 64, 3, 3) / 24

    def matmul():
        return a @ b

    def convolution():
        return torch.nn.functional.conv2d(images, weight, padding=1)

    flops = 2 * 1024**3
    return {
        "matmul_fp32_gflops": flops / best_seconds(matmul, 10) / 1e9,
        "matmul_bf16_gflops": flops / best_seconds(in_bf16(matmul), 2) / 1e9,
        "conv_fp32_s": best_seconds(convolution, 3),
        "conv_bf16_s": best_seconds(in_bf16(convolution), 2),
    }


def training_steps() -> dict[str, float]:
    from visionclip.factory import build_model

    torch.manual_seed(0)
    model, _ = build_model("small")
    model.train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    pixels = torch.randn(64, 3, 192, 192).contiguous(memory_format=torch.channels_last)
    lengths = torch.randint(12, 64, (64,))  # captions of the knowledge base: about 30 tokens, padded to the longest
    mask = (torch.arange(64) < lengths[:, None]).long()
    ids = torch.randint(5, 100, (64, 64)) * mask

    def step():
        loss = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, return_loss=True).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return {
        "step_fp32_img_s": 64 / best_seconds(step, 3),
        "step_bf16_img_s": 64 / best_seconds(in_bf16(step), 1),
    }


def measure() -> dict:
    from visionclip.precision import resolve_precision

    torch.set_num_threads(os.cpu_count() or 1)
    choice = resolve_precision("auto", "cpu")
    return {**kernels(), **training_steps(), "auto": choice.summary(), "cpu": choice.facts.device_name}


def cpu_description() -> str:
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    flags = fields.get("Flags", "")
    units = [name for name in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {name}" in f" {flags}"]
    return (
        f"{fields.get('Model name', '?').strip()} (family {fields.get('CPU family', '?').strip()}, model "
        f"{fields.get('Model', '?').strip()}), {os.cpu_count()} cores, flags: {', '.join(units)}"
    )


def run_in_process(extra_env: dict[str, str]) -> dict:
    env = {**os.environ, **extra_env}
    done = subprocess.run([sys.executable, __file__, "--measure"], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if "--measure" in sys.argv:
        print(json.dumps(measure()))
        return
    print(f"CPU: {cpu_description()}; torch {torch.__version__}")
    runs = {"native": run_in_process({}), "AVX2 cap": run_in_process(AVX2)}
    print(
        "| ISA | matmul 1024² fp32 | bf16 | bf16 / fp32 time | conv 3x3 fp32 | bf16 | ratio "
        "| small step fp32 | bf16 | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        print(
            f"| {name} | {r['matmul_fp32_gflops']:.1f} GFLOP/s | {r['matmul_bf16_gflops']:.1f} GFLOP/s "
            f"| {r['matmul_fp32_gflops'] / r['matmul_bf16_gflops']:.1f}x | {r['conv_fp32_s']:.3f} s "
            f"| {r['conv_bf16_s']:.3f} s | {r['conv_bf16_s'] / r['conv_fp32_s']:.1f}x "
            f"| {r['step_fp32_img_s']:.1f} img/s | {r['step_bf16_img_s']:.1f} img/s "
            f"| {r['step_fp32_img_s'] / r['step_bf16_img_s']:.1f}x |"
        )
    for name, r in runs.items():
        print(f"{name}: {r['auto']}")


if __name__ == "__main__":
    main()
