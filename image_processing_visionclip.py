"""Fundus image processor for VisionCLIP (PIL backend, no torchvision).

Every image goes through the same steps: load and convert to 8-bit RGB (paths, URLs, bytes, PIL images, NumPy arrays
and tensors; EXIF orientation; grayscale, 10- to 16-bit, float, RGBA, palette and CMYK), crop the field of view (the
dark border around the circular fundus), resize the long side and zero-pad to a square (FLAIR style), rescale and
normalise. Loading rules (each violation is a `ValueError` naming the input and the problem):

- Size: an image whose decoded size (width x height x channels x bytes per channel, read from the file header
  before decoding) exceeds `max_image_bytes` is refused, as is one under 8 px on a side.
- Float arrays and tensors (any float dtype, bfloat16 included) hold 0..1 (scaled by 255) or 0..255 values;
  negative values (an image already normalised with a mean and std) and values above 255 are refused, never clipped
  (a stray of under half an 8-bit level, such as resampling noise, rounds into range).
- Integer images (arrays, tensors and 16/32-bit files) are scaled from the smallest bit depth of 8, 10, 12, 14 and
  16 bits whose range holds their peak value: a 12-bit sensor's image (peak <= 4095) is scaled by 255/4095, not
  treated as a near-black 16-bit one. A 16-bit image whose brightest pixel is below 1/16 of its range is therefore
  brightened as if it had fewer bits. Peaks above 65535 are scaled by the peak. Negative integers are refused.
- URLs (http/https) are fetched with a timeout; network errors, HTTP errors and responses that are not images are
  refused naming the URL.
"""

import http.client
import io
import math
import os
import urllib.error
import urllib.request
import warnings
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.processing_utils import ImagesKwargs

DEFAULT_MAX_IMAGE_BYTES = 200_000_000  # a 24-megapixel 16-bit RGB photograph (144 MB) fits
MIN_IMAGE_SIDE = 8
FOV_ANALYSIS_SIDE = 128  # the field of view is located on a thumbnail about this wide
URL_TIMEOUT_SECONDS = 30
INTEGER_BIT_DEPTHS = (8, 10, 12, 14, 16)
FLOAT_ROUNDING = 0.5  # float values may stray this far (in 8-bit levels) outside their range: they round into it


class VisionCLIPImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    do_crop_fov (`bool`): crop to the bounding box of the circular field of view before resizing.
    fov_threshold (`float`, 0 to below 1): a pixel belongs to the field of view when its red channel exceeds this
        fraction of the image's 99th-percentile red level (and an absolute floor of 10/255).
    fov_margin (`float`, 0 to 0.5): margin kept around the field of view, as a fraction of its size.
    keep_aspect_ratio (`bool`): resize the long side to fit `size` and zero-pad the rest (True), or stretch.
    max_image_bytes (`int`): refuse images whose decoded size (width x height x channels x bytes per channel) is
        larger (decompression-bomb guard).
    """

    do_crop_fov: bool | None
    fov_threshold: float | None
    fov_margin: float | None
    keep_aspect_ratio: bool | None
    max_image_bytes: int | None


# ----------------------------------------------------------------------------------------------- loading
def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


def _fetch_url(url: str, max_image_bytes: int) -> bytes:
    """The body of `url`, or a `ValueError` naming the URL and what went wrong (never a hang: a timeout applies)."""
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_SECONDS) as response:
            data = response.read(max_image_bytes + 1)
    except urllib.error.HTTPError as error:
        raise ValueError(f"{url}: the server answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise ValueError(f"{url}: could not be fetched ({getattr(error, 'reason', error)})") from None
    if len(data) > max_image_bytes:
        raise ValueError(f"{url}: the download exceeds max_image_bytes={max_image_bytes:,}")
    return data


def _open_image_file(
    source: Any, max_image_bytes: int, draft_side: int | None = None, name: str | None = None
) -> Image.Image:
    """Open a path, bytes or a `datasets` image dict; fully decode it; raise `ValueError` with the reason.

    With `draft_side`, a JPEG is decoded at the smallest DCT scale whose both sides are still >= `draft_side`
    (much faster for large photographs than decoding everything and resizing)."""
    name = name or _describe(source)
    if isinstance(source, dict):
        if source.get("bytes") is not None:
            source = source["bytes"]
        elif source.get("path"):
            source = name = source["path"]
        else:
            raise ValueError("Image dict has neither 'bytes' nor 'path'")
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif not os.path.isfile(source):
        raise FileNotFoundError(f"Image file not found: {name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
        _check_size(image, name, max_image_bytes)
        if draft_side and image.format == "JPEG":
            image.draft("RGB", (draft_side, draft_side))
        image.load()
    except Image.DecompressionBombError as error:
        raise ValueError(f"{name}: refusing a possible decompression bomb ({error})") from None
    except UnidentifiedImageError:
        raise ValueError(f"{name}: not a readable image file (unknown format, empty or not an image)") from None
    except OSError as error:
        raise ValueError(f"{name}: image data is truncated or corrupt ({error})") from None
    return image


def _decoded_bytes(image: Image.Image) -> int:
    """Width x height x channels x bytes per channel of `image` once decoded (known from the header alone)."""
    try:
        mode = ImageMode.getmode(image.mode)
        per_pixel = len(mode.bands) * np.dtype(mode.typestr).itemsize
    except (KeyError, TypeError):
        per_pixel = 4
    return image.size[0] * image.size[1] * per_pixel


def _check_size(image: Image.Image, name: str, max_image_bytes: int) -> None:
    width, height = image.size
    decoded = _decoded_bytes(image)
    if decoded > max_image_bytes:
        raise ValueError(
            f"{name}: {width}x{height} {image.mode} decodes to {decoded:,} bytes, more than "
            f"max_image_bytes={max_image_bytes:,}; refusing a possible decompression bomb"
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ValueError(f"{name}: {width}x{height} pixels is too small for a fundus photograph")


def _float_to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: image array holds NaN or infinite values")
    low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
    scale = 255.0 if high <= 1.0 + FLOAT_ROUNDING / 255 else 1.0
    if low * scale < -FLOAT_ROUNDING:
        raise ValueError(
            f"{name}: image array holds negative values (down to {low:.3g}): it looks normalised with a mean and "
            "std already; give the image itself (values 0..1 or 0..255), or its pixel_values to the model"
        )
    if high > 255 + FLOAT_ROUNDING:
        raise ValueError(f"{name}: float image values reach {high:.3g}; expected 0..1 or 0..255")
    return np.clip(np.rint(array.astype(np.float32) * scale), 0, 255).astype(np.uint8)  # clips only rounding noise


def _integer_to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.min(initial=0) < 0:
        raise ValueError(f"{name}: image array holds negative values")
    peak = int(array.max(initial=0))
    bits = next((bits for bits in INTEGER_BIT_DEPTHS if peak < 2**bits), None)
    if bits == 8:
        return array.astype(np.uint8)
    if bits is None:  # wider than 16 bits
        return np.rint(array.astype(np.float64) * (255.0 / peak)).astype(np.uint8)
    full_scale = 2**bits - 1
    return ((array.astype(np.uint32) * 255 + full_scale // 2) // full_scale).astype(np.uint8)


def _array_to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    """Scale an image array of any numeric dtype to uint8 by the rules in the module docstring."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        return _float_to_uint8(array, name)
    if np.issubdtype(array.dtype, np.integer):
        return _integer_to_uint8(array, name)
    raise ValueError(f"{name}: unsupported image array dtype {array.dtype}")


def _tensor_to_numpy(tensor: Any, name: str) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.float()  # NumPy has no bfloat16
    try:
        return tensor.numpy()
    except TypeError as error:
        raise ValueError(f"{name}: unsupported tensor dtype {tensor.dtype} ({error})") from None


def _array_to_pil(array: np.ndarray, name: str) -> Image.Image:
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # channels-first -> channels-last
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"{name}: expected an (H, W), (H, W, C) or (C, H, W) image array, got {array.shape}")
    array = np.ascontiguousarray(_array_to_uint8(array, name))
    return Image.fromarray(array, mode={2: "L", 3: "RGB", 4: "RGBA"}[array.shape[-1] if array.ndim == 3 else 2])


def _composite_on_black(image: Image.Image) -> Image.Image:
    rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
    rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
    return Image.fromarray(rgb.astype(np.uint8), mode="RGB")


def pil_to_rgb(image: Image.Image, name: str = "<image>") -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: 16/32-bit and float content is scaled, transparency goes on black."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        gray = _array_to_uint8(np.asarray(image), name)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        return _composite_on_black(image)
    return image.convert("RGB")


