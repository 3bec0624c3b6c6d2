"""The training loop: one function per phase (setup, step, evaluation, checkpoint), as in open_clip's trainer."""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from functools import cached_property
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from towers_visionclip import batch_norm_statistics_frozen

from ..hardware import text_length_groups
from ..pixels import PixelNormalizer
from ..streaming import FundusStream, make_dataloader
from ..zeroshot.heldout import HeldOutEvaluator, mean_auroc
from .checkpoint import TrainingState, load_checkpoint, new_run_id, save_checkpoint
from .config import TrainConfig
from .data import split_files
from .distributed import FailureBarrier, on_main_process
from .model import TrainingModel
from .resume import check_resumable, find_checkpoint, other_runs, read_trainer_state
from .state_files import CheckpointError

logger = logging.getLogger(__name__)
TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class NonFiniteLossError(RuntimeError):
    pass


class Trainer:
    """Trains a VisionCLIP model with Accelerate: the steps, evaluations and checkpoints of one run, from parts that
    `visionclip.training.run.build_trainer` composes."""

    run_id: str | None = None  # which run the checkpoints belong to: set by `resume`, kept across resumes

    def __init__(
        self,
        config: TrainConfig,
        accelerator: Accelerator,
        failures: FailureBarrier,
        *,
        model: TrainingModel,
        wrapped: torch.nn.Module,
        loss_fn: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        stream: FundusStream,
        evaluator: HeldOutEvaluator | None,
        source: str,
    ):
        """`model` is the bare model, `wrapped` the same after `accelerator.prepare` (and torch.compile), as are
        `optimizer` and `scheduler`; `evaluator` exists on the main process only; `source` is the dataset."""
        self.config, self.accelerator, self.failures = config, accelerator, failures
        self.model, self.processor = model.model, model.processor
        self.frozen_norms, self.channels_last = model.frozen_norms, model.channels_last
        self.wrapped, self.loss_fn, self.optimizer, self.scheduler = wrapped, loss_fn, optimizer, scheduler
        self.trained_parameters = [p for group in optimizer.param_groups for p in group["params"]]
        self.stream, self.evaluator, self.source = stream, evaluator, source
        self.text_length_groups = text_length_groups(accelerator.device)
        self.step, self.epoch, self.nonfinite_in_a_row, self.nonfinite_total = 0, 0, 0, 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------------------------ setup
    def train_mode(self) -> None:
        """Training mode, except batch norms of locked towers, whose running statistics stay fixed."""
        self.wrapped.train()
        for module in self.frozen_norms:
            module.eval()

    def held_out_files(self) -> list[str]:
        return split_files(self.source, self.config.eval_split)

    def resume(self) -> None:
        """Continue the run of `config.resume` (for `latest`, the newest intact checkpoint in the output folder),
        or start a new run: raises `CheckpointError` where the checkpoint is not one this run may continue."""
        config, accelerator = self.config, self.accelerator
        path = on_main_process(
            accelerator, lambda: find_checkpoint(config.output_dir, config.resume), (CheckpointError, OSError)
        )
        if path is None:
            if config.resume:
                accelerator.print(f"--resume {config.resume}: no checkpoint yet, starting from step 0")
            self.run_id = on_main_process(accelerator, new_run_id)
            return
        state = read_trainer_state(path)
        check_resumable(state, config, accelerator.num_processes, path)
        others = other_runs(config.output_dir, state["run_id"])
        if others:
            raise CheckpointError(
                f"cannot resume the run of {path} in {config.output_dir}: its checkpoints {others} belong to another "
                "run; resume in that run's own folder, or choose another --output-dir"
            )
        load_checkpoint(accelerator, self.checkpoint_state(), path, self.failures)
        self.run_id, self.step, self.nonfinite_total = state["run_id"], state["step"], state["nonfinite_total"]
        self.history = state["history"]
        self.epoch = self.stream.epoch  # this process's own: the ranks' streams advance independently
        accelerator.print(f"resumed from {path} at step {self.step} (lr {self.scheduler.get_last_lr()[0]:.3g})")

    def checkpoint_state(self) -> TrainingState:
        return TrainingState(
            modules={"model": self.unwrapped, "loss": self.loss_fn},
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            stream=self.stream,
            scaler=self.accelerator.scaler,
        )

    # ------------------------------------------------------------------------------------------------- loop
    def micro_batches(self):
        """Endless micro-batches from one DataLoader, whose workers run epoch after epoch (new order and captions
        each epoch) from the stream's position; `self.epoch` follows the batches."""
        for batch in make_dataloader(self.stream, pin_memory=self.accelerator.device.type == "cuda"):
            self.epoch = max(self.epoch, batch["stream_state"]["epoch"])
            yield batch

    def train(self) -> dict[str, Any]:
        config, accelerator = self.config, self.accelerator
        batches = self.micro_batches()
        progress = tqdm(
            total=config.max_steps,
            initial=self.step,
            disable=not accelerator.is_main_process,
            desc="training",
            unit="step",
            dynamic_ncols=True,
        )
        start, images_since = time.perf_counter(), 0
        self.train_mode()
        while self.step < config.max_steps:
            with self.failures.guard():  # a process that cannot read its data stops them all
                micro = [next(batches) for _ in range(config.accum_steps)]
            loss = self.train_step(micro)
            self.step += 1
            images_since += config.batch_size
            for batch in micro:
                self.stream.record_batch(batch)
            rate = images_since / max(time.perf_counter() - start, 1e-9)
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}", img_s=f"{rate:.1f}")
            if self.step % config.log_every == 0 or self.step == config.max_steps:
                self.log(
                    {
                        "train/loss": loss,
                        "train/lr": self.scheduler.get_last_lr()[0],
                        "train/images_per_s": rate,
                        "train/logit_scale": self.unwrapped.logit_scale_value().item(),
                        "train/epoch": self.epoch,
                    }
                )
                start, images_since = time.perf_counter(), 0
            if config.eval_every and self.step % config.eval_every == 0 and self.step < config.max_steps:
                self.evaluate()
                self.train_mode()
            if self.step % config.save_every == 0 or self.step == config.max_steps:
                self.save()
        progress.close()
        return self.evaluate()

    @property
    def unwrapped(self):
        # keep_torch_compile=True would put the bare model inside the compiled wrapper, in place of DDP
        return self.accelerator.unwrap_model(self.wrapped, keep_torch_compile=False)

    @cached_property
    def pixel_normalizer(self) -> PixelNormalizer:
        return PixelNormalizer(self.processor.image_processor, self.accelerator.device)

    def _embed(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.accelerator.device
        inputs = {k: batch[k].to(device, non_blocking=True) for k in TEXT_KEYS if k in batch}
        if not getattr(self.loss_fn, "uses_text", True):
            # the supervised objective ignores the frozen text side: one one-token text keeps the model's forward
            # (and DDP's hooks around it) at almost no cost, where the captions would cost more than the images
            inputs = {k: v[:1, :1] for k, v in inputs.items()}
        inputs["pixel_values"] = self.pixel_normalizer(batch["pixel_values"])
        if self.channels_last:
            inputs["pixel_values"] = inputs["pixel_values"].contiguous(memory_format=torch.channels_last)
        with self.accelerator.autocast():
            output = self.wrapped(**inputs, text_length_groups=self.text_length_groups)
        return output.image_embeds.float(), output.text_embeds.float()

    def train_step(self, micro: list[dict[str, Any]]) -> float:
        """One optimizer step over `accum_steps` micro-batches; returns the loss. A step whose loss or gradient norm
        is not finite is skipped and leaves no trace: parameters, buffers (batch-norm statistics), optimizer state
        and schedule stay as they were."""
        buffers = [buffer.clone() for buffer in self.model.buffers()]
        loss = self.accumulate_gradients(micro)
        norm = self.accelerator.clip_grad_norm_(self.trained_parameters, self.config.grad_clip or math.inf)
        loss_value, norm_value = torch.stack([loss, norm.to(loss)]).tolist()  # the step's one read from the device
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            self._undo_step(buffers)
            return self._count_nonfinite(loss_value, norm_value)
        self.nonfinite_in_a_row = 0
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.unwrapped.logit_scale.clamp_(max=math.log(self.unwrapped.config.logit_scale_max))
        return loss_value

    def accumulate_gradients(self, micro: list[dict[str, Any]]) -> torch.Tensor:
        """Gradients of one contrastive loss over all micro-batches (open_clip's accum-freq): the embeddings of the
        other micro-batches are cached without gradients, so the contrastive batch is the effective batch. Returns
        the loss as a device tensor: nothing here waits for the device."""
        accelerator = self.accelerator
        labels = torch.cat([b["labels"] for b in micro]).to(accelerator.device)
        caption_facts = torch.cat([b["caption_facts"] for b in micro]).to(accelerator.device)
        cached = None
        if len(micro) > 1:
            # a repeat of the forwards below: it must not count towards batch-norm statistics a second time
            with torch.no_grad(), batch_norm_statistics_frozen(self.model):
                cached = [self._embed(b) for b in micro]
        for index, batch in enumerate(micro):
            last = index == len(micro) - 1
            with accelerator.no_sync(self.wrapped) if not last else nullcontext():
                images, texts = self._embed(batch)
                if cached is not None:
                    images = torch.cat([images if i == index else c[0] for i, c in enumerate(cached)])
                    texts = torch.cat([texts if i == index else c[1] for i, c in enumerate(cached)])
                # each pass computes the whole loss: only the last may pass gradient to the shared scalars
                scale = self.unwrapped.logit_scale_value()
                if not last:
                    scale = scale.detach()
                else:
                    self.loss_fn.zero_grad(set_to_none=True)
                loss = self.loss_fn(images, texts, scale, labels, caption_facts)
                # a non-finite loss runs backward too: every process takes part in DDP's reduction, and the
                # non-finite gradient norm then skips the step on all of them
                accelerator.backward(loss)
        return loss.detach()

    def _undo_step(self, buffers: list[torch.Tensor]) -> None:
        """Drop the gradients and put back the buffers the forward passes changed (batch-norm statistics)."""
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
        if self.accelerator.scaler is not None:
            self.accelerator.scaler.update()  # fp16: lower the loss scale after an overflow, as its step would

    def _count_nonfinite(self, loss: float, norm: float) -> float:
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        cause = f"non-finite loss {loss}" if not math.isfinite(loss) else f"non-finite gradient norm {norm}"
        self.accelerator.print(f"step {self.step}: {cause}, step skipped ({self.nonfinite_in_a_row} in a row)")
        if self.nonfinite_in_a_row >= self.config.max_nonfinite:
            raise NonFiniteLossError(
                f"{self.nonfinite_in_a_row} non-finite steps in a row (at step {self.step}, the last with a {cause}): "
                "lower --lr, use --mixed-precision no, or check the data; the last checkpoint is intact"
            )
        return loss

    # ---------------------------------------------------------------------------------- evaluation, logging
    def evaluate(self) -> dict[str, Any]:
        results = {}
        with self.failures.guard():  # the others wait here for the main process, and stop if it fails
            if self.accelerator.is_main_process:
                results = self.evaluator.evaluate(self.unwrapped)
                summary = mean_auroc(results)
                self.log(
                    {f"eval/auroc_{name}": r["auroc"] for name, r in results.items() if r["auroc"] is not None}
                    | ({"eval/mean_auroc": summary} if summary is not None else {})
                )
                self.history.append({"step": self.step, "mean_auroc": summary})
                tqdm.write(
                    f"step {self.step}: held-out {self.evaluator.kind} mean AUROC {summary:.3f}"
                    if summary is not None
                    else f"step {self.step}: no finding common enough to measure"
                )
        self.accelerator.wait_for_everyone()
        return results

    def log(self, values: dict[str, float]) -> None:
        if self.config.report_to != "none":
            self.accelerator.log(values, step=self.step)

    def save(self) -> None:
        """Checkpoint the run (every process calls this); raises `CheckpointError` rather than save a non-finite
        state."""
        if self.run_id is None:
            self.run_id = on_main_process(self.accelerator, new_run_id)
        state = {
            "run_id": self.run_id,
            "step": self.step,
            "epoch": self.epoch,
            "nonfinite_total": self.nonfinite_total,
            "history": self.history,
            "config": self.config.to_dict(),
            # the preset may change; the checkpoint's weights fit these (absent: written before the option existed)
            "vision_feature_layers": self.model.config.vision_feature_layers,
        }
        save_checkpoint(
            self.accelerator,
            self.checkpoint_state(),
            self.config.output_dir,
            self.step,
            state,
            self.config.keep_checkpoints,
            self.failures,
        )
