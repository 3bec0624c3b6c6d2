"""Where the model looks: overlays of `VisionCLIPModel.explain` heatmaps, and their measurement against the
generator's lesion masks (pointing game, pixel AUROC)."""

from .loading import can_explain, load_explainable, upscale_keywords
from .overlay import overlay, score_caption, tile_grid, write_overlays

__all__ = [
    "can_explain",
    "load_explainable",
    "overlay",
    "score_caption",
    "tile_grid",
    "upscale_keywords",
    "write_overlays",
]