def load_fundus_image(
    source: Any, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES, draft_side: int | None = None
) -> Image.Image:
    """Load one image from a path, URL, bytes, `datasets` image dict, PIL image, NumPy array or torch tensor as an
    upright 8-bit RGB PIL image, by the rules in the module docstring. Raises `ValueError` (or `FileNotFoundError`)
    naming the problem. `draft_side` lets large JPEG files decode at a reduced scale that keeps both sides >=
    `draft_side`."""
    name = _describe(source)
    if isinstance(source, Image.Image):
        _check_size(source, name, max_image_bytes)
        image = source
    elif isinstance(source, np.ndarray) or type(source).__module__.startswith("torch"):
        array = _tensor_to_numpy(source, name) if hasattr(source, "detach") else source
        image = _array_to_pil(array, name)
        _check_size(image, name, max_image_bytes)
    elif isinstance(source, str) and source.startswith(("http://", "https://")):
        image = _open_image_file(_fetch_url(source, max_image_bytes), max_image_bytes, draft_side, name)
    elif isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview, dict)):
        image = _open_image_file(source, max_image_bytes, draft_side)
    else:
        raise ValueError(f"Unsupported image input of type {type(source).__name__}")
    return pil_to_rgb(ImageOps.exif_transpose(image), name)


