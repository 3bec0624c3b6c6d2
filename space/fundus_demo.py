"""The Space's logic, apart from its Gradio page: which model to load, whether an upload is a readable colour fundus
photograph, and one analysis of it (zero-shot probabilities, the field-of-view crop the model used, and a heatmap
per class) as plain Python values.

Everything a person can get wrong is a `DemoError` whose message says what to do; the page shows it as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from image_processing_visionclip import load_fundus_image
from visionclip.explain import load_explainable, overlay, score_caption, upscale_keywords
from visionclip.explain.options import OVERLAY_METHOD, OVERLAY_UPSCALE
from visionclip.explain.overlay import field_of_view_mask

MODEL_ENV = "VISIONCLIP_MODEL"
MAIN_JOB_MODEL = "runs/visionclip/model"  # what `make demo` writes, relative to the repository
REPOSITORY = Path(__file__).resolve().parents[1]
CROP_SIDE = 512  # the field-of-view crop is shown at most this wide or high

# The fundus check, on a thumbnail this size: the share of the four corner squares (CORNER_SHARE of the shorter side
# each) inside the bright field, and the field's mean red over mean blue. On the 222 real photographs of the shared
# sets (HRF, CSDI, MFIDDR) the corners hold at most 23% field and red/blue is at least 1.47; a plain photograph of a
# person (matplotlib's grace_hopper.jpg) has 40% and 1.02.
CHECK_SIDE = 256
CORNER_SHARE = 0.08
MAX_FIELD_IN_CORNERS = 0.35
MIN_RED_OVER_BLUE = 1.2


class DemoError(ValueError):
    """A problem with what the person gave (model, photograph, classes), with the message to show them."""


def model_source(given: str | None = None) -> str:
    """The model to load: `given` (the --model flag), else `$VISIONCLIP_MODEL`, else the main job's folder in this
    repository. A folder path that does not exist is a `DemoError` saying how to make it; an `owner/name` that is
    no folder here is taken as a Hub id."""
    source = given or os.environ.get(MODEL_ENV) or str(REPOSITORY / MAIN_JOB_MODEL)
    path = Path(source)
    if path.exists():
        return source
    is_hub_id = source.count("/") == 1 and not source.startswith((".", "/", "~"))
    if is_hub_id:
        return source
    if path == REPOSITORY / MAIN_JOB_MODEL:
        raise DemoError(
            f"No model at {path}: train the main job with `make demo` (it writes {MAIN_JOB_MODEL}), or pass "
            f"--model FOLDER_OR_HUB_ID (or set {MODEL_ENV})"
        )
    raise DemoError(f"No model folder at {path}, and {source!r} is not a Hub id (owner/name)")


def read_photograph(path: str | Path) -> Image.Image:
    """The uploaded file as an upright RGB image, or a `DemoError` naming the file (not its temporary folder)."""
    name = Path(path).name
    try:
        return load_fundus_image(str(path))
    except (ValueError, FileNotFoundError) as error:
        reason = str(error).replace(str(path), "").lstrip(": ")
        raise DemoError(f"{name} could not be read as an image: {reason}") from None


def fundus_problem(photo: Image.Image, fov_threshold: float = 0.1) -> str | None:
    """Why `photo` does not look like a colour fundus photograph, or None. A fundus photograph is a round, bright
    field of view on a dark border (so its corners are dark), and the retina in it is red-orange. The field is found
    by the image processor's own rule (`fov_threshold` of the red channel's 99th percentile)."""
    thumbnail = photo.convert("RGB")
    thumbnail.thumbnail((CHECK_SIDE, CHECK_SIDE))
    field = field_of_view_mask(thumbnail, fov_threshold)
    if not field.any():
        return "no bright field of view was found (the picture is blank or too dark)"
    side = max(2, round(CORNER_SHARE * min(field.shape)))
    corners = np.concatenate(
        [c.ravel() for c in (field[:side, :side], field[:side, -side:])]
        + [c.ravel() for c in (field[-side:, :side], field[-side:, -side:])]
    )
    in_corners = float(corners.mean())
    if in_corners > MAX_FIELD_IN_CORNERS:
        return (
            f"{in_corners:.0%} of its corners are bright; a fundus photograph shows a round field of view on a dark "
            "border"
        )
    red, _, blue = np.asarray(thumbnail, dtype=np.float64)[field].mean(axis=0)
    if red < MIN_RED_OVER_BLUE * blue:
        return f"its field of view is not the red-orange of a retina (mean red {red:.0f}, blue {blue:.0f})"
    return None


def parse_class_names(text: str | None) -> list[str]:
    """Comma-separated class names -> a list of at least two distinct names; [] for a blank field."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if not names:
        return []
    if len(names) < 2:
        raise DemoError(f"Give at least two class names separated by commas (got only {names[0]!r})")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DemoError(f"Each class name once, please: {', '.join(repeated)} is repeated")
    return names


