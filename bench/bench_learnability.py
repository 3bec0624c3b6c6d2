"""Learnability check: a small CNN trained on generated images detects each generated finding.

Generates a training split and a held-out split (different seeds) with the default mix, downsamples them, trains
a plain-torch CNN with one sigmoid output per label (the 12 finding columns, DR grade >= 1, DR grade >= 2, and
the readability flags), and reports per-label AUROC on the held-out split twice: against every negative image
(one-vs-rest) and against fully normal images only ("finding vs normal").

    python bench/bench_learnability.py                       # ~10 minutes on 2 CPU cores
    python bench/bench_learnability.py --train 2000 --test 600 --epochs 4   # quick look
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np
from PIL import Image

from visionclip.schema import FINDING_COLUMNS
from visionclip.synthetic import FundusGenerator

LABELS = (
    *FINDING_COLUMNS,
    "dr_any",
    "dr_referable",
    "not_fundus",
    "retina_unreadable",
    "disc_unreadable",
    "macula_unreadable",
)


def targets(record: dict) -> list[int]:
    """Binary targets, positive = the rarer, abnormal state (so every AUROC reads the same way)."""
    derived = {
        "dr_any": record["dr_grade"] >= 1,
        "dr_referable": record["dr_grade"] >= 2,
        "not_fundus": not record["is_fundus"],
        "retina_unreadable": not record["is_retinal_region_readable"],
        "disc_unreadable": not record["is_optic_disc_readable"],
        "macula_unreadable": not record["is_macular_readable"],
    }
    return [int(derived[name] if name in derived else record[name]) for name in LABELS]


def is_normal(record: dict) -> bool:
    readable = all(record[k] for k in ("is_fundus", "is_retinal_region_readable"))
    return readable and record["dr_grade"] == 0 and not any(record[name] for name in FINDING_COLUMNS)


def _make(task: tuple[int, int, int, int]) -> tuple[np.ndarray, list[int], bool]:
    gen_size, input_size, seed, index = task
    generator = _make.cache.get((gen_size, seed))
    if generator is None:
        generator = _make.cache[(gen_size, seed)] = FundusGenerator(gen_size, seed=seed, encode_png=False)
    sample = generator.sample(index)
    small = sample.image.resize((input_size, input_size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8), targets(sample.record), is_normal(sample.record)


_make.cache = {}


def generate(count: int, seed: int, gen_size: int, input_size: int, workers: int):
    tasks = [(gen_size, input_size, seed, i) for i in range(count)]
    with multiprocessing.get_context().Pool(workers) as pool:
        items = pool.map(_make, tasks, chunksize=16)
    images = np.stack([x for x, _, _ in items])
    labels = np.array([y for _, y, _ in items], dtype=np.float32)
    normal = np.array([n for _, _, n in items])
    return images, labels, normal


def build_model(outputs: int):
    """A small VGG-style CNN: strided stem, four conv-BN-ReLU-pool stages, global pooling, linear head."""
    import torch.nn as nn

    def stage(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        stage(32, 48),
        stage(48, 96),
        stage(96, 160),
        stage(160, 256),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(256, outputs),
    )


def to_tensor(images: np.ndarray):
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - 0.35) / 0.25


def train(images, labels, epochs: int, batch: int, seed: int):
    import torch

    torch.manual_seed(seed)
    model = build_model(labels.shape[1])
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(images) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    positives = labels.mean(0).clip(0.01, 0.99)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((1 - positives) / positives).clamp(max=10))
    y_all = torch.from_numpy(labels)
    rng = np.random.default_rng(seed)
    model.train()
    for epoch in range(epochs):
        order = rng.permutation(len(images))
        started, total = time.perf_counter(), 0.0
        for start in range(0, len(order) - batch + 1, batch):
            index = order[start : start + batch]
            x = to_tensor(images[index])
            if rng.random() < 0.5:
                x = x.flip(3)
            x = x * float(rng.uniform(0.85, 1.15)) + float(rng.normal(0, 0.1))
            loss = loss_fn(model(x), y_all[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(index)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f} ({time.perf_counter() - started:.0f} s)")
    return model


def predict(model, images, batch: int = 128) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = to_tensor(images[start : start + batch])
            out.append(((torch.sigmoid(model(x)) + torch.sigmoid(model(x.flip(3)))) / 2).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--test", type=int, default=1500)
    parser.add_argument("--gen-size", type=int, default=320, help="generated image size before downsampling")
    parser.add_argument("--input-size", type=int, default=144)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(args.workers)
    started = time.perf_counter()
    x_train, y_train, _ = generate(args.train, args.seed, args.gen_size, args.input_size, args.workers)
    x_test, y_test, normal = generate(args.test, args.seed + 1000, args.gen_size, args.input_size, args.workers)
    print(
        f"generated {args.train} + {args.test} images at {args.gen_size} px in {time.perf_counter() - started:.0f} s"
    )
    started = time.perf_counter()
    model = train(x_train, y_train, args.epochs, args.batch, args.seed)
    print(f"trained in {time.perf_counter() - started:.0f} s")
    scores = predict(model, x_test)
    print(f"\nheld-out AUROC ({args.test} images, input {args.input_size} px; {normal.sum()} fully normal)")
    print("| label | train positives | test positives | AUROC vs all negatives | AUROC vs normal images |")
    print("|---|---|---|---|---|")
    for k, name in enumerate(LABELS):
        positives = y_test[:, k] == 1
        if positives.sum() == 0 or positives.all():
            continue
        one_vs_rest = roc_auc_score(y_test[:, k], scores[:, k])
        versus_normal = ""
        if name in FINDING_COLUMNS or name.startswith("dr_"):  # positives of this finding vs normal images
            keep = positives | normal
            versus_normal = f"{roc_auc_score(y_test[keep, k], scores[keep, k]):.3f}"
        print(
            f"| {name} | {int(y_train[:, k].sum())} | {int(positives.sum())} | {one_vs_rest:.3f} | {versus_normal} |"
        )


if __name__ == "__main__":
    main()
