"""The precision decision for every kind of device (pure, no GPU needed), and the CPU probe under AVX2 emulation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from visionclip.precision import BF16Probe, DeviceFacts, decide_precision, inference_autocast

REPO_ROOT = Path(__file__).resolve().parents[1]
# How this project emulates an AVX2-only CPU (an AMD Zen 3 EPYC) on a CPU with AVX512-BF16 or AMX
AVX2_EMULATION = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
MIN_EMULATED_SLOWDOWN = 2.0  # emulated AVX2 runs bf16 6-40x slower than fp32 here

H100 = DeviceFacts("cuda", "NVIDIA H100 80GB HBM3 (compute capability 9.0)", cuda_bf16=True)
V100 = DeviceFacts("cuda", "Tesla V100-SXM2-16GB (compute capability 7.0)", cuda_bf16=False)
FAST = BF16Probe(matmul=0.26, convolution=0.68, seconds=0.05)
SLOW = BF16Probe(matmul=41.0, convolution=6.5, seconds=0.3)
ZEN5 = DeviceFacts("cpu", "AMD EPYC (Zen 5)", cpu_bf16_units=True, onednn_bf16=True, probe=FAST)
ZEN5_EMULATING_AVX2 = DeviceFacts("cpu", "AMD EPYC (Zen 5)", cpu_bf16_units=True, onednn_bf16=False, probe=SLOW)
ZEN3 = DeviceFacts("cpu", "AMD EPYC (Zen 3)", cpu_bf16_units=False, onednn_bf16=False, probe=SLOW)


def test_auto_on_a_gpu_with_bf16_is_bf16():
    choice = decide_precision("auto", H100)
    assert choice.mixed_precision == "bf16" and choice.warning is None
    assert "H100" in choice.reason


def test_auto_on_a_gpu_without_bf16_is_fp16_with_a_scaler():
    choice = decide_precision("auto", V100)
    assert choice.mixed_precision == "fp16" and "gradient scaler" in choice.reason


def test_bf16_on_a_gpu_without_bf16_warns():
    choice = decide_precision("bf16", V100)
    assert choice.mixed_precision == "bf16"
    assert "no bf16 units" in choice.warning and "fp16" in choice.warning


def test_auto_on_a_cpu_with_native_bf16_is_bf16():
    choice = decide_precision("auto", ZEN5)
    assert choice.mixed_precision == "bf16" and choice.warning is None
    assert "faster than fp32" in choice.reason


@pytest.mark.parametrize("facts", [ZEN3, ZEN5_EMULATING_AVX2], ids=["avx2-cpu", "avx2-emulated"])
def test_auto_on_a_cpu_without_native_bf16_is_fp32_and_says_why(facts: DeviceFacts):
    choice = decide_precision("auto", facts)
    assert choice.mixed_precision == "no" and choice.warning is None
    assert choice.reason.startswith("fp32: ")
    assert "AVX512-BF16" in choice.reason or "oneDNN" in choice.reason


def test_a_slow_probe_overrules_the_cpu_flags():
    facts = DeviceFacts("cpu", "some CPU", cpu_bf16_units=True, onednn_bf16=True, probe=SLOW)
    choice = decide_precision("auto", facts)
    assert choice.mixed_precision == "no" and "16.3x slower than fp32" in choice.reason


def test_the_probe_alone_decides_where_torch_cannot_query_the_cpu():
    unknown = DeviceFacts("cpu", "some CPU", probe=FAST)
    assert decide_precision("auto", unknown).mixed_precision == "bf16"
    nothing_known = DeviceFacts("cpu", "some CPU")
    assert decide_precision("auto", nothing_known).mixed_precision == "no"


def test_explicit_bf16_on_a_cpu_without_it_warns_with_the_measured_slowdown():
    choice = decide_precision("bf16", ZEN3)
    assert choice.mixed_precision == "bf16"
    assert "16.3x slower than fp32" in choice.warning and "auto" in choice.warning
    assert decide_precision("bf16", ZEN5).warning is None


def test_fp16_on_a_cpu_runs_fp32_and_warns():
    choice = decide_precision("fp16", ZEN5)
    assert choice.mixed_precision == "no" and "GPU mode" in choice.warning


def test_explicit_fp32_and_other_devices():
    assert decide_precision("no", H100).mixed_precision == "no"
    assert decide_precision("no", ZEN5).mixed_precision == "no"
    mps = DeviceFacts("mps", "mps")
    assert decide_precision("auto", mps).mixed_precision == "no"
    assert decide_precision("bf16", mps).mixed_precision == "bf16"
    with pytest.raises(ValueError, match="fp8"):
        decide_precision("fp8", ZEN5)


def test_the_reason_annotates_the_resolved_yaml_and_it_still_loads():
    import yaml

    choice = decide_precision("auto", ZEN3)
    text = choice.annotate_yaml(yaml.safe_dump({"batch_size": 64, "mixed_precision": "no", "seed": 0}))
    assert "mixed_precision: 'no'  # auto: fp32: the CPU has no AVX512-BF16 or AMX units" in text
    assert yaml.safe_load(text) == {"batch_size": 64, "mixed_precision": "no", "seed": 0}


def _facts_in_a_subprocess(env: dict[str, str]) -> dict:
    code = (
        "import json; from visionclip.precision import device_facts, decide_precision; "
        "facts = device_facts('cpu'); "
        "print(json.dumps({'facts': facts.__dict__ | {'probe': facts.probe.__dict__}, "
        "'slowdown': facts.probe.slowdown, 'auto': decide_precision('auto', facts).mixed_precision}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_probe_sees_the_avx2_emulation_that_the_cpu_flags_miss():
    emulated = _facts_in_a_subprocess(AVX2_EMULATION)
    assert emulated["facts"]["onednn_bf16"] is False
    assert emulated["slowdown"] > MIN_EMULATED_SLOWDOWN, emulated
    assert emulated["auto"] == "no"


def test_the_probe_leaves_the_global_rng_and_thread_count_alone():
    from visionclip.precision import measure_bf16_probe

    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    measure_bf16_probe()
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_inference_autocast_only_for_a_mixed_precision():
    with inference_autocast("no", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with inference_autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
