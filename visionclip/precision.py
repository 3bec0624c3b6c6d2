"""Which mixed precision to run in: bf16 only where the device runs it natively, found out rather than assumed.

A CPU without AVX512-BF16 or AMX units runs bf16 matrix products and convolutions 30-50x slower than fp32 (an AMD
Zen 3 EPYC: 20 hours instead of 10 minutes for the main job), so `auto` (the default everywhere) picks:

- CUDA: bf16 where the GPU computes in it (compute capability 8.0+), else fp16 (Accelerate adds a gradient scaler);
- CPU: bf16 only where the CPU reports bf16 units, oneDNN will use them, and a sub-second probe runs bf16 no slower
  than fp32; else fp32. The probe is what sees an ISA capped by the environment (`ONEDNN_MAX_CPU_ISA=AVX2`,
  `ATEN_CPU_CAPABILITY=avx2` emulate an AVX2-only CPU), which the CPU flags do not;
- any other device: fp32.

`decide_precision` is the decision, a pure function of `DeviceFacts`; `device_facts` gathers them; and
`resolve_precision` does both, on the main process only when several run, so that all of them agree.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

PRECISIONS = ("auto", "no", "bf16", "fp16")
# `auto` takes bf16 on a CPU only where the probe ran it no slower than fp32 (natively it runs 2-4x faster;
# emulated on AVX2, 6-40x slower, so the threshold sits far from both).
MAX_NATIVE_SLOWDOWN = 1.0


@dataclass(frozen=True)
class BF16Probe:
    """Time of bf16 autocast over fp32, single-threaded, for a 256x256 matrix product and a 3x3 convolution."""

    matmul: float
    convolution: float
    seconds: float  # how long the probe took

    @property
    def slowdown(self) -> float:
        """The geometric mean of the two ratios: above 1, bf16 is slower than fp32."""
        return math.sqrt(self.matmul * self.convolution)

    def describe(self) -> str:
        speed = f"{self.slowdown:.1f}x slower than" if self.slowdown > 1 else f"{1 / self.slowdown:.1f}x faster than"
        return (
            f"bf16 measured {speed} fp32 (matmul {self.matmul:.2f}x, 3x3 convolution {self.convolution:.2f}x the "
            "fp32 time)"
        )


@dataclass(frozen=True)
class DeviceFacts:
    """What the decision needs to know about a device; None where it was not asked or could not be told."""

    device_type: str
    device_name: str
    cuda_bf16: bool | None = None  # the GPU computes in bf16 (compute capability 8.0+), not emulated
    cpu_bf16_units: bool | None = None  # CPUID reports AVX512-BF16 or AMX tiles
    onednn_bf16: bool | None = None  # oneDNN will use bf16 instructions (honours ONEDNN_MAX_CPU_ISA)
    probe: BF16Probe | None = None  # measured bf16 over fp32 time on this CPU


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses (`mixed_precision`, Accelerate's value), why, and a warning for a poor request."""

    requested: str
    mixed_precision: str
    reason: str
    facts: DeviceFacts
    warning: str | None = None

    def summary(self) -> str:
        return f"mixed precision {self.requested} -> {self.mixed_precision}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def annotate_yaml(self, text: str) -> str:
        """A resolved YAML configuration with the reason as a comment on its `mixed_precision` line (the file
        stays loadable with `--config`)."""
        lines = text.splitlines()
        for index, line in enumerate(lines):
            if line.startswith("mixed_precision:"):
                lines[index] = f"{line}  # {self.requested}: {self.reason}"
        return "\n".join(lines) + "\n"


def decide_precision(requested: str, facts: DeviceFacts) -> PrecisionChoice:
    """The precision to run in for a request (`auto`, `no`, `bf16` or `fp16`) on a device described by `facts`."""
    if requested not in PRECISIONS:
        raise ValueError(f"mixed precision must be one of {PRECISIONS}, got {requested!r}")
    if requested == "no":
        return PrecisionChoice(requested, "no", "fp32, as requested", facts)
    if facts.device_type == "cuda":
        return _decide_cuda(requested, facts)
    if facts.device_type == "cpu":
        return _decide_cpu(requested, facts)
    if requested == "auto":
        return PrecisionChoice(requested, "no", f"no measured rule for {facts.device_type} devices: fp32", facts)
    return PrecisionChoice(requested, requested, f"{requested}, as requested", facts)


def _decide_cuda(requested: str, facts: DeviceFacts) -> PrecisionChoice:
    name = facts.device_name
    if facts.cuda_bf16:
        if requested == "auto":
            return PrecisionChoice(requested, "bf16", f"{name} computes in bf16", facts)
        return PrecisionChoice(requested, requested, f"{requested}, as requested ({name} also has bf16)", facts)
    if requested == "auto":
        return PrecisionChoice(requested, "fp16", f"{name} has no bf16 units: fp16 with a gradient scaler", facts)
    if requested == "bf16":
        warning = (
            f"bf16 requested on {name}, which has no bf16 units (compute capability below 8.0): it is emulated or "
            "refused there; --mixed-precision auto picks fp16 with a gradient scaler"
        )
        return PrecisionChoice(requested, "bf16", "bf16, as requested (not native here)", facts, warning)
    return PrecisionChoice(requested, "fp16", "fp16 with a gradient scaler, as requested", facts)


