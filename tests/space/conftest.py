"""The Space's modules importable as the Space imports them (`fundus_demo`, `app` from space/), and the app running
once per test session in its own process, as `python space/app.py --model ...` starts it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPACE = ROOT / "space"
sys.path.insert(0, str(SPACE))

# The app's model: the tiny preset's saved folder, unless this names another (e.g. runs/visionclip/model, for the
# screenshot in docs/figures).
TEST_MODEL_ENV = "VISIONCLIP_SPACE_TEST_MODEL"
START_TIMEOUT = 300  # seconds; only so that an app that never starts fails instead of blocking the suite


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def space_url(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the running app; its output goes to a log file that a failure shows."""
    model = os.environ.get(TEST_MODEL_ENV) or str(tiny_folder)
    port = _free_port()
    folder = tmp_path_factory.mktemp("space")
    log_path = folder / "app.log"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(SPACE)]),
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_TEMP_DIR=str(folder / "gradio"),  # uploads and outputs, not the machine's /tmp/gradio
    )
    command = [sys.executable, str(SPACE / "app.py"), "--model", model, "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        app = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(url):
            if app.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Space app did not start ({app.poll()=}):\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        app.terminate()
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()


@pytest.fixture(scope="session")
def real_photo(real_photos: list[Path]) -> Path:
    """A real glaucoma photograph (HRF)."""
    return next(path for path in real_photos if path.name == "01_g.jpg")
