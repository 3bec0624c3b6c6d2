from __future__ import annotations

import pytest
import torch

from visionclip.factory import build_model
from visionclip.hardware import channels_last_is_safe, fused_optimizer, text_length_groups, tune_backends

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    """`tiny` has 8-channel convolutions, `small` none narrower than 32."""
    return {name: build_model(name)[0] for name in ("tiny", "small")}


@pytest.mark.parametrize(
    "preset, checkpointing, device, safe",
    [
        ("small", False, CPU, True),
        ("small", True, CPU, False),  # oneDNN's backward crashes under activation checkpointing
        ("tiny", False, CPU, False),  # ... and for 8-channel convolutions
        ("small", True, CUDA, True),  # cuDNN has neither problem: the GPU recipe checkpoints
        ("tiny", False, CUDA, True),
    ],
)
def test_channels_last_is_off_only_where_the_cpu_backend_crashes(models, preset, checkpointing, device, safe):
    assert channels_last_is_safe(models[preset], checkpointing, device) is safe


@pytest.mark.parametrize("device, fused", [(CPU, False), (CUDA, True)])
def test_fused_adamw_on_cuda(device: torch.device, fused: bool):
    assert fused_optimizer(device) is fused


@pytest.mark.parametrize("device, groups", [(CPU, 4), (CUDA, 1)])
def test_captions_are_grouped_by_length_on_cpus_only(device: torch.device, groups: int):
    assert text_length_groups(device) == groups


@pytest.fixture
def restored_backends():
    saved = (
        torch.backends.cuda.matmul.fp32_precision,
        torch.backends.cudnn.conv.fp32_precision,
        torch.backends.cudnn.benchmark,
    )
    yield
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved[:2]
    torch.backends.cudnn.benchmark = saved[2]


def backends() -> tuple[str, str, bool]:
    cudnn = torch.backends.cudnn
    return torch.backends.cuda.matmul.fp32_precision, cudnn.conv.fp32_precision, cudnn.benchmark


def test_tf32_and_cudnn_benchmark_on_cuda_only(restored_backends):
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cudnn.benchmark = False
    tune_backends(CPU)
    assert backends() == ("ieee", "ieee", False)
    tune_backends(CUDA)
    assert backends() == ("tf32", "tf32", True)
