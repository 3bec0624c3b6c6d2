"""End-to-end training: gradient accumulation, SIGKILL + resume, two processes, and the exported folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from visionclip.schema import FACTS
from visionclip.training.config import TrainConfig

from .conftest import SYNTHETIC

REPO_ROOT = Path(__file__).resolve().parents[2]
TWO_CPU_PROCESSES = REPO_ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"
DATA = ["--synthetic-train", "192", "--synthetic-validation", "96", "--synthetic-image-size", "64"]
COMMON = [
    "--preset",
    "tiny",
    *DATA,
    "--batch-size",
    "16",
    "--warmup-steps",
    "2",
    "--eval-samples",
    "96",
    "--report-to",
    "none",
    "--num-workers",
    "0",
    "--log-every",
    "2",
    "--shuffle-buffer",
    "16",
]


def test_embedded_dataset_uses_the_configured_label_mix(cache_dir: Path):
    from visionclip.synthetic.labels import resolve_prevalence
    from visionclip.training.data import embedded_dataset_dir

    config = TrainConfig(
        synthetic_train=192, synthetic_validation=96, synthetic_image_size=64, cache_dir=str(cache_dir)
    )
    manifest = json.loads((embedded_dataset_dir(config) / "generation.json").read_text())
    assert manifest["prevalence"] == resolve_prevalence(config.synthetic_prevalence)
    assert manifest["prevalence"]["healthy"] == config.synthetic_prevalence["healthy"] != 0.4
    other = TrainConfig(synthetic_prevalence={"healthy": 0.5}, cache_dir=str(cache_dir))
    assert embedded_dataset_dir(other) != embedded_dataset_dir(config)


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK", "WORLD"))}
    env.update(PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def run_train(args: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), *args],
        capture_output=True,
        text=True,
        env=env or environment(),
        cwd=REPO_ROOT,
        **kwargs,
    )


def test_accumulation_keeps_the_contrastive_batch(cache_dir: Path, tmp_path: Path):
    # mixed_precision "no": an exactness check, bf16 rounding would depend on the micro-batch split
    trainer = small_trainer(cache_dir, tmp_path, accum_steps=2, warmup_steps=1)
    trainer.wrapped.eval()  # batch-norm statistics must not depend on the micro-batch split
    batches = trainer.micro_batches()
    first, second = next(batches), next(batches)
    assert len(first["captions"]) == 8
    loss_accumulated = trainer.accumulate_gradients([first, second])
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    trainer.optimizer.zero_grad()

    length = max(first["input_ids"].shape[1], second["input_ids"].shape[1])
    merged = {
        "labels": torch.cat([first["labels"], second["labels"]]),
        "caption_facts": torch.cat([first["caption_facts"], second["caption_facts"]]),
        "pixel_values": torch.cat([first["pixel_values"], second["pixel_values"]]),
    }
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        merged[key] = torch.cat(
            [torch.nn.functional.pad(b[key], (0, length - b[key].shape[1])) for b in (first, second)]
        )
    loss_whole = trainer.accumulate_gradients([merged])
    assert loss_accumulated.item() == pytest.approx(loss_whole.item(), rel=1e-5)  # device tensors
    for name, grad in grads.items():
        torch.testing.assert_close(grad, trainer.model.get_parameter(name).grad, atol=1e-5, rtol=1e-4, msg=name)


class FileNameCaptioner:
    """Captions each row with its file name, so a test can find the rows of a batch."""

    def caption_with_facts(self, record, epoch):
        return record["file_name"], [0] * (2 * len(FACTS))


def images_by_file_name(folder: Path, split: str = "train") -> dict[str, dict]:
    tables = [pq.read_table(path, columns=["file_name", "image"]) for path in sorted(folder.glob(f"data/{split}-*"))]
    return {row["file_name"]: row["image"] for table in tables for row in table.to_pylist()}


def test_the_stream_hands_over_uint8_pixels_that_the_trainer_normalises_like_the_processor(
    cache_dir: Path, tmp_path: Path
):
    trainer = small_trainer(cache_dir, tmp_path, batch_size=8)
    batch = next(trainer.micro_batches())
    assert batch["pixel_values"].dtype == torch.uint8 and batch["pixel_values"].shape[:2] == (8, 3)
    model_inputs = {}
    trainer.wrapped.register_forward_pre_hook(lambda _, args, kwargs: model_inputs.update(kwargs), with_kwargs=True)
    with torch.no_grad():
        trainer._embed(batch)
    images = images_by_file_name(Path(trainer.source))
    expected = trainer.processor.image_processor([images[name] for name in batch["captions"]], return_tensors="pt")
    assert model_inputs["pixel_values"].dtype == torch.float32
    torch.testing.assert_close(model_inputs["pixel_values"], expected["pixel_values"], rtol=0, atol=1e-6)


def small_trainer(cache_dir: Path, output: Path, **overrides):
    from accelerate import Accelerator

    from visionclip.training.run import build_trainer

    settings = dict(
        preset="tiny",
        synthetic_train=192,
        synthetic_validation=96,
        synthetic_image_size=64,
        cache_dir=str(cache_dir),
        batch_size=16,
        num_workers=0,
        augment=False,
        shuffle_buffer=1,
        report_to="none",
        output_dir=str(output),
        mixed_precision="no",
    )
    trainer = build_trainer(TrainConfig(**{**settings, **overrides}), Accelerator(cpu=True, mixed_precision="no"))
    trainer.stream.transform.captioner = FileNameCaptioner()
    return trainer


def test_one_dataloader_serves_every_epoch_with_a_new_order_each_epoch(cache_dir: Path, tmp_path: Path, monkeypatch):
    from visionclip.training import loop

    loaders = []
    make_dataloader = loop.make_dataloader
    monkeypatch.setattr(
        loop, "make_dataloader", lambda *a, **k: loaders.append(make_dataloader(*a, **k)) or loaders[-1]
    )
    trainer = small_trainer(cache_dir, tmp_path, num_workers=2)
    batches = trainer.micro_batches()
    served = [next(batches) for _ in range(30)]  # 12 batches of 16 per epoch of 192 rows
    assert len(loaders) == 1, "a DataLoader (and its worker processes) was created more than once"
    by_epoch: dict[int, list[str]] = {}
    for batch in served:
        by_epoch.setdefault(batch["stream_state"]["epoch"], []).extend(batch["captions"])
    assert sorted(by_epoch) == [0, 1, 2] and trainer.epoch == 2
    assert sorted(by_epoch[0]) == sorted(by_epoch[1]) and len(set(by_epoch[0])) == 192
    assert by_epoch[0] != by_epoch[1]


def test_resume_continues_this_ranks_stream_whatever_epoch_rank_0_was_at(cache_dir: Path, tmp_path: Path):
    from visionclip.training.checkpoint import TRAINER_STATE

    trainer = small_trainer(cache_dir, tmp_path)
    batches = trainer.micro_batches()
    for _ in range(14):  # into the second epoch (12 batches per epoch)
        trainer.stream.record_batch(next(batches))
    trainer.step = 14
    trainer.save()
    expected = [next(batches)["captions"] for _ in range(3)]
    assert trainer.epoch == 1
    # ranks stream independently: rank 0's trainer state may be an epoch behind (or ahead of) this rank
    state_file = tmp_path / "checkpoints" / "step_00000014" / TRAINER_STATE
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "epoch": 0}))

    resumed = small_trainer(cache_dir, tmp_path, resume="latest")
    resumed.resume()
    batches = resumed.micro_batches()
    assert [next(batches)["captions"] for _ in range(3)] == expected
    assert resumed.epoch == 1


def corrupt_copy(source: Path, target: Path) -> Path:
    """`source` with every training image replaced by bytes that are not an image."""
    (target / "data").mkdir(parents=True)
    for path in sorted((source / "data").glob("*.parquet")):
        table = pq.read_table(path)
        if path.name.startswith("train-"):
            column = table.schema.get_field_index("image")
            broken = pa.array(
                [{"bytes": b"not an image", "path": None}] * table.num_rows, type=table.schema.field(column).type
            )
            table = table.set_column(column, "image", broken)
        pq.write_table(table, target / "data" / path.name)
    return target


HANG_GUARD_S = 300  # these runs used to hang: a regression fails here instead of hanging CI


@pytest.mark.parametrize("cause", ["batch larger than the data", "filter rejects every row", "every image corrupt"])
def test_an_epoch_without_a_batch_is_an_error_naming_the_cause(cache_dir: Path, tmp_path: Path, cause: str):
    from visionclip.training.data import embedded_dataset_dir

    args = [*COMMON, "--cache-dir", str(cache_dir), "--output-dir", str(tmp_path / "run"), "--max-steps", "4"]
    args += ["--eval-every", "0"]
    if cause == "batch larger than the data":
        args += ["--synthetic-train", "96", "--batch-size", "512"]
        expected = [r"read 96 rows", r"fewer than one batch of 512"]
    elif cause == "filter rejects every row":
        args += ["--filters", '{"is_fundus": [7]}', "--num-workers", "2"]
        expected = [r"is_fundus in \[7\] rejected all 96 rows", r"values found: \[[0-9, ]+\]"]
    else:
        embedded = embedded_dataset_dir(
            TrainConfig(
                synthetic_train=192, synthetic_validation=96, synthetic_image_size=64, cache_dir=str(cache_dir)
            )
        )
        args += ["--dataset", str(corrupt_copy(embedded, tmp_path / "corrupt"))]
        expected = [r"192 of 192 images could not be read", r"e\.g\. \S+: .*not a readable image"]
    completed = run_train(args, timeout=HANG_GUARD_S)
    assert completed.returncode != 0
    assert "yielded no batch in epoch 0" in completed.stderr, completed.stderr[-3000:]
    for pattern in expected:
        assert re.search(pattern, completed.stderr), (pattern, completed.stderr[-3000:])
    assert len(completed.stderr) < 20_000, "unbounded error output"


def test_sigkill_then_resume_latest_continues_and_exports(cache_dir: Path, tmp_path: Path):
    output = tmp_path / "run"
    args = [
        *COMMON,
        "--cache-dir",
        str(cache_dir),
        "--output-dir",
        str(output),
        "--max-steps",
        "24",
        "--save-every",
        "4",
        "--eval-every",
        "0",
        "--keep-checkpoints",
        "2",
    ]
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "train.py"), *args],
        env=environment(),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    target = output / "checkpoints" / "step_00000008"
    deadline = time.monotonic() + 600
    while not target.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert target.exists(), "the first run never reached its second checkpoint"
    assert not (output / "model").exists(), "the run was meant to be killed before finishing"

    resumed = run_train([*args, "--resume", "latest"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    match = re.search(r"resumed from \S+step_(\d+) at step (\d+) \(lr ([\d.e+-]+)\)", resumed.stdout + resumed.stderr)
    assert match, resumed.stdout[-2000:]
    step = int(match.group(2))
    assert step >= 8 and step == int(match.group(1)) and step % 4 == 0
    from visionclip.training.optim import warmup_cosine

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = warmup_cosine(optimizer, 2, 24, 1e-5 / 1e-3)
    for _ in range(step):
        optimizer.step()
        schedule.step()
    assert float(match.group(3)) == pytest.approx(schedule.get_last_lr()[0], rel=1e-2)
    state = json.loads((output / "checkpoints" / "step_00000024" / "trainer_state.json").read_text())
    assert state["step"] == 24
    assert [p.name for p in sorted((output / "checkpoints").iterdir())] == ["step_00000020", "step_00000024"]

    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from transformers import AutoModel, pipeline; "
            "m = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True); "
            "p = pipeline('zero-shot-image-classification', model=sys.argv[1], trust_remote_code=True); "
            "r = p(sys.argv[1] + '/examples/normal.png', candidate_labels=['glaucoma', 'a normal fundus']); "
            "print(type(m).__name__, round(sum(x['score'] for x in r), 4))",
            str(output / "model"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**environment(), "PYTHONPATH": "", "HF_HOME": str(tmp_path / "hf")},
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.split() == ["VisionCLIPModel", "1.0"]


def launch_two_processes(args: list[str], config_file: Path = TWO_CPU_PROCESSES) -> subprocess.CompletedProcess:
    """`accelerate launch` of train.py; the timeout only turns a hang into a failure."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]
    return subprocess.run(
        [*command, str(REPO_ROOT / "train.py"), *COMMON, *args],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=REPO_ROOT,
        timeout=900,
    )


