"""The heatmap-overlay options that `predict.py` and `eval_zeroshot.py` share, and their defaults.

Overlays are meant to show where the model looks, so they default to the settings that point best on the
generator's lesion masks (`bench/bench_explain.py`, README "Where the model looks"): `cam` on a grid three times
finer. `explain()` itself keeps the fast defaults (`similarity`, `upscale=1`) for batch use.
"""

from __future__ import annotations

import argparse

from explaining_visionclip import EXPLAIN_METHODS, MAX_UPSCALE

OVERLAY_METHOD = "cam"
OVERLAY_UPSCALE = 3


def add_overlay_options(parser: argparse.ArgumentParser) -> None:
    """`--explain-method` and `--explain-upscale` (the overlays' own `--explain OUT_DIR` is the caller's)."""
    parser.add_argument(
        "--explain-method",
        choices=EXPLAIN_METHODS,
        default=OVERLAY_METHOD,
        help=f"heatmap method of the overlays (default {OVERLAY_METHOD})",
    )
    parser.add_argument(
        "--explain-upscale",
        type=int,
        default=None,
        help=f"maps from the image enlarged N times, a grid N times finer (1-{MAX_UPSCALE}; default {OVERLAY_UPSCALE})",
    )


def overlay_upscale(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The overlays' upscale: `--explain-upscale` checked (1 to MAX_UPSCALE, and only with --explain), or the
    default. Exits through `parser.error` on a bad value."""
    given = args.explain_upscale
    if given is None:
        return OVERLAY_UPSCALE
    if not 1 <= given <= MAX_UPSCALE:
        parser.error(f"--explain-upscale must be from 1 to {MAX_UPSCALE}")
    if args.explain is None:
        parser.error("--explain-upscale needs --explain OUT_DIR")
    return given
