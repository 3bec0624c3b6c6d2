"""Drawing surface: a float RGB image, supersampled 8-bit shape layers, and a log of what each finding drew.

Lesions are drawn as shapes (ellipses, polygons, variable-width bands) on 2x supersampled PIL layers, which are
reduced, softened and blended into the image in one vectorised step per layer. Each shape drawn for a finding is
also logged under that finding's name, so a mask of exactly what was drawn can be rasterised later, only when it
is asked for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 2


@dataclass(frozen=True)
class Shape:
    """One drawable shape in image pixel coordinates.

    ``kind`` is "ellipse" (data: cx, cy, rx, ry, angle), "polygon" (data: (n, 2) points), "band" (data: (n, 2)
    centre line and (n,) widths) or "region" (data: x0, y0 and a boolean array; masks only).
    """

    kind: str
    data: tuple


def ellipse(cx: float, cy: float, rx: float, ry: float | None = None, angle: float = 0.0) -> Shape:
    """An ellipse with half-axes ``rx``/``ry`` rotated by ``angle`` radians."""
    return Shape("ellipse", (float(cx), float(cy), max(float(rx), 0.5), max(float(ry if ry else rx), 0.5), angle))


def polygon(points: np.ndarray) -> Shape:
    """A closed polygon, points shape (n, 2)."""
    return Shape("polygon", (np.asarray(points, np.float32),))


def band(points: np.ndarray, widths: np.ndarray | float) -> Shape:
    """A curve of varying width (a vessel), centre line shape (n, 2), full widths in pixels."""
    points = np.asarray(points, np.float32)
    widths = np.broadcast_to(np.asarray(widths, np.float32), (len(points),))
    return Shape("band", (points, widths))


def _ellipse_outline(cx: float, cy: float, rx: float, ry: float, angle: float, vertices: int = 20) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def band_outline(points: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Polygon around a centre line at +-width/2 along its normals, shape (2n, 2)."""
    if len(points) < 2:
        return np.zeros((0, 2), np.float32)
    tangent = np.gradient(points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-6
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) * (widths[:, None] / 2)
    return np.concatenate([points + normal, (points - normal)[::-1]])


