"""The optimizer step: non-finite batches and gradients are skipped without a trace, batch-norm statistics see each
image once, accumulation reads nothing back to the host, and torch.compile wraps the prepared model."""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from visionclip.hardware import text_length_groups
from visionclip.training.config import TrainConfig
from visionclip.training.export import export_model
from visionclip.training.loop import TEXT_KEYS, NonFiniteLossError, Trainer
from visionclip.training.run import build_trainer

from .conftest import SYNTHETIC

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_trainer(cache_dir: Path, tmp_path: Path):
    def make(**overrides) -> Trainer:
        options = {
            "preset": "tiny",
            **SYNTHETIC,
            "cache_dir": str(cache_dir),
            "batch_size": 16,
            "num_workers": 0,
            "augment": False,
            "report_to": "none",
            "output_dir": str(tmp_path / "run"),
            "warmup_steps": 1,
            "shuffle_buffer": 1,
            "mixed_precision": "no",
            "lock_image": False,  # the mechanics under test (batch-norm updates, gradients) need a trained image tower
            **overrides,
        }
        trainer = build_trainer(TrainConfig(**options), Accelerator(cpu=True, mixed_precision="no"))
        trainer.train_mode()
        return trainer

    return make


def training_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every tensor a step may change: parameters (the logit scale and the loss's own included), buffers such as
    batch-norm running statistics, and the optimizer's moments and step counts."""
    state = {f"parameter {n}": p.detach().clone() for n, p in trainer.model.named_parameters()}
    state |= {f"loss parameter {n}": p.detach().clone() for n, p in trainer.loss_fn.named_parameters()}
    state |= {f"buffer {n}": b.clone() for n, b in trainer.model.named_buffers()}
    for index, values in trainer.optimizer.state_dict()["state"].items():
        state |= {f"optimizer {index} {k}": v.clone() for k, v in values.items() if isinstance(v, torch.Tensor)}
    return state


def assert_unchanged(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    assert before.keys() == after.keys()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert not changed, f"a skipped step changed {changed[:5]} ({len(changed)} tensors)"


def assert_finite(state: dict[str, torch.Tensor]) -> None:
    broken = [name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    assert not broken, f"non-finite: {broken[:5]}"


@contextmanager
def overflowing(trainer: Trainer) -> Iterator[None]:
    """While inside, the first convolution's output holds one infinite value, as an overflow would give; the batch
    norm after it then sees a non-finite batch (the stream's uint8 pixels cannot hold one themselves)."""

    def overflow(module, inputs, output):
        output = output.clone()
        output[0, 0, 0, 0] = math.inf
        return output

    handle = trainer.model.vision_model.embedder.embedder.convolution.register_forward_hook(overflow)
    try:
        yield
    finally:
        handle.remove()


def test_a_non_finite_step_mid_run_leaves_no_trace_and_the_run_continues(make_trainer):
    trainer = make_trainer()
    batches = trainer.micro_batches()
    assert math.isfinite(trainer.train_step([next(batches)]))  # the optimizer has state from here on
    before = training_state(trainer)

    with overflowing(trainer):
        loss = trainer.train_step([next(batches)])
    assert not math.isfinite(loss) and trainer.nonfinite_in_a_row == trainer.nonfinite_total == 1
    assert_unchanged(before, training_state(trainer))

    assert math.isfinite(trainer.train_step([next(batches)]))
    assert trainer.nonfinite_in_a_row == 0
    after = training_state(trainer)
    assert_finite(after)
    assert not torch.equal(after["parameter visual_projection.weight"], before["parameter visual_projection.weight"])


def test_non_finite_steps_in_a_row_stop_the_run_naming_the_cause_with_the_model_intact(make_trainer):
    trainer = make_trainer(max_nonfinite=2, accum_steps=2)
    batches = trainer.micro_batches()
    before = training_state(trainer)
    with overflowing(trainer):
        trainer.train_step([next(batches), next(batches)])
        with pytest.raises(NonFiniteLossError, match="2 non-finite steps in a row .* non-finite loss"):
            trainer.train_step([next(batches), next(batches)])
    assert_unchanged(before, training_state(trainer))


@pytest.mark.parametrize("grad_clip", [1.0, 0.0], ids=["clipped", "unclipped"])
def test_a_nan_gradient_with_a_finite_loss_skips_the_step(make_trainer, grad_clip: float):
    trainer = make_trainer(grad_clip=grad_clip)
    batches = trainer.micro_batches()
    trainer.train_step([next(batches)])
    before = training_state(trainer)
    # an overflow inside one backward kernel: the loss is finite, one parameter's gradient is not
    weight = trainer.model.visual_projection.weight
    handle = weight.register_hook(lambda grad: torch.full_like(grad, math.nan))
    loss = trainer.train_step([next(batches)])
    handle.remove()
    assert math.isfinite(loss)
    assert trainer.nonfinite_in_a_row == 1
    assert_unchanged(before, training_state(trainer))


def test_batch_norm_statistics_see_each_image_once_with_checkpointing_and_accumulation(make_trainer):
    trainer = make_trainer(accum_steps=2, gradient_checkpointing=True)
    reference = copy.deepcopy(trainer.model)
    reference.activation_checkpointing_disable()
    batches = trainer.micro_batches()
    micro = [next(batches), next(batches)]

    trainer.accumulate_gradients(micro)
    with torch.no_grad():  # a plain run: one training-mode forward per micro-batch
        for batch in micro:
            text = {key: batch[key] for key in TEXT_KEYS if key in batch}
            reference(pixel_values=trainer.pixel_normalizer(batch["pixel_values"]), **text)
    norms = [name for name, _ in trainer.model.named_buffers() if name.endswith("num_batches_tracked")]
    assert norms and all(trainer.model.get_buffer(name).item() == 2 for name in norms)
    for (name, buffer), expected in zip(trainer.model.named_buffers(), reference.buffers(), strict=True):
        torch.testing.assert_close(buffer, expected, msg=name)


def test_accumulating_gradients_reads_nothing_back_to_the_host(make_trainer, monkeypatch):
    """Each read of a device tensor on the host waits for the device. (transformers' BERT checks its padding mask
    on the host in each eager forward, outside this repository's code; under torch.compile it does not.)"""
    trainer = make_trainer(accum_steps=2)
    # as on a GPU, where it matters: grouping captions by length (CPU only) reads their lengths on the host, which a
    # CPU does at no cost
    trainer.text_length_groups = text_length_groups(torch.device("cuda"))
    batches = trainer.micro_batches()
    micro = [next(batches), next(batches)]
    reads = []

    def counted(name, original):
        def read(self, *args):
            caller = Path(sys._getframe(1).f_code.co_filename)
            # this repository's code only: the venv (site-packages) may live inside the checkout
            if caller.is_relative_to(REPO_ROOT) and not caller.is_relative_to(sys.prefix):
                reads.append(f"{name} in {caller}:{sys._getframe(1).f_lineno}")
            return original(self, *args)

        return read

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    loss = trainer.accumulate_gradients(micro)
    monkeypatch.undo()
    assert reads == []
    assert math.isfinite(loss)


def test_torch_compile_wraps_the_prepared_model(make_trainer):
    trainer = make_trainer(torch_compile=True)
    prepared = trainer.accelerator._models[0]
    assert not isinstance(prepared, torch._dynamo.eval_frame.OptimizedModule), "compiled before DDP wrapping"
    assert trainer.wrapped._orig_mod is prepared
    assert trainer.unwrapped is trainer.model and trainer.wrapped._orig_mod is prepared, "unwrapping changed it"


def test_channels_last_inputs_come_with_channels_last_weights(make_trainer):
    trainer = make_trainer(preset="small")
    assert trainer.channels_last
    weights = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert not trainer.model.vision_model.embedder.embedder.convolution.weight.is_contiguous()
    batches = trainer.micro_batches()
    assert math.isfinite(trainer.train_step([next(batches)]))


def test_export_refuses_non_finite_weights_and_names_them(make_trainer):
    trainer = make_trainer()
    trainer.model.logit_scale.data.fill_(math.nan)
    norm = trainer.model.vision_model.embedder.embedder.normalization
    norm.running_var[0] = math.inf
    with pytest.raises(ValueError, match="hold NaN or infinity") as raised:
        export_model(trainer, {}, "summary")
    assert "logit_scale" in str(raised.value)
    assert "vision_model.embedder.embedder.normalization.running_var" in str(raised.value)
    assert not (Path(trainer.config.output_dir) / "model").exists()
