from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from image_processing_visionclip import VisionCLIPImageProcessor, find_field_of_view, load_fundus_image
from tests.forged_images import png_claiming_size

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def synthetic_fundus(width: int = 300, height: int = 200, radius: int = 90, centre=(150, 100)) -> Image.Image:
    """An orange disc on black, like a fundus photograph's field of view."""
    yy, xx = np.mgrid[:height, :width]
    inside = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[inside] = (200, 90, 40)
    return Image.fromarray(array)


def normalised_black() -> np.ndarray:
    return (0 - IMAGENET_MEAN) / IMAGENET_STD


# ------------------------------------------------------------------------------------------- FOV crop
def largest_bright_component(image: Image.Image, step: int = 4) -> np.ndarray:
    """Mask (at 1/step scale) of the largest 4-connected region with red > 20: the fundus, without labels."""
    bright = np.asarray(image)[::step, ::step, 0] > 20
    labels = np.zeros(bright.shape, dtype=np.int32)
    sizes = [0]
    for start in zip(*np.nonzero(bright), strict=True):
        if labels[start]:
            continue
        sizes.append(0)
        labels[start] = len(sizes) - 1
        stack = [start]
        while stack:
            y, x = stack.pop()
            sizes[-1] += 1
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < bright.shape[0] and 0 <= nx < bright.shape[1] and bright[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = len(sizes) - 1
                    stack.append((ny, nx))
    return labels == int(np.argmax(sizes))


def test_fov_crop_keeps_the_whole_disc_on_every_real_photo(real_photos):
    step = 4
    for path in real_photos:
        image = load_fundus_image(path)
        left, top, right, bottom = find_field_of_view(image)
        fundus = largest_bright_component(image, step)
        ys, xs = np.nonzero(fundus)
        ys, xs = ys * step, xs * step
        kept = ((ys >= top) & (ys < bottom) & (xs >= left) & (xs < right)).mean()
        assert kept > 0.995, f"{path.name}: crop {left, top, right, bottom} loses {1 - kept:.2%} of the fundus"
        # tight: no more than a few percent larger than the fundus itself
        assert bottom - top <= (ys.max() - ys.min() + step) * 1.05 + 4, path.name
        assert right - left <= (xs.max() - xs.min() + step) * 1.05 + 4, path.name


def test_fov_crop_centres_an_off_centre_disc_and_ignores_burnt_in_text():
    image = synthetic_fundus(width=400, height=260, radius=100, centre=(250, 130))
    array = np.asarray(image).copy()
    array[5:15, 5:60] = 255  # a white label in the corner
    left, top, right, bottom = find_field_of_view(Image.fromarray(array), margin=0.0)
    assert abs(left - 150) <= 4 and abs(right - 350) <= 4
    assert abs(top - 30) <= 4 and abs(bottom - 230) <= 4


def test_fov_crop_leaves_an_image_without_dark_border_alone():
    image = Image.new("RGB", (120, 80), (180, 80, 40))
    assert find_field_of_view(image) == (0, 0, 120, 80)
    assert find_field_of_view(Image.new("RGB", (50, 50))) == (0, 0, 50, 50)  # all black


# ----------------------------------------------------------------------------------------- processor
def test_output_is_square_padded_and_normalised():
    processor = VisionCLIPImageProcessor(size={"height": 64, "width": 64}, do_crop_fov=False)
    image = Image.new("RGB", (200, 100), (255, 0, 128))  # 2:1, no border
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 64, 64) and pixels.dtype == torch.float32
    expected_colour = (np.array([1.0, 0.0, 128 / 255], dtype=np.float32) - IMAGENET_MEAN) / IMAGENET_STD
    centre = pixels[0, :, 32, 32].numpy()
    np.testing.assert_allclose(centre, expected_colour, atol=2e-2)
    np.testing.assert_allclose(pixels[0, :, 2, 32].numpy(), normalised_black(), atol=1e-5)  # padding rows
    content_rows = (pixels[0, 0] != pixels[0, 0, 0, 0]).any(dim=1).sum().item()
    assert content_rows == 32


