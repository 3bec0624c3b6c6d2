"""Measuring heatmaps against lesion masks: the pointing game and pixel AUROC, within the field of view.

Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016): a hit when the map's
maximum over the field of view falls on the lesion mask, or within `tolerance` pixels of it. Pixel AUROC: how well
the map's values rank the field's lesion pixels above its other pixels. Pixels the model never saw (NaN, outside
the field-of-view crop box) rank lowest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter
from sklearn.metrics import roc_auc_score


def _finite(heatmap: np.ndarray) -> np.ndarray:
    values = np.asarray(heatmap, dtype=np.float64)
    finite = np.isfinite(values)
    return np.where(finite, values, values[finite].min() - 1.0 if finite.any() else 0.0)


def peak(heatmap: np.ndarray, field_mask: np.ndarray) -> tuple[int, int]:
    """`(y, x)` of the map's maximum within `field_mask` (the first one, in row-major order, on a tie)."""
    values = np.where(field_mask, _finite(heatmap), -np.inf)
    return tuple(int(i) for i in np.unravel_index(np.argmax(values), values.shape))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` grown by `radius` pixels (a square neighbourhood)."""
    if radius <= 0:
        return mask
    grown = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * radius + 1))
    return np.asarray(grown) > 0


def pointing_hit(heatmap: np.ndarray, lesion: np.ndarray, field_mask: np.ndarray, tolerance: int = 0) -> bool:
    """Whether the map's maximum in the field lies on `lesion` grown by `tolerance` pixels."""
    y, x = peak(heatmap, field_mask)
    return bool(dilate(lesion, tolerance)[y, x])


def pixel_auroc(heatmap: np.ndarray, lesion: np.ndarray, field_mask: np.ndarray) -> float | None:
    """AUROC of the map's values in the field against `lesion`; None when the field holds only one kind of pixel."""
    truth = lesion[field_mask]
    if truth.all() or not truth.any():
        return None
    return float(roc_auc_score(truth, _finite(heatmap)[field_mask]))


def centre_bias_map(field_mask: np.ndarray) -> np.ndarray:
    """A map that is highest at the field of view's centroid and falls with the distance from it."""
    ys, xs = np.nonzero(field_mask)
    yy, xx = np.mgrid[: field_mask.shape[0], : field_mask.shape[1]]
    return -np.hypot(yy - ys.mean(), xx - xs.mean()).astype(np.float32)


def is_flat(heatmap: np.ndarray, field_mask: np.ndarray) -> bool:
    """Whether the map holds one value over the whole field (it points nowhere)."""
    values = _finite(heatmap)[field_mask]
    return bool(values.min() == values.max())


@dataclass
class Tally:
    """Pointing-game hits and pixel AUROCs of one kind of map on one finding. A flat map (one value over the field,
    e.g. a random EfficientNet's, whose features vanish) points nowhere: a miss, and AUROC 0.5; `flat` counts them."""

    hits: int = 0
    trials: int = 0
    flat: int = 0
    aurocs: list[float] = field(default_factory=list)

    def add(self, heatmap: np.ndarray, lesion: np.ndarray, field_mask: np.ndarray, tolerance: int) -> None:
        self.trials += 1
        flat = is_flat(heatmap, field_mask)
        self.flat += flat
        self.hits += not flat and pointing_hit(heatmap, lesion, field_mask, tolerance)
        auroc = pixel_auroc(heatmap, lesion, field_mask)
        if auroc is not None:
            self.aurocs.append(auroc)

    def summary(self) -> dict[str, float | int | None]:
        return {
            "pointing": self.hits / self.trials if self.trials else None,
            "pixel_auroc": float(np.mean(self.aurocs)) if self.aurocs else None,
            "images": self.trials,
            "flat_maps": self.flat,
        }
