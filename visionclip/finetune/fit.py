"""Training one classifier: a logistic-regression probe on frozen embeddings, the zero-shot-initialised head on
frozen embeddings, or the whole image tower and head (warm-up + cosine, layer-wise LR decay), with early stopping
on an inner validation split and WiSE-FT interpolation towards the zero-shot weights."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from torch import nn
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from modeling_visionclip import VisionCLIPForImageClassification

from ..hardware import channels_last_is_safe
from ..precision import inference_autocast
from ..tower_locking import freeze_unreached_vision_parameters
from .data import inner_split
from .model import parameter_groups, wise_interpolate

MODES = ("linear-probe", "zero-shot-init", "full")


@dataclass
class FitOptions:
    mode: str = "zero-shot-init"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4  # the image tower's top block and the projection (`full`)
    head_lr: float = 1e-2  # the zero-shot head's weights are about the logit scale: 1e-3 barely moves them
    weight_decay: float = 0.05
    warmup_ratio: float = 0.1
    layer_decay: float = 1.0
    patience: int = 5  # epochs without a better validation loss before stopping
    val_fraction: float = 0.2
    class_weighting: bool = True
    probe_c: float = 1.0  # inverse L2 strength of the `linear-probe` logistic regression
    wise_alpha: float = 1.0
    seed: int = 0
    precision: str = "no"  # a resolved mixed precision (visionclip.precision)


def pixel_values(image_processor, images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(image_processor.to_pixel_values([Image.fromarray(a) for a in images]))


@torch.no_grad()
def embed(classifier, image_processor, images: list[np.ndarray], precision: str, batch_size: int = 32):
    """L2-normalised fp32 embeddings `(n, projection_dim)` of prepared images, the tower in evaluation mode."""
    classifier.eval()
    device = classifier.classifier.weight.device
    chunks = []
    for start in range(0, len(images), batch_size):
        pixels = pixel_values(image_processor, images[start : start + batch_size]).to(device)
        with inference_autocast(precision, device):
            chunks.append(classifier.encode_image(pixels).float())
    return torch.cat(chunks)


def head_probabilities(classifier, embeddings: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return classifier.classifier(embeddings.to(classifier.classifier.weight)).float().softmax(-1).cpu().numpy()


def class_weights(labels: np.ndarray, num_classes: int, enabled: bool) -> torch.Tensor | None:
    """Inverse class frequencies normalised to mean 1 over the classes present (sklearn's `balanced`)."""
    if not enabled:
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    weights = np.where(counts > 0, len(labels) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def fit(
    start: VisionCLIPForImageClassification,
    image_processor,
    images: list[np.ndarray],
    labels: np.ndarray,
    options: FitOptions,
    accelerator=None,
    desc: str = "fine-tuning",
) -> VisionCLIPForImageClassification:
    """A trained copy of `start` (the zero-shot-initialised classifier, left as it is), interpolated towards it by
    `options.wise_alpha`."""
    torch.manual_seed(options.seed)
    model = copy.deepcopy(start)
    if options.mode == "linear-probe":
        return _fit_probe(model, image_processor, images, labels, options)
    train, validation = inner_split(labels, options.val_fraction, options.seed)
    weights = class_weights(labels[train], model.config.num_labels, options.class_weighting)
    if options.mode == "zero-shot-init":
        vectors = embed(model, image_processor, images, options.precision)
        _train_head(model, vectors, labels, train, validation, weights, options, desc)
    elif options.mode == "full":
        _train_tower(model, image_processor, images, labels, train, validation, weights, options, accelerator, desc)
    else:
        raise ValueError(f"unknown mode {options.mode!r}; choose from {', '.join(MODES)}")
    model.eval()
    return wise_interpolate(start, model, options.wise_alpha) if options.wise_alpha < 1.0 else model


def _fit_probe(model, image_processor, images, labels, options: FitOptions):
    """Logistic regression on the frozen normalised embeddings, copied into the head (two classes: the logit
    `z` becomes `(-z/2, z/2)`, whose softmax is the regression's sigmoid)."""
    vectors = embed(model, image_processor, images, options.precision).cpu().numpy()
    regression = LogisticRegression(
        C=options.probe_c, max_iter=5000, class_weight="balanced" if options.class_weighting else None
    )
    regression.fit(vectors, labels)
    coef, intercept = torch.tensor(regression.coef_), torch.tensor(regression.intercept_)
    if len(regression.classes_) == 2:
        coef, intercept = torch.cat([-coef / 2, coef / 2]), torch.cat([-intercept / 2, intercept / 2])
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-1e4)  # classes absent from the training images are never predicted
        model.classifier.weight[regression.classes_] = coef.to(model.classifier.weight)
        model.classifier.bias[regression.classes_] = intercept.to(model.classifier.bias)
    return model.eval()


class _EarlyStopping:
    """Keeps the weights of the epoch with the lowest validation loss; says when `patience` epochs passed
    without improvement. Without validation images, the last epoch's weights are kept."""

    def __init__(self, patience: int):
        self.patience, self.best, self.best_state, self.waited = patience, math.inf, None, 0

    def update(self, module: nn.Module, loss: float | None) -> bool:
        if loss is None:
            return False
        if loss < self.best - 1e-6:
            self.best, self.waited = loss, 0
            self.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self, module: nn.Module) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