@dataclass
class Analysis:
    """One photograph classified and explained: `probabilities` `{class: p}` from the most likely down, the `crop`
    of the photograph the model saw (`crop_box` `(left, top, right, bottom)` in its pixels), a heatmap overlay per
    class in `overlays`, and a one-line `summary`."""

    probabilities: dict[str, float]
    crop: Image.Image
    crop_box: tuple[int, int, int, int]
    overlays: dict[str, Image.Image]
    summary: str

    @property
    def top_class(self) -> str:
        return next(iter(self.probabilities))


class FundusDemo:
    """A loaded model and processor, and what the Space does with them."""

    def __init__(self, model, processor, source: str):
        self.model, self.processor, self.source = model, processor, source

    @classmethod
    def load(cls, source: str) -> FundusDemo:
        """Load a model folder or Hub id (its own remote code, or this checkout's where that predates explain)."""
        model, processor = load_explainable(source, list(upscale_keywords(OVERLAY_UPSCALE)))
        return cls(model, processor, source)

    @property
    def tasks(self) -> list[str]:
        """The recommended zero-shot tasks saved with the model."""
        return list(self.model.zero_shot_tasks)

    def analyse(self, photo_path: str | Path | None, task: str | None, class_names: str | None = None) -> Analysis:
        """Classify and explain the photograph at `photo_path` with the typed `class_names` (comma-separated) if
        any, else the recommended `task`."""
        if not photo_path:
            raise DemoError("Upload a fundus photograph first, or pick one of the examples")
        photo = read_photograph(photo_path)
        problem = fundus_problem(photo, self.processor.image_processor.fov_threshold)
        if problem:
            raise DemoError(f"{Path(photo_path).name} does not look like a colour fundus photograph: {problem}")
        names = parse_class_names(class_names)
        if not names and task not in self.tasks:
            raise DemoError(f"Choose a recommended task ({', '.join(self.tasks)}) or type at least two class names")
        chosen = {"class_names": names} if names else {"task": task}
        result = self.model.explain(
            [photo], self.processor, method=OVERLAY_METHOD, **upscale_keywords(OVERLAY_UPSCALE), **chosen
        )
        probs, logits = result.probs[0].tolist(), result.logits[0].tolist()
        order = sorted(range(len(probs)), key=lambda index: -probs[index])
        probabilities = {result.class_names[index]: probs[index] for index in order}
        overlays = {
            result.class_names[index]: overlay(
                photo, result.heatmaps[0][index], score_caption(result.class_names[index], logits[index], probs[index])
            )
            for index in order
        }
        box = tuple(int(value) for value in result.boxes[0])
        crop = photo.crop(box)
        crop.thumbnail((CROP_SIDE, CROP_SIDE))
        asked = f"task `{task}`" if not names else "your class names"
        summary = (
            f"{asked}: most likely **{next(iter(probabilities))}**; field of view {box[2] - box[0]}x{box[3] - box[1]} "
            f"px at ({box[0]}, {box[1]}) of the {photo.width}x{photo.height} photograph"
        )
        return Analysis(probabilities, crop, box, overlays, summary)