def test_fov_crop_then_resize_fills_the_square_with_the_disc():
    processor = VisionCLIPImageProcessor(size={"height": 96, "width": 96})
    pixels = processor(synthetic_fundus(), return_tensors="np")["pixel_values"][0]
    red = pixels[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    covered = (red > 0.5).mean()
    assert covered == pytest.approx(np.pi / 4, abs=0.05)  # a disc inscribed in the square


def test_stretch_mode_and_uncropped_mode():
    image = synthetic_fundus()
    stretched = VisionCLIPImageProcessor(size={"height": 40, "width": 50}, keep_aspect_ratio=False)
    assert stretched(image, return_tensors="pt")["pixel_values"].shape == (1, 3, 40, 50)
    plain = VisionCLIPImageProcessor(size={"height": 64, "width": 64}, do_crop_fov=False)
    cropped = VisionCLIPImageProcessor(size={"height": 64, "width": 64})
    assert not torch.equal(
        plain(image, return_tensors="pt")["pixel_values"], cropped(image, return_tensors="pt")["pixel_values"]
    )


def test_inputs_of_every_kind_give_the_same_pixels(tmp_path: Path):
    image = synthetic_fundus()
    path = tmp_path / "fundus.png"
    image.save(path)
    array = np.asarray(image)
    processor = VisionCLIPImageProcessor(size={"height": 48, "width": 48})
    reference = processor(image, return_tensors="pt")["pixel_values"]
    sources = [
        str(path),
        path,
        path.read_bytes(),
        {"bytes": path.read_bytes(), "path": None},
        {"path": str(path)},
        array,
        array.transpose(2, 0, 1),
        array.astype(np.float32) / 255.0,
        torch.from_numpy(array.copy()),
        array.astype(np.uint16) * 257,
    ]
    for source in sources:
        torch.testing.assert_close(
            processor(source, return_tensors="pt")["pixel_values"], reference, msg=type(source).__name__
        )
    batch = processor([image, str(path), array], return_tensors="pt")["pixel_values"]
    assert batch.shape == (3, 3, 48, 48)
    assert processor(np.stack([array, array]), return_tensors="pt")["pixel_values"].shape[0] == 2


def test_settings_are_saved_with_the_processor(tmp_path: Path):
    processor = VisionCLIPImageProcessor(
        size={"height": 80, "width": 80},
        fov_threshold=0.2,
        fov_margin=0.05,
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.2, 0.2, 0.2],
    )
    processor.save_pretrained(tmp_path)
    reloaded = VisionCLIPImageProcessor.from_pretrained(tmp_path)
    for key in ("fov_threshold", "fov_margin", "keep_aspect_ratio", "do_crop_fov", "max_image_bytes"):
        assert getattr(reloaded, key) == getattr(processor, key), key
    image = synthetic_fundus()
    torch.testing.assert_close(
        reloaded(image, return_tensors="pt")["pixel_values"], processor(image, return_tensors="pt")["pixel_values"]
    )


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("size", {"height": 0, "width": 0}, "size must give a height and width"),
        ("size", -5, "size must give a height and width"),
        ("size", {"shortest_edge": 224}, "size must give a height and width"),
        ("fov_threshold", 5.0, "fov_threshold must be a number from 0 to below 1"),
        ("fov_threshold", -0.1, "fov_threshold must be a number from 0 to below 1"),
        ("fov_threshold", float("nan"), "fov_threshold must be a number from 0 to below 1"),
        ("fov_margin", -1.0, "fov_margin must be a number from 0 to 0.5"),
        ("fov_margin", 5.0, "fov_margin must be a number from 0 to 0.5"),
        ("max_image_bytes", 0, "max_image_bytes must be a positive integer"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(setting, value, message):
    with pytest.raises(ValueError, match=message):
        VisionCLIPImageProcessor(**{setting: value})
    with pytest.raises(ValueError, match=message):
        VisionCLIPImageProcessor()(synthetic_fundus(), **{setting: value})


# --------------------------------------------------------------------------------------- odd inputs
def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "sixteen.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    loaded = np.asarray(load_fundus_image(path))
    assert loaded.dtype == np.uint8 and loaded.shape == (64, 64, 3)
    np.testing.assert_allclose(loaded[..., 0].astype(float), ramp / 257.0, atol=0.51)
    rgb16 = np.stack([ramp, ramp // 2, ramp // 4], axis=-1)
    np.testing.assert_allclose(np.asarray(load_fundus_image(rgb16)).astype(float), rgb16 / 257.0, atol=0.51)


def test_grayscale_rgba_palette_and_cmyk(tmp_path: Path):
    gray = Image.new("L", (32, 32), 100)
    assert np.asarray(load_fundus_image(gray)).tolist()[0][0] == [100, 100, 100]
    rgba = Image.new("RGBA", (32, 32), (200, 100, 50, 128))  # half-transparent: composited on black
    np.testing.assert_array_equal(np.asarray(load_fundus_image(rgba))[0, 0], [100, 50, 25])
    palette = Image.new("P", (32, 32))
    palette.putpalette([10, 20, 30] * 256)
    np.testing.assert_array_equal(np.asarray(load_fundus_image(palette))[0, 0], [10, 20, 30])
    cmyk_path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 128, 255, 0)).save(cmyk_path, quality=95)
    loaded = np.asarray(load_fundus_image(cmyk_path)).astype(int)
    expected = np.asarray(Image.open(cmyk_path).convert("RGB")).astype(int)
    np.testing.assert_array_equal(loaded, expected)
    assert loaded[16, 16, 0] > 200 and loaded[16, 16, 2] < 60  # orange-ish, not inverted


def test_exif_orientation_is_applied(tmp_path: Path):
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    path = tmp_path / "rotated.jpg"
    Image.fromarray(array).save(path, exif=exif, quality=95)
    loaded = np.asarray(load_fundus_image(path))
    assert loaded.shape == (40, 20, 3)
    assert loaded[5, 10, 0] > 200 and loaded[35, 10, 0] < 60  # red half now on top


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: Image.new("RGB", (1, 1)), "too small"),
        (lambda d: _write(d / "big.png", png_claiming_size("RGB", 20000, 20000)), "decompression bomb"),
        (lambda d: _write(d / "truncated.jpg", _jpeg_bytes()[:600]), "truncated or corrupt"),
        (lambda d: _write(d / "notes.txt", b"this is not an image\n"), "not a readable image"),
        (lambda d: _write(d / "empty.png", b""), "not a readable image"),
        (lambda d: np.full((16, 16), np.nan, dtype=np.float32), "NaN"),
        (lambda d: np.zeros((16, 16, 5), dtype=np.uint8), "image array"),
        (lambda d: 42, "Unsupported image input"),
    ],
    ids=["1x1", "20000x20000-header", "truncated", "text-file", "empty-file", "nan", "5-channels", "int"],
)
def test_bad_inputs_raise_clear_value_errors(tmp_path: Path, make, message):
    source = make(tmp_path)
    with pytest.raises(ValueError, match=message):
        load_fundus_image(source)
    with pytest.raises(ValueError, match=message):
        VisionCLIPImageProcessor(size={"height": 32, "width": 32})(source)


