"""PNG overlays of `VisionCLIPModel.explain` heatmaps on the photographs they explain.

Each overlay is the photograph with the heatmap blended over its field of view (the dark border, which the model
also sees, is left as it is), the field of view's outline, an optional lesion mask's outline, a cross at the map's
maximum and a caption with the class and its score.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from image_processing_visionclip import load_fundus_image, percentile_of_8bit

from ..shards import atomic_write_bytes

COLORMAP = "turbo"
FIELD_COLOUR, LESION_COLOUR, PEAK_COLOUR = (255, 255, 255), (0, 255, 255), (255, 0, 255)
MAX_SIDE = 640  # overlays are drawn at most this wide or high


def field_of_view_mask(photo: Image.Image, threshold: float = 0.1) -> np.ndarray:
    """Boolean `(H, W)`: the bright fundus disc, by the image processor's rule (red above `threshold` of its 99th
    percentile, and above 10/255)."""
    red = photo.getchannel("R")
    return np.asarray(red) > max(10.0, threshold * percentile_of_8bit(red, 99))


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels of `mask` within `width` of its edge."""
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    inner = image.filter(ImageFilter.MinFilter(2 * width + 1))
    return (np.asarray(image) > 0) & ~(np.asarray(inner) > 0)


def _scaled(photo: Image.Image, heatmap: np.ndarray, masks: list[np.ndarray | None], max_side: int):
    """Photograph, heatmap and masks reduced together so the longer side is at most `max_side`."""
    scale = min(1.0, max_side / max(photo.size))
    if scale == 1.0:
        return photo, heatmap, masks
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    photo = photo.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    heatmap = np.asarray(Image.fromarray(heatmap.astype(np.float32), mode="F").resize(size, Image.Resampling.NEAREST))
    masks = [
        None if m is None else np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(size)) > 127 for m in masks
    ]
    return photo, heatmap, masks


def overlay(
    photo: Image.Image,
    heatmap: np.ndarray,
    caption: str | None = None,
    lesion_mask: np.ndarray | None = None,
    max_side: int = MAX_SIDE,
    opacity: float = 0.6,
) -> Image.Image:
    """`photo` (RGB, `W x H`) with `heatmap` `(H, W)` (NaN where the model saw nothing) blended over it: min-max
    scaled over its finite pixels, more opaque where higher. Draws the field-of-view outline (white), the outline
    of `lesion_mask` `(H, W)` if given (cyan), a cross at the map's maximum (magenta) and `caption`."""
    if heatmap.shape != (photo.height, photo.width):
        raise ValueError(f"heatmap shape {heatmap.shape} does not match the photograph's {photo.height}x{photo.width}")
    photo = photo.convert("RGB")
    photo, heatmap, (field, lesion) = _scaled(photo, heatmap, [field_of_view_mask(photo), lesion_mask], max_side)
    seen = np.isfinite(heatmap) & field
    seen = seen if seen.any() else np.isfinite(heatmap)  # a photograph without a dark border
    values = np.zeros(heatmap.shape, dtype=np.float32)
    if seen.any():
        low, high = float(heatmap[seen].min()), float(heatmap[seen].max())
        values[seen] = (heatmap[seen] - low) / (high - low) if high > low else 0.5
    colours = colormaps[COLORMAP](values)[..., :3]
    alpha = np.where(seen, opacity * (0.25 + 0.75 * values), 0.0)[..., None]
    blended = (np.asarray(photo, dtype=np.float32) / 255) * (1 - alpha) + colours * alpha
    pixels = np.clip(blended * 255 + 0.5, 0, 255).astype(np.uint8)
    line = max(1, round(max(photo.size) / 300))
    pixels[_outline(field, line)] = FIELD_COLOUR
    if lesion is not None:
        pixels[_outline(lesion, line)] = LESION_COLOUR
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    if seen.any():
        y, x = np.unravel_index(np.nanargmax(np.where(seen, heatmap, -np.inf)), heatmap.shape)
        arm = max(4, max(photo.size) // 40)
        draw.line((x - arm, y, x + arm, y), fill=PEAK_COLOUR, width=line + 1)
        draw.line((x, y - arm, x, y + arm), fill=PEAK_COLOUR, width=line + 1)
    if caption:
        font = ImageFont.load_default(size=max(10, max(photo.size) // 32))
        box = draw.textbbox((4, 4), caption, font=font)
        draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
        draw.text((4, 4), caption, fill=(255, 255, 255), font=font)
    return image


def score_caption(name: str, logit: float, prob: float | None) -> str:
    """`"glaucoma  p=0.62  logit 3.41"` (no probability for a single text, whose softmax is always 1)."""
    return f"{name}  p={prob:.2f}  logit {logit:.2f}" if prob is not None else f"{name}  logit {logit:.2f}"


def file_slug(text: str) -> str:
    """`text` as a short lower-case file-name part (`a-z`, `0-9`, `-`)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "class"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def write_overlays(
    result: Any, images: Sequence[Any], out_dir: str | Path, names: Sequence[str] | None = None
) -> list[Path]:
    """One PNG per image and class of an `ExplainResult`, `OUT_DIR/<name>__<class>.png` (written atomically);
    `images` are the inputs `explain` was given (paths, PIL images, arrays), `names` their file stems."""
    if len(images) != len(result.heatmaps):
        raise ValueError(f"{len(images)} images for {len(result.heatmaps)} heatmaps")
    names = list(names) if names is not None else [_image_name(image, index) for index, image in enumerate(images)]
    several = len(result.class_names) > 1
    written = []
    for index, (image, heatmaps) in enumerate(zip(images, result.heatmaps, strict=True)):
        photo = load_fundus_image(image)
        for column, name in enumerate(result.class_names):
            prob = float(result.probs[index, column]) if several else None
            caption = score_caption(name, float(result.logits[index, column]), prob)
            path = Path(out_dir) / f"{names[index]}__{file_slug(name)}.png"
            atomic_write_bytes(path, png_bytes(overlay(photo, heatmaps[column], caption)))
            written.append(path)
    return written


def _image_name(image: Any, index: int) -> str:
    return Path(image).stem if isinstance(image, (str, Path)) else f"image{index:03d}"


def tile_grid(tiles: Sequence[Image.Image], columns: int, side: int, background=(255, 255, 255)) -> Image.Image:
    """Tiles fitted into `side x side` cells, `columns` to a row, centred on `background`."""
    rows = -(-len(tiles) // columns)
    grid = Image.new("RGB", (columns * side, rows * side), background)
    for index, tile in enumerate(tiles):
        fitted = tile.copy()
        fitted.thumbnail((side, side), Image.Resampling.LANCZOS)
        x, y = (index % columns) * side, (index // columns) * side
        grid.paste(fitted, (x + (side - fitted.width) // 2, y + (side - fitted.height) // 2))
    return grid