# ------------------------------------------------------------------------------------------ field of view
def _main_run(counts: np.ndarray) -> tuple[int, int]:
    """`[start, end)` of the contiguous run of non-negligible counts holding the most bright pixels."""
    above = np.concatenate([[False], counts >= 0.1 * counts.max(), [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    best = int(np.argmax([counts[a:b].sum() for a, b in zip(starts, ends, strict=True)]))
    return int(starts[best]), int(ends[best])


def percentile_of_8bit(channel: Image.Image, q: float) -> float:
    """`np.percentile(np.asarray(channel), q)` (linear interpolation) of an 8-bit single-channel image, from its
    histogram: no sort of the pixels."""
    cumulative = np.cumsum(channel.histogram())
    position = q / 100 * (int(cumulative[-1]) - 1)
    below, fraction = divmod(position, 1.0)
    low = int(np.searchsorted(cumulative, below, side="right"))  # the sorted pixel at index `below`
    high = int(np.searchsorted(cumulative, below + 1, side="right")) if fraction else low
    return low + (high - low) * fraction


def find_field_of_view(image: Image.Image, threshold: float = 0.1, margin: float = 0.01) -> tuple[int, int, int, int]:
    """Bounding box `(left, top, right, bottom)` of the bright fundus disc on its dark border.

    Works on a ~128 px thumbnail of the red channel. Along each axis it keeps the contiguous band of rows (columns)
    whose bright count reaches a tenth of the widest chord and that holds most of the bright pixels, so labels
    burnt into the border do not widen the box. Returns the whole image when no clear field of view is found.
    """
    width, height = image.size
    factor = max(1, max(width, height) // FOV_ANALYSIS_SIDE)
    thumbnail = image.getchannel("R").reduce(factor) if factor > 1 else image.getchannel("R")
    red = np.asarray(thumbnail)
    level = max(10.0, threshold * percentile_of_8bit(thumbnail, 99))
    inside = red > level
    if not inside.any():
        return 0, 0, width, height
    top, bottom = _main_run(inside.sum(axis=1))
    left, right = _main_run(inside[top:bottom].sum(axis=0))
    top, bottom = _main_run(inside[:, left:right].sum(axis=1))
    top, bottom, left, right = top * factor, bottom * factor, left * factor, right * factor
    if (bottom - top) * (right - left) < 0.1 * width * height:
        return 0, 0, width, height
    pad_y, pad_x = round(margin * (bottom - top)), round(margin * (right - left))
    return max(0, left - pad_x), max(0, top - pad_y), min(width, right + pad_x), min(height, bottom + pad_y)


class CanvasPlacement(NamedTuple):
    """Output `canvas` size, the `fitted` size the image is resized to, and its top-left `offset` on the canvas."""

    canvas: tuple[int, int]
    fitted: tuple[int, int]
    offset: tuple[int, int]


class ImageGeometry(NamedTuple):
    """Where a prepared image came from: the loaded input's `(width, height)`, the field-of-view `crop_box`
    `(left, top, right, bottom)` in it, and the `placement` of that crop on the output canvas."""

    input_size: tuple[int, int]
    crop_box: tuple[int, int, int, int]
    placement: CanvasPlacement


def _cropped(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    return image if tuple(box) == (0, 0, *image.size) else image.crop(box)


def _fit_size(width: int, height: int, target_width: int, target_height: int) -> tuple[int, int]:
    scale = min(target_width / width, target_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


# ------------------------------------------------------------------------------------------- processor
class VisionCLIPImageProcessor(PilBackend):
    r"""
    Fundus image processor: load -> crop the field of view -> resize the long side -> zero-pad to `size` ->
    rescale -> normalise. Returns `pixel_values` of shape `(batch, 3, size["height"], size["width"])`.

    The steps are public for data pipelines that run them apart (the training stream decodes in DataLoader workers
    and normalises on the device): `prepare_image` (load, crop, resize, pad), or `load_and_crop` then `placement`
    for augmentation that warps the crop onto the canvas in one resampling; `to_pixel_values` or
    `pixel_gain_offset` for rescale and normalise.
    """

    valid_kwargs = VisionCLIPImageProcessorKwargs
    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BICUBIC
    size = {"height": 512, "width": 512}
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    do_crop_fov = True
    fov_threshold = 0.1
    fov_margin = 0.01
    keep_aspect_ratio = True
    max_image_bytes = DEFAULT_MAX_IMAGE_BYTES

    def _standardize_kwargs(self, **kwargs) -> dict:
        _check_settings(kwargs)  # at construction and for every call's overrides, before transformers reads them
        return super()._standardize_kwargs(**kwargs)

    def fetch_images(self, images: Any) -> Any:
        return images  # loading (paths, URLs, arrays) happens in `load_fundus_image`

    def prepare_image(self, image: Any, **kwargs) -> Image.Image:
        """Load one input and apply the geometric steps (FOV crop, resize, pad); returns an RGB PIL image."""
        image = self.load_and_crop(image, **kwargs)
        return self._place_on_canvas(image, self.placement(*image.size, **kwargs), **kwargs)

    def prepare_image_with_geometry(self, image: Any, **kwargs) -> tuple[Image.Image, ImageGeometry]:
        """`prepare_image`, and the `ImageGeometry` that maps its output back onto the input. The input is decoded
        at full size (no JPEG draft), so the geometry is in the input's own pixel coordinates."""
        image = load_fundus_image(image, kwargs.get("max_image_bytes") or self.max_image_bytes)
        box = self.field_of_view_box(image, **kwargs)
        cropped = _cropped(image, box)
        placement = self.placement(*cropped.size, **kwargs)
        return self._place_on_canvas(cropped, placement, **kwargs), ImageGeometry(image.size, box, placement)

    def _place_on_canvas(self, image: Image.Image, placement: CanvasPlacement, **kwargs) -> Image.Image:
        if placement.fitted == image.size and placement.canvas == image.size:
            return image
        fitted = image.resize(placement.fitted, kwargs.get("resample", self.resample), reducing_gap=3.0)
        if placement.fitted == placement.canvas:
            return fitted
        canvas = Image.new("RGB", placement.canvas)
        canvas.paste(fitted, placement.offset)
        return canvas

    def load_and_crop(self, image: Any, **kwargs) -> Image.Image:
        """Load one input as RGB and crop its field of view (when `do_crop_fov`)."""
        size = kwargs.get("size") or self.size
        # the field of view spans the short side at most; keep it >= 1.25x the output after a JPEG draft decode
        draft_side = (
            round(1.25 * max(size["height"], size["width"])) if kwargs.get("do_resize", self.do_resize) else None
        )
        image = load_fundus_image(image, kwargs.get("max_image_bytes") or self.max_image_bytes, draft_side)
        return _cropped(image, self.field_of_view_box(image, **kwargs))

    def field_of_view_box(self, image: Image.Image, **kwargs) -> tuple[int, int, int, int]:
        """The crop box `(left, top, right, bottom)` the field-of-view step takes: the whole image when
        `do_crop_fov` is off."""
        if not kwargs.get("do_crop_fov", self.do_crop_fov):
            return 0, 0, *image.size
        return find_field_of_view(
            image, kwargs.get("fov_threshold", self.fov_threshold), kwargs.get("fov_margin", self.fov_margin)
        )

    def placement(self, width: int, height: int, **kwargs) -> CanvasPlacement:
        """Where the resize and pad steps put a `width` x `height` (cropped) image on the output canvas."""
        if not kwargs.get("do_resize", self.do_resize):
            return CanvasPlacement((width, height), (width, height), (0, 0))
        size = kwargs.get("size") or self.size
        canvas = (size["width"], size["height"])
        if not kwargs.get("keep_aspect_ratio", self.keep_aspect_ratio):
            return CanvasPlacement(canvas, canvas, (0, 0))
        fitted = _fit_size(width, height, *canvas)
        return CanvasPlacement(canvas, fitted, ((canvas[0] - fitted[0]) // 2, (canvas[1] - fitted[1]) // 2))

    def _preprocess_image_like_inputs(self, images: Any, *args, **kwargs) -> BatchFeature:
        images = _flatten_images(images)
        if not images:
            raise ValueError("No images given")
        pixel_values = self.to_pixel_values([self.prepare_image(image, **kwargs) for image in images], **kwargs)
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=kwargs.get("return_tensors"))

    def to_pixel_values(self, images: list[Image.Image], **kwargs) -> np.ndarray:
        """Rescale and normalise prepared RGB images of one size into a `(batch, 3, H, W)` float32 array."""
        if len({image.size for image in images}) > 1:
            raise ValueError("Images have different sizes after processing; enable do_resize to batch them")
        gain, offset = self.pixel_gain_offset(**kwargs)
        width, height = images[0].size
        pixel_values = np.empty((len(images), 3, height, width), dtype=np.float32)
        for out, image in zip(pixel_values, images, strict=True):
            np.multiply(np.asarray(image).transpose(2, 0, 1), gain, out=out, casting="unsafe")
            out += offset
        return pixel_values

    def pixel_value_range(self, **kwargs) -> tuple[float, float]:
        """The lowest and highest value `pixel_values` can hold with these settings (black and white pixels)."""
        gain, offset = self.pixel_gain_offset(**kwargs)
        ends = np.stack([offset, 255 * gain + offset])
        return float(ends.min()), float(ends.max())

    def pixel_gain_offset(self, **kwargs) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel float32 `gain`, `offset` of shape `(3, 1, 1)`: `uint8 pixel * gain + offset` (multiply, then
        add, in float32) is the rescale-then-normalise step, as `to_pixel_values` computes it."""
        gain = np.full((3, 1, 1), 1.0, dtype=np.float32)
        offset = np.zeros((3, 1, 1), dtype=np.float32)
        if kwargs.get("do_rescale", self.do_rescale):
            gain *= kwargs.get("rescale_factor") or self.rescale_factor
        if kwargs.get("do_normalize", self.do_normalize):
            mean = np.asarray(kwargs.get("image_mean") or self.image_mean, dtype=np.float32).reshape(-1, 1, 1)
            std = np.asarray(kwargs.get("image_std") or self.image_std, dtype=np.float32).reshape(-1, 1, 1)
            gain, offset = gain / std, (offset - mean) / std
        return gain, offset


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def _is_side(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= MIN_IMAGE_SIDE


def _check_settings(settings: dict[str, Any]) -> None:
    """`ValueError` naming the first setting that cannot work (unset ones, None, are skipped)."""
    size = settings.get("size")
    if size is not None:
        if _is_side(size):
            sides = (size, size)
        elif isinstance(size, (list, tuple)):
            sides = tuple(size)
        else:
            try:
                sides = (size["height"], size["width"])
            except (KeyError, TypeError):
                sides = ()
        if len(sides) != 2 or not all(_is_side(side) for side in sides):
            raise ValueError(
                f"size must give a height and width of at least {MIN_IMAGE_SIDE} pixels, e.g. "
                f"{{'height': 512, 'width': 512}}; got {dict(size) if hasattr(size, 'height') else size!r}"
            )
    threshold = settings.get("fov_threshold")
    if threshold is not None and not (_is_number(threshold) and 0 <= threshold < 1):
        raise ValueError(
            f"fov_threshold must be a number from 0 to below 1 (a fraction of the bright red level), got {threshold!r}"
        )
    margin = settings.get("fov_margin")
    if margin is not None and not (_is_number(margin) and 0 <= margin <= 0.5):
        raise ValueError(
            f"fov_margin must be a number from 0 to 0.5 (a fraction of the field of view's size), got {margin!r}"
        )
    limit = settings.get("max_image_bytes")
    if limit is not None and not (isinstance(limit, (int, np.integer)) and not isinstance(limit, bool) and limit > 0):
        raise ValueError(f"max_image_bytes must be a positive integer, got {limit!r}")


def _flatten_images(images: Any) -> list[Any]:
    if isinstance(images, (list, tuple)):
        return [image for item in images for image in _flatten_images(item)]
    if getattr(images, "ndim", 0) == 4:
        return list(images)
    return [images]


VisionCLIPImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = ["ImageGeometry", "VisionCLIPImageProcessor", "find_field_of_view", "load_fundus_image", "pil_to_rgb"]
