"""VisionCLIP's zero-shot classification with prompt ensembles (`VisionCLIPModel.zero_shot`).

A remote-code file beside `modeling_visionclip.py`: `VisionCLIPModel` inherits `VisionCLIPZeroShotMixin`, which uses
the model's `config` (`zero_shot_tasks`, `prompt_templates`), `encode_text`, `encode_image`, `logit_scale_value` and
`text_projection`, and the processor's tokenizer and image processor.
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class ZeroShotResult:
    """Zero-shot classification of `N` images into `C` classes.

    `probs` `(N, C)` sums to 1 over classes; `logits` `(N, C)` are the scaled cosine similarities.
    """

    class_names: list[str]
    probs: torch.Tensor
    logits: torch.Tensor
    task: str | None = None

    @property
    def predictions(self) -> list[str]:
        return [self.class_names[index] for index in self.probs.argmax(dim=-1).tolist()]


def _check_pixel_values(pixel_values: torch.Tensor, image_processor: Any) -> None:
    """A tensor given to `zero_shot` must be what the processor makes: float `(N, 3, H, W)`, N >= 1, in the value
    range of its normalisation. Raw pixels (integers, 0..255 floats, channels-last) are refused, not misread."""
    raw_hint = "pass raw images (paths, PIL images, arrays or tensors) in a list, and the processor loads them"
    if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
        single = " (for one processed image use pixel_values.unsqueeze(0))" if pixel_values.dim() == 3 else ""
        raise ValueError(
            f"zero_shot takes a tensor as processed pixel_values of shape (N, 3, H, W); got shape "
            f"{tuple(pixel_values.shape)}{single}; {raw_hint}"
        )
    if len(pixel_values) == 0:
        raise ValueError("zero_shot got no images (a pixel_values tensor with 0 rows)")
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"zero_shot got a {pixel_values.dtype} tensor: integers are raw pixels, not pixel_values; {raw_hint}"
        )
    value_range = getattr(image_processor, "pixel_value_range", None)
    if value_range is None:
        return
    low, high = value_range()
    found_low, found_high = pixel_values.min().item(), pixel_values.max().item()
    tolerance = 1e-3 * max(1.0, high - low)
    if found_low < low - tolerance or found_high > high + tolerance:
        raise ValueError(
            f"zero_shot got a tensor with values from {found_low:.3g} to {found_high:.3g}, outside the range "
            f"{low:.3g} to {high:.3g} of the processor's pixel_values: these look like raw pixels; {raw_hint}"
        )


class VisionCLIPZeroShotMixin:
    """`zero_shot` and what it is made of: the recommended tasks saved in the config, the prompt ensemble of each
    class, and the class embeddings they give."""

    @property
    def zero_shot_tasks(self) -> dict[str, dict[str, Any]]:
        """The recommended tasks saved with this model: `{task: {"classes", "prompts", "ordinal", ...}}`."""
        return dict(self.config.zero_shot_tasks or {})

    def class_prompts(self, task: str | None = None, class_names: list[str] | None = None) -> dict[str, list[str]]:
        """Prompt ensemble per class, from a recommended `task` or free-form `class_names` (not both): a list of
        at least two distinct non-empty strings (surrounding spaces are dropped)."""
        if (task is None) == (class_names is None):
            raise ValueError("Give exactly one of `task` (a recommended task) or `class_names`")
        if task is not None:
            tasks = self.zero_shot_tasks
            if task not in tasks:
                raise ValueError(f"Unknown zero-shot task {task!r}; this model knows {sorted(tasks) or 'none'}")
            return dict(zip(tasks[task]["classes"], tasks[task]["prompts"], strict=True))
        names = _checked_class_names(class_names)
        templates = self.config.prompt_templates or ["{}"]
        return {name: [template.format(name) for template in templates] for name in names}

    @torch.no_grad()
    def zero_shot_classifier(self, class_prompts: dict[str, list[str]], tokenizer) -> torch.Tensor:
        """`{class: prompts}` -> `(num_classes, projection_dim)` class embeddings: each class is the mean of its
        normalised prompt embeddings, renormalised (a prompt ensemble)."""
        device = self.text_projection.weight.device
        weights = []
        for class_name, prompts in class_prompts.items():
            if not prompts:
                raise ValueError(f"Class {class_name!r} has no prompts")
            tokens = tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt").to(device)
            embeds = self.encode_text(tokens["input_ids"], tokens.get("attention_mask"), tokens.get("token_type_ids"))
            weights.append(nn.functional.normalize(embeds.float().mean(dim=0), dim=-1))
        return torch.stack(weights)

    @torch.no_grad()
    def zero_shot(
        self,
        images: Any,
        processor: Any,
        task: str | None = None,
        class_names: list[str] | None = None,
        batch_size: int = 32,
    ) -> ZeroShotResult:
        """Classify images with a recommended `task` or free-form `class_names`, using prompt ensembles.

        `images` is one image or a list of images (paths, URLs, PIL images, NumPy arrays or tensors, loaded by the
        processor), or a `pixel_values` tensor `(N, 3, H, W)` the processor made. `processor` is the model's
        `VisionCLIPProcessor`. Raises `ValueError` naming the problem for anything else."""
        if processor is None or not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
            raise ValueError("zero_shot needs the model's processor (AutoProcessor.from_pretrained(same folder))")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        prompts = self.class_prompts(task, class_names)
        if isinstance(images, torch.Tensor):
            _check_pixel_values(images, processor.image_processor)
            batches = images.split(batch_size)
        else:
            images = list(images) if isinstance(images, (list, tuple)) else [images]
            if not images:
                raise ValueError("zero_shot got no images")
            batches = (
                processor.image_processor(images[i : i + batch_size], return_tensors="pt")["pixel_values"]
                for i in range(0, len(images), batch_size)
            )
        classifier = self.zero_shot_classifier(prompts, processor.tokenizer)
        image_embeds = torch.cat([self.encode_image(batch.to(classifier.device)).float() for batch in batches])
        with torch.autocast(classifier.device.type, enabled=False):  # scores in fp32, also under mixed precision
            logits = self.logit_scale_value().float() * image_embeds @ classifier.t()
        return ZeroShotResult(list(prompts), logits.softmax(dim=-1), logits, task)

    _check_pixel_values = staticmethod(_check_pixel_values)  # also explain's check of a tensor input


def _checked_class_names(class_names: Any) -> list[str]:
    """Free-form class names as a list of distinct, stripped, non-empty strings, or a `ValueError` saying why not."""
    if isinstance(class_names, str):
        raise ValueError(
            f"`class_names` must be a list of class names, not the string {class_names!r}; for one of the model's "
            f"recommended tasks pass task={class_names!r}"
        )
    names = []
    for name in class_names:
        if not isinstance(name, str):
            raise ValueError(f"`class_names`: class name {name!r} is not a string")
        if not name.strip():
            raise ValueError(f"`class_names`: class name {name!r} is empty")
        names.append(name.strip())
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"`class_names` needs at least two distinct names, got {list(class_names)!r}")
    return names