def cpu_bf16_verdict(facts: DeviceFacts) -> tuple[bool, str]:
    """Whether this CPU runs bf16 natively, and the evidence, from whichever facts are known: no to any of units,
    oneDNN or probe is no; the probe, where measured, has the last word."""
    evidence = [
        {
            True: "the CPU reports AVX512-BF16 or AMX",
            False: "the CPU has no AVX512-BF16 or AMX units",
            None: "the CPU's bf16 units are unknown",
        }[facts.cpu_bf16_units]
    ]
    if facts.onednn_bf16 is False:
        evidence.append("oneDNN will not use bf16 instructions here (ONEDNN_MAX_CPU_ISA may cap it)")
    if facts.probe is not None:
        evidence.append(facts.probe.describe())
        measured_native = facts.probe.slowdown <= MAX_NATIVE_SLOWDOWN
    else:
        measured_native = bool(facts.cpu_bf16_units or facts.onednn_bf16)
    native = facts.cpu_bf16_units is not False and facts.onednn_bf16 is not False and measured_native
    return native, "; ".join(evidence)


def _decide_cpu(requested: str, facts: DeviceFacts) -> PrecisionChoice:
    native, evidence = cpu_bf16_verdict(facts)
    if requested == "auto":
        return PrecisionChoice(
            requested, "bf16" if native else "no", f"{'bf16' if native else 'fp32'}: {evidence}", facts
        )
    if requested == "fp16":
        warning = "fp16 mixed precision is a GPU mode (with a gradient scaler); Accelerate runs fp32 on a CPU"
        return PrecisionChoice(requested, "no", "fp32: fp16 is not run on a CPU", facts, warning)
    if native:
        return PrecisionChoice(requested, "bf16", f"bf16, as requested: {evidence}", facts)
    measured = "" if facts.probe else "; bf16 speed not measured"
    warning = (
        f"bf16 requested on a CPU without native bf16 ({evidence}{measured}); --mixed-precision auto picks fp32 here"
    )
    return PrecisionChoice(requested, "bf16", f"bf16, as requested, not native: {evidence}", facts, warning)


# ------------------------------------------------------------------------------------------- measuring


def _best_time(function: Callable[[], Any], budget_s: float = 0.05, at_least: int = 3, at_most: int = 50) -> float:
    function()  # warm-up: oneDNN builds its kernels on the first call
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < at_least or (time.perf_counter() - started < budget_s and len(times) < at_most):
        tick = time.perf_counter()
        function()
        times.append(time.perf_counter() - tick)
    return min(times)


@torch.no_grad()
def measure_bf16_probe() -> BF16Probe:
    """bf16 autocast over fp32 time on this CPU, one thread (no waiting for cores that other processes hold, so
    the ratio is steady on a busy machine); about 0.05 s natively, 0.3 s where bf16 is emulated."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)  # leaves the global RNG, and so seeded runs, untouched
        a, b = torch.randn(256, 256, generator=generator), torch.randn(256, 256, generator=generator)
        images = torch.randn(2, 32, 32, 32, generator=generator).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(32, 32, 3, 3, generator=generator) / 17

        def convolution(x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.conv2d(x, weight, padding=1)

        def in_bf16(function: Callable[[], Any]) -> Callable[[], Any]:
            def run() -> Any:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return function()

            return run

        matmul32, matmul16 = _best_time(lambda: a @ b), _best_time(in_bf16(lambda: a @ b))
        conv32, conv16 = _best_time(lambda: convolution(images)), _best_time(in_bf16(lambda: convolution(images)))
    finally:
        torch.set_num_threads(threads)
    return BF16Probe(matmul16 / matmul32, conv16 / conv32, time.perf_counter() - started)


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "CPU"


def _query(function_name: str, owner: Any) -> bool | None:
    function = getattr(owner, function_name, None)
    try:
        return bool(function()) if function is not None else None
    except RuntimeError:
        return None


def device_facts(device: torch.device | str, probe: bool = True) -> DeviceFacts:
    """Gather what `decide_precision` needs about `device`; `probe=False` skips the CPU measurement."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        capability = torch.cuda.get_device_capability(index)
        name = f"{torch.cuda.get_device_name(index)} (compute capability {capability[0]}.{capability[1]})"
        return DeviceFacts("cuda", name, cuda_bf16=capability[0] >= 8)
    if device.type != "cpu":
        return DeviceFacts(device.type, device.type)
    units = [_query(name, torch.cpu) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return DeviceFacts(
        "cpu",
        _cpu_name(),
        cpu_bf16_units=None if None in units else any(units),
        onednn_bf16=_query("_is_mkldnn_bf16_supported", torch.ops.mkldnn),
        probe=measure_bf16_probe() if probe else None,
    )


def resolve_precision(requested: str, device: torch.device | str) -> PrecisionChoice:
    """Decide for `device`. Under torch.distributed the main process measures and decides for every process (a
    probe on each could disagree on a busy machine)."""
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    choice: list[PrecisionChoice | None] = [None]
    if not distributed or dist.get_rank() == 0:
        measure = requested in ("auto", "bf16")
        choice[0] = decide_precision(requested, device_facts(device, probe=measure))
    if distributed:
        dist.broadcast_object_list(choice, src=0)
    assert choice[0] is not None
    return choice[0]


def inference_autocast(precision: str, device: torch.device | str) -> AbstractContextManager:
    """Autocast for encoding images at inference in the resolved `precision` (`no`: none)."""
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtypes[precision])
