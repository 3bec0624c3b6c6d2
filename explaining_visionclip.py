"""VisionCLIP's heatmaps: where each image matches each text, in the input's own pixels (`VisionCLIPModel.explain`).

A remote-code file beside `modeling_visionclip.py`: `VisionCLIPModel` inherits `VisionCLIPExplainMixin`, which uses
the model's `class_prompts`, `zero_shot_classifier`, `logit_scale_value`, `_project_pooled`, `_feature_map` and
`_check_pixel_values`, and the processor's `prepare_image_with_geometry` (the crop, resize and padding it applied).
Only arrays come back: overlays and plotting live in the `visionclip.explain` package.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

EXPLAIN_METHODS = ("similarity", "cam", "gradcam")
CNN_TOWERS = frozenset({"resnet", "efficientnet", "convnext", "convnextv2"})  # last_hidden_state (B, D, h, w)
VIT_TOWERS = frozenset({"vit", "clip_vision_model"})  # last_hidden_state (B, prefix + h * w, D)
MAX_UPSCALE = 4


@dataclass
class ExplainResult:
    """Where the model looks: heatmaps of `N` images for `C` texts or classes, in each input's own pixels.

    `heatmaps[n]` `(C, H_n, W_n)` float32 covers input `n` as loaded (upright, full size); pixels outside the
    field-of-view crop box `boxes[n]` `(left, top, right, bottom)`, which the model never saw, are NaN. For a
    `pixel_values` tensor the maps are on the processed canvas. `logits` `(N, C)` are the scaled cosine
    similarities of the pooled image embedding (as `zero_shot`), `probs` their softmax over the `C` classes.
    `map_size` `(h, w)` is the tower's native grid, which the maps upsample.
    """

    class_names: list[str]
    heatmaps: list[np.ndarray]
    logits: torch.Tensor
    probs: torch.Tensor
    boxes: list[tuple[int, int, int, int]]
    method: str
    map_size: tuple[int, int]
    task: str | None = None

    @property
    def predictions(self) -> list[str]:
        return [self.class_names[index] for index in self.probs.argmax(dim=-1).tolist()]


class VisionCLIPExplainMixin:
    """`explain` and its map makers, for `VisionCLIPModel`."""

    def explain(
        self,
        images: Any,
        processor: Any,
        text: str | list[str] | dict[str, list[str]] | None = None,
        task: str | None = None,
        class_names: list[str] | None = None,
        method: str = "similarity",
        batch_size: int = 16,
        upscale: int = 1,
    ) -> ExplainResult:
        """Heatmaps of where each image matches each `text` (one prompt each, or `{class: [prompts]}`), or each class
        of a recommended `task` or of free-form `class_names` (prompt ensembles, as `zero_shot`): give one of the three.

        `method="similarity"`: the cosine of the text embedding with the tower's spatial features (a CNN's last map
        before pooling, a ViT's patch tokens) passed through the visual projection, at the tower's native stride.
        `method="cam"`: the same without normalising each position (a class activation map with the text embedding
        as the class weights: for a mean-pooled CNN its average is the image embedding's projection on the text).
        `method="gradcam"`: Grad-CAM of the pooled image-text cosine on the last spatial stage (a ViT's last block
        input). `images` as for `zero_shot`; maps come back in each input's own pixel coordinates, undoing the
        field-of-view crop, resize and padding (see [`ExplainResult`]).

        `upscale` > 1 makes the maps from the processed image enlarged that many times (bilinear), a grid that
        many times finer (a stride-32 CNN at 224 px: 7 x 7, with `upscale=2` 14 x 14), at about `upscale**2`
        times the work; the scores still come from the processed image as it is, as `zero_shot`'s."""
        if processor is None or not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
            raise ValueError("explain needs the model's processor (AutoProcessor.from_pretrained(same folder))")
        if not hasattr(processor.image_processor, "prepare_image_with_geometry"):
            raise ValueError(
                "explain needs an image processor that reports its crop and placement (prepare_image_with_geometry); "
                "this one predates it: load the processor from the same folder as the model"
            )
        if method not in EXPLAIN_METHODS:
            raise ValueError(f"Unknown explain method {method!r}; choose one of {EXPLAIN_METHODS}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(upscale, bool) or not isinstance(upscale, int) or not 1 <= upscale <= MAX_UPSCALE:
            raise ValueError(f"upscale must be an integer from 1 to {MAX_UPSCALE}, got {upscale!r}")
        self._check_explainable()
        prompts = self._explain_prompts(text, task, class_names)
        classifier = self.zero_shot_classifier(prompts, processor.tokenizer)
        heatmaps, logits, boxes, map_size = [], [], [], (0, 0)
        if isinstance(images, torch.Tensor):
            self._check_pixel_values(images, processor.image_processor)
        for pixel_values, geometries in _explain_batches(images, processor.image_processor, batch_size):
            pixel_values = pixel_values.to(classifier.device)
            seen = _enlarged(pixel_values, upscale)
            if method == "gradcam":
                maps, similarity = self._gradcam_maps(seen, classifier)
            else:
                maps, similarity = self._similarity_maps(seen, classifier, normalize=method == "similarity")
            if upscale > 1:
                similarity = self._pooled_similarity(pixel_values, classifier)
            map_size = tuple(maps.shape[-2:])
            canvas = tuple(pixel_values.shape[-2:])
            for image_maps, geometry in zip(maps, geometries, strict=True):
                heatmaps.append(_maps_to_input(image_maps, canvas, geometry))
                boxes.append(geometry.crop_box if geometry is not None else (0, 0, canvas[1], canvas[0]))
            logits.append(self.logit_scale_value().detach().float() * similarity)
        logits = torch.cat(logits)
        return ExplainResult(list(prompts), heatmaps, logits, logits.softmax(-1), boxes, method, map_size, task)

    def _explain_prompts(self, text, task, class_names) -> dict[str, list[str]]:
        if (text is not None) + (task is not None) + (class_names is not None) != 1:
            raise ValueError("Give exactly one of `text`, `task` (a recommended task) or `class_names`")
        if text is None:
            return self.class_prompts(task, class_names)
        if isinstance(text, dict):  # {class: prompt ensemble}
            if not text or not all(
                isinstance(p, list) and p and all(isinstance(t, str) for t in p) for p in text.values()
            ):
                raise ValueError("`text` as a mapping takes {class name: [prompts]} with at least one prompt each")
            return {str(name): list(prompts) for name, prompts in text.items()}
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts) or len(set(texts)) != len(texts):
            raise ValueError(f"`text` must be a non-empty string or a list of distinct ones, got {text!r}")
        return {t: [t] for t in texts}

    def _check_explainable(self) -> None:
        tower = getattr(self.vision_model.config, "model_type", type(self.vision_model).__name__)
        if tower not in CNN_TOWERS | VIT_TOWERS:
            raise ValueError(
                f"explain() cannot map the {tower!r} vision tower's outputs to image positions; it supports "
                f"{', '.join(sorted(CNN_TOWERS | VIT_TOWERS))}"
            )

    def _last_stage(self, outputs, last_block_input: bool) -> torch.Tensor:
        """The tower's last spatial stage as it computed it: a CNN's map `(B, D, h, w)` (with
        `vision_feature_layers`, the concatenated map the image features average), or a ViT's tokens
        `(B, prefix + h * w, D)` (the output of its last block, or with `last_block_input` that block's input,
        through which Grad-CAM's gradient flows: the block's output reaches the pooled vector only by its first
        token)."""
        if self.config.vision_feature_layers:
            return self._feature_map(outputs)
        if outputs.last_hidden_state.dim() == 4 or not last_block_input:
            return outputs.last_hidden_state
        return outputs.hidden_states[-2]

    def _pooled_from(self, outputs, stage: torch.Tensor) -> torch.Tensor:
        """The projected image embedding, computed from `stage` where it is the feature map itself, so that
        gradients of the embedding reach that very tensor."""
        if self.config.vision_feature_layers:
            return self.visual_projection(stage.mean(dim=(2, 3)))
        return self._project_pooled(outputs)

    def _on_grid(self, stage: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        """`_last_stage` output -> `(B, D, h, w)` (a ViT's patch tokens laid out on their grid)."""
        if stage.dim() == 4:
            return stage
        patch = self.vision_model.config.patch_size
        height, width = pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch
        tokens = stage[:, stage.shape[1] - height * width :]  # class and register tokens come first
        return tokens.transpose(1, 2).unflatten(2, (height, width))

    def _spatial_embeddings(self, activations: torch.Tensor) -> torch.Tensor:
        """`(B, D, h, w)` last-stage activations -> `(B, h, w, projection_dim)`: each position through what the
        pooled vector goes through (ConvNeXt's final norm, a ViT's pooler or CLIP's post-norm) and the projection."""
        features = activations.permute(0, 2, 3, 1)
        tower = self.vision_model
        if self.config.vision_feature_layers:  # the stacked map goes straight to the projection, as its average
            return self.visual_projection(features)
        if tower.config.model_type in ("convnext", "convnextv2"):
            features = tower.layernorm(features)
        elif getattr(tower, "pooler", None) is not None and hasattr(tower.pooler, "dense"):
            features = tower.pooler.activation(tower.pooler.dense(features))
        elif hasattr(tower, "vision_model"):  # CLIPVisionModel
            features = tower.vision_model.post_layernorm(features)
        return self.visual_projection(features)

    def _vision_forward(self, pixel_values: torch.Tensor):
        pixel_values = pixel_values.to(self.visual_projection.weight.dtype)
        if not torch.is_grad_enabled():  # as get_image_features: channels-last for inference, not for Grad-CAM
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        if self.vision_model.config.model_type not in VIT_TOWERS:
            layers = bool(self.config.vision_feature_layers)
            return self.vision_model(pixel_values=pixel_values, return_dict=True, output_hidden_states=layers)
        # a ViT's position embeddings interpolate to an input larger than the size it was built for (`upscale`)
        size = getattr(self.vision_model.config, "image_size", None)
        other_size = size is not None and tuple(pixel_values.shape[-2:]) != _pair(size)
        extra = {"interpolate_pos_encoding": True} if other_size else {}
        return self.vision_model(pixel_values=pixel_values, return_dict=True, output_hidden_states=True, **extra)

    @torch.no_grad()
    def _pooled_similarity(self, pixel_values: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """`(B, C)` cosines of the pooled image embeddings with each class."""
        pooled = self._project_pooled(self._vision_forward(pixel_values))
        with torch.autocast(classifier.device.type, enabled=False):
            return nn.functional.normalize(pooled.float(), dim=-1) @ classifier.t()

    @torch.no_grad()
    def _similarity_maps(self, pixel_values: torch.Tensor, classifier: torch.Tensor, normalize: bool = True):
        """`(B, C, h, w)` cosine (or, not `normalize`d, dot product) of each position's projected features with each
        class, and the `(B, C)` cosines of the pooled embedding."""
        outputs = self._vision_forward(pixel_values)
        stage = self._last_stage(outputs, False)
        dense = self._spatial_embeddings(self._on_grid(stage, pixel_values))
        pooled = self._pooled_from(outputs, stage)
        with torch.autocast(classifier.device.type, enabled=False):  # scores in fp32, also under mixed precision
            dense = nn.functional.normalize(dense.float(), dim=-1) if normalize else dense.float()
            maps = torch.einsum("bhwp,cp->bchw", dense, classifier)
            return maps, nn.functional.normalize(pooled.float(), dim=-1) @ classifier.t()

    def _gradcam_maps(self, pixel_values: torch.Tensor, classifier: torch.Tensor):
        """`(B, C, h, w)` Grad-CAM of each pooled image-class cosine on the last spatial stage, and `(B, C)`."""
        with torch.enable_grad():
            pixel_values = pixel_values.detach().requires_grad_(True)  # gradients flow even with a frozen tower
            outputs = self._vision_forward(pixel_values)
            stage = self._last_stage(outputs, last_block_input=True)
            activations = self._on_grid(stage.detach(), pixel_values).float()
            pooled = self._pooled_from(outputs, stage)
            with torch.autocast(classifier.device.type, enabled=False):
                similarity = nn.functional.normalize(pooled.float(), dim=-1) @ classifier.t()
            maps = []
            for index in range(classifier.shape[0]):
                (gradients,) = torch.autograd.grad(
                    similarity[:, index].sum(), stage, retain_graph=index < classifier.shape[0] - 1
                )
                weights = self._on_grid(gradients, pixel_values).float().mean(dim=(2, 3), keepdim=True)
                maps.append(torch.relu((weights * activations).sum(dim=1)))
        return torch.stack(maps, dim=1), similarity.detach()


def _enlarged(pixel_values: torch.Tensor, upscale: int) -> torch.Tensor:
    """The processed images `upscale` times larger (bilinear, over the same canvas), or as they are for 1."""
    if upscale == 1:
        return pixel_values
    return nn.functional.interpolate(pixel_values, scale_factor=upscale, mode="bilinear", align_corners=False)


def _pair(size: Any) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def _explain_batches(images: Any, image_processor: Any, batch_size: int) -> Iterator[tuple[torch.Tensor, list]]:
    """`(pixel_values, geometries)` per batch: a geometry (`ImageGeometry`) per loaded input, None for rows of a
    `pixel_values` tensor (checked by the caller), whose maps stay on the canvas."""
    if isinstance(images, torch.Tensor):
        for batch in images.split(batch_size):
            yield batch, [None] * len(batch)
        return
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    if not images:
        raise ValueError("explain got no images")
    for start in range(0, len(images), batch_size):
        prepared, geometries = zip(
            *(image_processor.prepare_image_with_geometry(image) for image in images[start : start + batch_size]),
            strict=True,
        )
        yield torch.from_numpy(image_processor.to_pixel_values(list(prepared))), list(geometries)


def _maps_to_input(maps: torch.Tensor, canvas: tuple[int, int], geometry: Any) -> np.ndarray:
    """`(C, h, w)` maps spanning the `(H, W)` canvas -> `(C, H_in, W_in)` float32 over the input, resampled once
    (bilinear) through the placement and crop; NaN outside the crop box. Without a geometry: the canvas."""
    maps = maps.detach().float().cpu()
    if geometry is None:
        return nn.functional.interpolate(maps[None], size=canvas, mode="bilinear", align_corners=False)[0].numpy()
    left, top, right, bottom = geometry.crop_box
    (offset_x, offset_y), (fitted_w, fitted_h) = geometry.placement.offset, geometry.placement.fitted
    # pixel centres of the crop -> canvas positions -> grid_sample's [-1, 1] over the canvas (align_corners=False)
    xs = (offset_x + (torch.arange(right - left) + 0.5) * fitted_w / (right - left)) * 2 / canvas[1] - 1
    ys = (offset_y + (torch.arange(bottom - top) + 0.5) * fitted_h / (bottom - top)) * 2 / canvas[0] - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
    crop = nn.functional.grid_sample(maps[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    width, height = geometry.input_size
    out = np.full((maps.shape[0], height, width), np.nan, dtype=np.float32)
    out[:, top:bottom, left:right] = crop[0].numpy()
    return out
