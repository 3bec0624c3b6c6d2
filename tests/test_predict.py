"""predict.py: class names and image paths are never confused, and the bundled photographs are only a smoke run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import predict
from visionclip.explain.options import OVERLAY_METHOD, OVERLAY_UPSCALE


def photo(path: Path, tint: int) -> Path:
    yy, xx = np.mgrid[:96, :96]
    image = np.zeros((96, 96, 3), dtype=np.uint8)
    image[(yy - 48) ** 2 + (xx - 48) ** 2 < 44**2] = (200, 60 + tint, 30)
    Image.fromarray(image).save(path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    return [photo(tmp_path / "a.png", 0), photo(tmp_path / "b.png", 40)]


def test_the_old_space_separated_classes_fail_with_a_message(photos: list[Path], capsys):
    with pytest.raises(SystemExit) as exited:
        predict.main(["--classes", "cataract", "no cataract", str(photos[0])])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "image files not found: no cataract" in captured.err
    assert '--classes "cataract,no cataract"' in captured.err
    assert "accuracy" not in captured.out and "01_h" not in captured.out


def test_comma_separated_classes_classify_the_given_images(photos: list[Path], capsys):
    assert predict.main(["--classes", "cataract, no cataract", *map(str, photos)]) == 0
    out = capsys.readouterr().out
    assert "classes: ['cataract', 'no cataract']" in out
    lines = [line for line in out.splitlines() if line.startswith(("a.png", "b.png"))]
    assert [line.split()[0] for line in lines] == ["a.png", "b.png"]
    assert "accuracy" not in out


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ("cataract,{a}", "is an existing file, not a class name"),
        ("cataract,photo.jpg", "looks like an image file, not a class name"),
        ("cataract", "at least two distinct"),
        ("cataract,,", "at least two distinct"),
    ],
)
def test_class_names_that_are_files_or_too_few_are_refused(photos: list[Path], capsys, classes: str, message: str):
    with pytest.raises(SystemExit):
        predict.main(["--classes", classes.format(a=photos[0]), str(photos[1])])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "accuracy"),
    [([], True), (["--task", "glaucoma"], False), (["--classes", "cataract,no cataract"], False)],
    ids=["diagnosis", "other-task", "free-form"],
)
def test_the_bundled_photographs_are_named_and_scored_only_against_their_own_labels(capsys, argv, accuracy):
    assert predict.main(argv) == 0
    out = capsys.readouterr().out
    assert "no images given: classifying the bundled HRF test photographs" in out
    assert ("accuracy on" in out) == accuracy
    if not accuracy:
        assert "no accuracy: the classes are not the photographs' labels" in out


@pytest.mark.parametrize("batch_size", ["0", "-1"])
def test_batch_size_below_one_is_refused(photos: list[Path], capsys, batch_size: str):
    with pytest.raises(SystemExit):
        predict.main(["--batch-size", batch_size, str(photos[0])])
    assert "--batch-size must be at least 1" in capsys.readouterr().err


def test_overlays_default_to_cam_on_a_finer_grid_and_take_explain_upscale(photos, tmp_path, capsys):
    argv = ["--classes", "cataract,no cataract", str(photos[0])]
    runs = {"default": [], "x1": ["--explain-upscale", "1"], "x3": ["--explain-upscale", str(OVERLAY_UPSCALE)]}
    for folder, options in runs.items():
        assert predict.main([*argv, "--explain", str(tmp_path / folder), *options]) == 0
        assert f"{OVERLAY_METHOD} overlays written" in capsys.readouterr().out
    name = f"{photos[0].stem}__cataract.png"
    default, coarse, fine = (np.asarray(Image.open(tmp_path / folder / name)) for folder in runs)
    assert coarse.shape == fine.shape and not np.array_equal(coarse, fine)
    assert np.array_equal(default, fine)
    for wrong, message in (("0", "must be from 1 to 4"), ("5", "must be from 1 to 4")):
        with pytest.raises(SystemExit):
            predict.main([*argv, "--explain", str(tmp_path / "x0"), "--explain-upscale", wrong])
        assert f"--explain-upscale {message}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.main([*argv, "--explain-upscale", "2"])
    assert "--explain-upscale needs --explain OUT_DIR" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["similarity", "cam", "gradcam"])
def test_explain_writes_one_overlay_per_image_and_class_at_the_photographs_size(photos, tmp_path, capsys, method):
    out = tmp_path / "overlays"
    argv = ["--classes", "cataract,no cataract", "--explain", str(out), "--explain-method", method]
    assert predict.main([*argv, *map(str, photos)]) == 0
    assert f"4 {method} overlays written to {out}" in capsys.readouterr().out
    written = sorted(path.name for path in out.iterdir())
    assert written == [f"{stem}__{slug}.png" for stem in "ab" for slug in ("cataract", "no-cataract")]
    assert all(Image.open(out / name).size == (96, 96) for name in written)