def _batches(indices: np.ndarray, batch_size: int, generator: np.random.Generator):
    order = generator.permutation(indices)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _train_head(model, vectors, labels, train, validation, weights, options: FitOptions, desc: str) -> None:
    head = model.classifier
    targets = torch.from_numpy(labels).to(vectors.device)
    loss_fn = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(vectors.device))
    optimizer = torch.optim.AdamW(head.parameters(), lr=options.head_lr, weight_decay=0.0)
    steps = options.epochs * math.ceil(len(train) / options.batch_size)
    schedule = get_cosine_schedule_with_warmup(optimizer, int(options.warmup_ratio * steps), steps)
    stopping, rng = _EarlyStopping(options.patience), np.random.default_rng(options.seed)
    progress = tqdm(range(options.epochs), desc=f"{desc} (head)", leave=False)
    for _ in progress:
        for batch in _batches(train, options.batch_size, rng):
            loss = loss_fn(head(vectors[batch]), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        with torch.no_grad():
            val_loss = loss_fn(head(vectors[validation]), targets[validation]).item() if len(validation) else None
        progress.set_postfix(loss=f"{loss.item():.3f}", val_loss=val_loss)
        if stopping.update(head, val_loss):
            break
    stopping.restore(head)


def _train_tower(
    model, image_processor, images, labels, train, validation, weights, options, accelerator, desc
) -> None:
    freeze_unreached_vision_parameters(model)
    groups = parameter_groups(model, options.lr, options.head_lr, options.weight_decay, options.layer_decay)
    optimizer = torch.optim.AdamW(groups)
    steps = options.epochs * math.ceil(len(train) / options.batch_size)
    schedule = get_cosine_schedule_with_warmup(optimizer, int(options.warmup_ratio * steps), steps)
    device = accelerator.device if accelerator is not None else torch.device("cpu")
    model.to(device)
    # the tower's weights in the inputs' layout, as train.py has them: convolutions then skip a conversion each
    channels_last = channels_last_is_safe(model, gradient_checkpointing=False, device=device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    trained = model
    if accelerator is not None:
        # every process trains on every batch (the sets are small), so the schedule is stepped here, once per
        # step: accelerate's prepared scheduler would step once per process
        trained, optimizer = accelerator.prepare(model, optimizer)
    loss_fn = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device))
    targets = torch.from_numpy(labels).to(device)
    stopping, rng = _EarlyStopping(options.patience), np.random.default_rng(options.seed)
    progress = tqdm(range(options.epochs), desc=f"{desc} (full)", leave=False)
    try:
        for _ in progress:
            trained.train()
            seen, began = 0, time.perf_counter()
            for batch in _batches(train, options.batch_size, rng):
                pixels = pixel_values(image_processor, [images[i] for i in batch]).to(device)
                if channels_last:
                    pixels = pixels.contiguous(memory_format=torch.channels_last)
                with (
                    accelerator.autocast()
                    if accelerator is not None
                    else inference_autocast(options.precision, device)
                ):
                    logits = trained(pixel_values=pixels).logits
                loss = loss_fn(logits.float(), targets[batch])
                optimizer.zero_grad()
                accelerator.backward(loss) if accelerator is not None else loss.backward()
                optimizer.step()
                schedule.step()
                seen += len(batch)
            val_loss = None
            if len(validation):
                vectors = embed(model, image_processor, [images[i] for i in validation], options.precision)
                with torch.no_grad():
                    val_loss = loss_fn(model.classifier(vectors), targets[validation]).item()
            rate = seen / max(time.perf_counter() - began, 1e-9)
            progress.set_postfix(loss=f"{loss.item():.3f}", val_loss=val_loss, images_per_s=f"{rate:.1f}")
            if stopping.update(model, val_loss):
                break
        stopping.restore(model)
    finally:  # a failed run leaves no model in the channels-last layout behind
        model.to(memory_format=torch.contiguous_format)
