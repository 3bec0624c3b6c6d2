"""`image_processing_visionclip`'s loading rules: value ranges of arrays and tensors, bit depths, the decoded-size
bound, and URLs (served from a local HTTP server)."""

from __future__ import annotations

import http.server
import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from image_processing_visionclip import VisionCLIPImageProcessor, load_fundus_image
from tests.forged_images import png_claiming_size

RAMP = np.linspace(0, 1, 32 * 32).reshape(32, 32)


# ------------------------------------------------------------------------------- arrays and tensors
@pytest.mark.parametrize(
    ("array", "message"),
    [
        ((RAMP - 0.45) / 0.225, r"negative values \(down to -2.*looks normalised"),
        (-RAMP, "negative values"),
        (RAMP * 1000.0, "reach 1e\\+03.*0..1 or 0..255"),
        (np.full((32, 32), np.inf), "NaN or infinite"),
    ],
    ids=["normalised", "negative", "above-255", "inf"],
)
def test_float_images_outside_0_1_or_0_255_are_refused(array, message):
    for source in (array.astype(np.float32), torch.from_numpy(array.astype(np.float32))):
        with pytest.raises(ValueError, match=message):
            load_fundus_image(source)


@pytest.mark.parametrize("scale", [1.0, 255.0], ids=["0..1", "0..255"])
def test_float_images_in_0_1_and_0_255_load_alike(scale):
    loaded = np.asarray(load_fundus_image((RAMP * scale).astype(np.float32)))[..., 0]
    np.testing.assert_array_equal(loaded, np.rint(RAMP * 255).astype(np.uint8))
    noisy = RAMP * scale  # black and white strayed out of range by resampling, by under half an 8-bit level
    noisy[0, 0], noisy[-1, -1] = -0.4 * scale / 255, scale * (1 + 0.4 / 255)
    np.testing.assert_array_equal(np.asarray(load_fundus_image(noisy))[..., 0], loaded)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_tensors_of_every_float_dtype_load(dtype):
    tensor = torch.from_numpy(RAMP).to(dtype)
    expected = np.rint(tensor.double().numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(load_fundus_image(tensor))[..., 0], expected)
    chw = tensor.expand(3, 32, 32)
    assert np.asarray(load_fundus_image(chw)).shape == (32, 32, 3)


@pytest.mark.parametrize(
    ("bits", "dtype"),
    [(8, np.int64), (8, np.uint16), (10, np.uint16), (12, np.uint16), (14, np.int32), (16, np.uint16)],
)
def test_integer_images_are_scaled_by_the_smallest_bit_depth_holding_their_peak(bits, dtype):
    full_scale = 2**bits - 1
    array = np.rint(RAMP * full_scale).astype(dtype)
    expected = np.rint(array.astype(np.float64) * 255 / full_scale).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(load_fundus_image(array))[..., 0], expected)
    assert np.asarray(load_fundus_image(array)).max() == 255


def test_twelve_bit_png_file_is_scaled_as_twelve_bit(tmp_path: Path):
    array = np.rint(RAMP * 4095).astype(np.uint16)
    path = tmp_path / "twelve-bit.png"
    Image.fromarray(array).save(path)
    assert Image.open(path).mode.startswith("I")
    loaded = np.asarray(load_fundus_image(path))[..., 0]
    np.testing.assert_array_equal(loaded, np.rint(array.astype(np.float64) * 255 / 4095).astype(np.uint8))


# ------------------------------------------------------------------------------ the decoded-size bound
def test_a_9999_square_rgba_png_is_refused_by_its_decoded_bytes(tmp_path: Path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming_size("RGBA", 9999, 9999))
    with pytest.raises(ValueError, match=r"9999x9999 RGBA.*399,920,004 bytes.*max_image_bytes"):
        load_fundus_image(path)
    with pytest.raises(ValueError, match="max_image_bytes"):
        VisionCLIPImageProcessor()(str(path))


@pytest.mark.parametrize(("mode", "accepted"), [("L", True), ("RGB", False), ("RGBA", False), ("I;16", False)])
def test_the_bound_counts_channels_and_bytes_per_channel(mode, accepted):
    image = Image.new(mode, (100, 100))  # 10,000 pixels: L 10,000 bytes, RGB 30,000, RGBA 40,000, I;16 20,000
    buffer = io.BytesIO()
    image.save(buffer, format="PNG" if mode != "RGBA" else "TIFF")
    for source in (image, buffer.getvalue()):
        if accepted:
            assert load_fundus_image(source, max_image_bytes=15_000).size == (100, 100)
        else:
            with pytest.raises(ValueError, match=f"100x100 {mode}.*max_image_bytes=15,000"):
                load_fundus_image(source, max_image_bytes=15_000)


# ---------------------------------------------------------------------------------------------- URLs
class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        status, content_type, body = self.routes.get(self.path, (404, "text/plain", b"no such file"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    photo = io.BytesIO()
    Image.fromarray((RAMP * 255).astype(np.uint8)).save(photo, format="PNG")
    _Handler.routes = {
        "/fundus.png": (200, "image/png", photo.getvalue()),
        "/page.html": (200, "text/html", b"<html><body>Sign in to see this image</body></html>"),
        "/broken.png": (500, "text/plain", b"internal error"),
    }
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_image_url_loads(server: str):
    loaded = np.asarray(load_fundus_image(f"{server}/fundus.png"))
    np.testing.assert_array_equal(loaded[..., 0], (RAMP * 255).astype(np.uint8))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.png", "HTTP 404"),
        ("/broken.png", "HTTP 500"),
        ("/page.html", "not a readable image"),
        (None, "could not be fetched"),
    ],
    ids=["404", "500", "html-page", "connection-refused"],
)
def test_url_failures_are_value_errors_naming_the_url(server: str, path: str | None, message: str):
    url = f"{server}{path}" if path else f"http://127.0.0.1:{_closed_port()}/fundus.png"
    with pytest.raises(ValueError, match=message) as raised:
        load_fundus_image(url)
    assert url in str(raised.value)