def scheduled_lr(step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning rate after `step` optimizer steps of the default schedule (lr 1e-3, min_lr 1e-5)."""
    from visionclip.training.optim import warmup_cosine

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = warmup_cosine(optimizer, warmup_steps, total_steps, 1e-5 / 1e-3)
    for _ in range(step):
        optimizer.step()
        schedule.step()
    return schedule.get_last_lr()[0]


def logged_scalars(logs: Path, tag: str) -> dict[int, float]:
    """{step: value} of one scalar in the TensorBoard event files under `logs`."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    runs = EventMultiplexer().AddRunsFromDirectory(str(logs)).Reload()
    logged = [run for run, tags in runs.Runs().items() if tag in tags["scalars"]]
    return {event.step: event.value for run in logged for event in runs.Scalars(run, tag)}


def test_two_cpu_processes_with_accelerate_launch_and_resume(cache_dir: Path, tmp_path: Path):
    output = tmp_path / "ddp"
    args = ["--cache-dir", str(cache_dir), "--output-dir", str(output), "--max-steps", "6", "--save-every", "3"]
    completed = launch_two_processes([*args, "--eval-every", "0", "--report-to", "tensorboard"])
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "2 process(es)" in completed.stdout
    checkpoint = output / "checkpoints" / "step_00000006"
    for rank in (0, 1):
        assert json.loads((checkpoint / f"stream_rank{rank}.json").read_text())["rank"] == rank
        assert json.loads((checkpoint / f"rng_rank{rank}.json").read_text())["torch"]
    assert (output / "model" / "model.safetensors").is_file()
    # the schedule advances once per optimizer step, however many processes take it (logged every 2 steps)
    rates = logged_scalars(output / "logs", "train/lr")
    assert rates.keys() == {2, 4, 6}
    for step, rate in rates.items():
        assert rate == pytest.approx(scheduled_lr(step, warmup_steps=2, total_steps=6), rel=1e-5), step

    resumed = launch_two_processes([*args, "--eval-every", "0", "--resume", "latest", "--max-steps", "9"])
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "step_00000006 at step 6" in resumed.stdout
    assert json.loads((output / "checkpoints" / "step_00000009" / "trainer_state.json").read_text())["step"] == 9


def corrupt_first_page(shard: Path) -> None:
    """Overwrite the header of a parquet file's first data page, as a bad sector would; the footer stays valid,
    so the file lists and opens, and fails only when its rows are read."""
    data = bytearray(shard.read_bytes())
    data[4:68] = b"\xff" * 64
    shard.write_bytes(bytes(data))


def test_an_unreadable_shard_of_one_process_stops_every_process_with_its_message(cache_dir: Path, tmp_path: Path):
    from visionclip.training.data import embedded_dataset_dir

    dataset = tmp_path / "dataset"
    shutil.copytree(embedded_dataset_dir(TrainConfig(**SYNTHETIC, cache_dir=str(cache_dir))), dataset)
    for shard in sorted((dataset / "data").glob("train-*.parquet"))[1::2]:  # the files process 1 of 2 reads
        corrupt_first_page(shard)
    completed = launch_two_processes(
        ["--dataset", str(dataset), "--output-dir", str(tmp_path / "run"), "--max-steps", "6", "--eval-every", "0"]
    )
    assert completed.returncode != 0
    # the main process, which read nothing wrong, stops with process 1's error instead of waiting for it
    assert re.search(r"train.py: error: process 1 of 2 failed: OSError: .*page header", completed.stderr), (
        completed.stderr[-4000:]
    )


def test_fsdp_is_refused_with_ddp_as_the_path(cache_dir: Path, tmp_path: Path):
    launch_config = yaml.safe_load(TWO_CPU_PROCESSES.read_text()) | {
        "distributed_type": "FSDP",
        "fsdp_config": {"fsdp_version": 2, "fsdp_reshard_after_forward": True},
    }
    fsdp = tmp_path / "fsdp.yaml"
    fsdp.write_text(yaml.safe_dump(launch_config))
    args = ["--cache-dir", str(cache_dir), "--output-dir", str(tmp_path / "run"), "--max-steps", "3"]
    completed = launch_two_processes(args, config_file=fsdp)
    assert completed.returncode != 0
    assert "train.py: error: FSDP is not supported" in completed.stderr, completed.stderr[-4000:]
    assert "configs/accelerate/8gpu_ddp.yaml" in completed.stderr


def test_bad_dataset_path_fails_with_a_message(tmp_path: Path):
    completed = run_train(
        [
            "--dataset",
            str(tmp_path / "nowhere"),
            "--output-dir",
            str(tmp_path / "x"),
            "--report-to",
            "none",
            "--preset",
            "tiny",
        ]
    )
    assert completed.returncode != 0
    assert "nowhere" in completed.stderr and "does not exist" in completed.stderr


def test_small_pretrained_trains_from_its_packaged_towers(short_run, tmp_path: Path):
    from safetensors.torch import load_file

    from towers_visionclip import SQUEEZE_EXCITE_OPEN_BIAS

    args = short_run(tmp_path / "run", "--preset", "small-pretrained", "--max-steps", "2", "--batch-size", "4")
    env = {**environment(), "VISIONCLIP_CACHE": str(tmp_path / "cache")}
    # the timeout only makes a regression fail instead of hanging
    completed = run_train([*args, "--save-every", "2"], timeout=900, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    exported = tmp_path / "run" / "model"
    config = json.loads((exported / "config.json").read_text())
    assert config["vision_config"]["model_type"] == "efficientnet" and config["text_pooling"] == "mean"
    weights = load_file(exported / "model.safetensors")
    gates = [tensor for name, tensor in weights.items() if name.endswith("squeeze_excite.expand.bias")]
    assert gates and all(torch.all(gate == SQUEEZE_EXCITE_OPEN_BIAS) for gate in gates)  # still exact identities
    assert (tmp_path / "cache" / "towers" / "efficientnet-lite0" / "model.safetensors").is_file()