def test_missing_file_names_the_path(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        load_fundus_image(tmp_path / "nowhere.png")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_large_jpeg_draft_decoding_matches_full_decoding(tmp_path: Path):
    image = synthetic_fundus(width=2400, height=1600, radius=760, centre=(1200, 800))
    path = tmp_path / "large.jpg"
    image.save(path, quality=95)
    processor = VisionCLIPImageProcessor(size={"height": 128, "width": 128})
    from_file = processor(str(path), return_tensors="pt")["pixel_values"]  # decoded at a reduced JPEG scale
    with Image.open(path) as full:
        from_pil = processor(full.convert("RGB"), return_tensors="pt")["pixel_values"]  # decoded at full size
    assert (from_file - from_pil).abs().mean() < 0.05
    assert load_fundus_image(path, draft_side=200).size == (300, 200)  # 1/8 scale: both sides still >= 200


def test_histogram_percentile_equals_numpys():
    from image_processing_visionclip import percentile_of_8bit

    rng = np.random.default_rng(4)
    for shape in [(1, 1), (7, 13), (128, 96)]:
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        if shape[0] > 1:
            array[: shape[0] // 2] = 0  # a dark border, as around a fundus
        channel = Image.fromarray(array)
        for q in (0, 37.5, 99, 100):
            assert percentile_of_8bit(channel, q) == pytest.approx(np.percentile(array, q), abs=1e-9)


def test_prepare_image_with_geometry_says_where_the_output_came_from():
    image = Image.new("RGB", (300, 200))
    ImageDraw.Draw(image).ellipse((100, 10, 280, 190), fill=(180, 90, 40))
    processor = VisionCLIPImageProcessor(size={"height": 64, "width": 64})

    prepared, geometry = processor.prepare_image_with_geometry(image)

    assert np.array_equal(np.asarray(prepared), np.asarray(processor.prepare_image(image)))
    left, top, right, bottom = geometry.crop_box
    assert geometry.input_size == (300, 200) and abs(left - 100) <= 6 and abs(right - 280) <= 6  # a 1% margin
    assert geometry.placement == processor.placement(right - left, bottom - top)