class Layer:
    """An 8-bit supersampled layer that shapes are drawn on (alpha coverage of one kind of material)."""

    def __init__(self, size: int):
        self.size = size
        self.image = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE))
        self._draw = ImageDraw.Draw(self.image)

    def draw(self, shape: Shape, value: int = 255) -> None:
        """Draw one shape with the given coverage value (0-255); overlapping shapes keep the later value."""
        k = SUPERSAMPLE
        value = int(np.clip(value, 0, 255))
        if shape.kind == "ellipse":
            cx, cy, rx, ry, angle = shape.data
            if angle == 0.0:
                self._draw.ellipse(((cx - rx) * k, (cy - ry) * k, (cx + rx) * k, (cy + ry) * k), fill=value)
                return
            outline = _ellipse_outline(cx, cy, rx, ry, angle)
        elif shape.kind == "polygon":
            outline = shape.data[0]
        elif shape.kind == "band":
            points, widths = shape.data
            outline = band_outline(points, widths)
            for end in (0, -1):
                r = widths[end] / 2 * k
                x, y = points[end] * k
                self._draw.ellipse((x - r, y - r, x + r, y + r), fill=value)
        else:
            raise ValueError(f"cannot draw a {shape.kind!r} shape on a layer")
        if len(outline) >= 3:
            self._draw.polygon((outline * k).ravel().tolist(), fill=value)

    def bbox(self, pad: int = 0) -> tuple[int, int, int, int] | None:
        """Bounding box (x0, y0, x1, y1) of drawn content in image pixels, padded, or None when empty."""
        box = self.image.getbbox()
        if box is None:
            return None
        k = SUPERSAMPLE
        return (
            max(box[0] // k - pad, 0),
            max(box[1] // k - pad, 0),
            min(-(-box[2] // k) + pad, self.size),
            min(-(-box[3] // k) + pad, self.size),
        )

    def alpha(self, box: tuple[int, int, int, int], blur: float = 0.0) -> np.ndarray:
        """Coverage in [0, 1] over ``box`` at image resolution, optionally Gaussian-softened by ``blur`` pixels."""
        k = SUPERSAMPLE
        x0, y0, x1, y1 = box
        crop = self.image.crop((x0 * k, y0 * k, x1 * k, y1 * k)).reduce(k)
        if blur > 0:
            crop = crop.filter(ImageFilter.GaussianBlur(blur))
        return np.asarray(crop, dtype=np.float32) * (1.0 / 255.0)


class MaskLog:
    """Shapes drawn for each finding, turned into boolean masks on request."""

    def __init__(self, size: int):
        self.size = size
        self._shapes: dict[str, list[Shape]] = defaultdict(list)

    def add(self, tag: str, shape: Shape) -> None:
        """Log one shape drawn for ``tag`` (e.g. ``dr_grade/microaneurysm``)."""
        self._shapes[tag].append(shape)

    def add_region(self, tag: str, x0: int, y0: int, region: np.ndarray) -> None:
        """Log a region painted directly on the image (boolean array placed at x0, y0)."""
        if region.any():
            self._shapes[tag].append(Shape("region", (int(x0), int(y0), region.astype(bool))))

    def tags(self) -> list[str]:
        """Every tag with at least one logged shape, sorted."""
        return sorted(tag for tag, shapes in self._shapes.items() if shapes)

    def tags_under(self, key: str) -> list[str]:
        """Logged tags equal to ``key`` or below it (``key/...``)."""
        return [tag for tag in self.tags() if tag == key or tag.startswith(key + "/")]

    def rasterise(self, tags: list[str] | tuple[str, ...], field: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask (size, size) of every shape logged under any of ``tags``, clipped to ``field``."""
        layer = Layer(self.size)
        regions = []
        for tag in tags:
            for shape in self._shapes.get(tag, ()):
                if shape.kind == "region":
                    regions.append(shape.data)
                else:
                    layer.draw(shape)
        mask = np.asarray(layer.image.reduce(SUPERSAMPLE)) > 0
        for x0, y0, region in regions:
            h = min(region.shape[0], self.size - y0)
            w = min(region.shape[1], self.size - x0)
            mask[y0 : y0 + h, x0 : x0 + w] |= region[:h, :w]
        if field is not None:
            mask &= field
        return mask


class Canvas:
    """The image being painted plus its layers and mask log.

    ``rgb`` is planar float32, shape (3, size, size), 1.0 = full white: per-channel planes keep every
    vectorised operation on contiguous memory.
    """

    def __init__(self, size: int):
        self.rgb = np.zeros((3, size, size), np.float32)
        self.size = size
        self.layers: dict[str, Layer] = {}
        self.log = MaskLog(self.size)

    def layer(self, name: str) -> Layer:
        """The named layer, created empty on first use."""
        if name not in self.layers:
            self.layers[name] = Layer(self.size)
        return self.layers[name]

    def paint(self, layer: str, shape: Shape, value: float = 1.0, tag: str | tuple[str, ...] | None = None) -> None:
        """Draw ``shape`` on a named layer with coverage ``value`` in [0, 1], logging it under ``tag`` (or tags)."""
        self.layer(layer).draw(shape, int(round(value * 255)))
        for name in (tag,) if isinstance(tag, str) else tag or ():
            self.log.add(name, shape)

    def take_alpha(
        self, name: str, blur: float = 0.0, opacity: float = 1.0
    ) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
        """Remove a layer and return (box, coverage x opacity) for compositing, or None when nothing was drawn."""
        layer = self.layers.pop(name, None)
        box = layer.bbox(pad=int(3 * blur) + 2) if layer is not None else None
        if box is None:
            return None
        alpha = layer.alpha(box, blur)
        if opacity != 1.0:
            alpha *= opacity
        return box, alpha

    def blend_layer(
        self, name: str, colour: tuple[float, float, float], blur: float = 0.0, opacity: float = 1.0
    ) -> None:
        """Blend a layer into the image towards ``colour`` (alpha blending), then drop the layer."""
        taken = self.take_alpha(name, blur, opacity)
        if taken is not None:
            self.blend(*taken, colour)

    def blend(self, box: tuple[int, int, int, int], alpha: np.ndarray, colour: Sequence) -> None:
        """Alpha-blend ``colour`` (RGB, or an array per channel) into the box with weights ``alpha`` (h, w)."""
        x0, y0, x1, y1 = box
        for c in range(3):
            plane = self.rgb[c, y0:y1, x0:x1]
            plane += alpha * (colour[c] - plane)

    def absorb_layer(
        self, name: str, transmission: tuple[float, float, float], blur: float = 0.0, opacity: float = 1.0
    ) -> None:
        """Darken the image where a layer is drawn, multiplying by ``transmission`` at full coverage."""
        taken = self.take_alpha(name, blur, opacity)
        if taken is not None:
            self.absorb(*taken, transmission)

    def absorb(self, box: tuple[int, int, int, int], alpha: np.ndarray, transmission: Sequence[float]) -> None:
        """Multiply the box by ``1 - alpha * (1 - transmission)`` per channel."""
        x0, y0, x1, y1 = box
        for c in range(3):
            factor = alpha * (float(transmission[c]) - 1.0)
            factor += 1.0
            self.rgb[c, y0:y1, x0:x1] *= factor

    def local_grid(
        self, cx: float, cy: float, half: float
    ) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
        """A clipped square box around (cx, cy) and its pixel-centre coordinates relative to (cx, cy)."""
        x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
        x1, y1 = min(int(cx + half) + 2, self.size), min(int(cy + half) + 2, self.size)
        ys, xs = np.ogrid[y0:y1, x0:x1]
        return (x0, y0, x1, y1), xs.astype(np.float32) - cx, ys.astype(np.float32) - cy
