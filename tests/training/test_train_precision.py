"""train.py on an emulated AVX2-only CPU: `auto` (the default) trains in fp32 and says why; bf16 asked for warns."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from visionclip.training.config import TrainConfig
from visionclip.training.data import ensure_embedded_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
AVX2_EMULATION = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
DATA = {"synthetic_train": 64, "synthetic_validation": 32, "synthetic_image_size": 64}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("visionclip_cache")
    ensure_embedded_dataset(TrainConfig(**DATA, cache_dir=str(cache)), workers=1)
    return cache


def train_emulating_avx2(cache_dir: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in DATA.items()]
    command = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        *flags,
        *("--preset", "tiny", "--batch-size", "16", "--max-steps", "1", "--warmup-steps", "0"),
        *("--eval-every", "0", "--eval-samples", "32", "--report-to", "none", "--num-workers", "0"),
        *("--shuffle-buffer", "16", "--cache-dir", str(cache_dir), "--output-dir", str(output), *extra),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK", "WORLD"))}
    env.update(PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **AVX2_EMULATION)
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=900)


def test_auto_picks_fp32_on_an_avx2_cpu_and_says_why(cache_dir: Path, tmp_path: Path):
    done = train_emulating_avx2(cache_dir, tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    reason = r"fp32: .*oneDNN will not use bf16 instructions.*bf16 measured [\d.]+x slower than fp32"
    assert re.search(r"mixed precision auto -> no: " + reason, done.stdout + done.stderr), done.stdout[-3000:]
    saved = (tmp_path / "run" / "training_config.yaml").read_text()
    assert re.search(r"^mixed_precision: 'no'  # auto: " + reason, saved, re.MULTILINE), saved
    assert saved in done.stdout  # the printed resolved configuration is the saved one
    assert yaml.safe_load(saved)["mixed_precision"] == "no"


def test_bf16_asked_for_on_an_avx2_cpu_warns_with_the_measured_slowdown(cache_dir: Path, tmp_path: Path):
    done = train_emulating_avx2(cache_dir, tmp_path / "run", "--mixed-precision", "bf16")
    assert done.returncode == 0, done.stderr[-3000:]
    warning = re.search(
        r"warning: bf16 requested on a CPU without native bf16 \(.*?([\d.]+)x slower than fp32", done.stderr
    )
    assert warning, done.stderr[-3000:]
    assert float(warning.group(1)) > 1
    saved = yaml.safe_load((tmp_path / "run" / "training_config.yaml").read_text())
    assert saved["mixed_precision"] == "bf16"
