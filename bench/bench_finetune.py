"""Fine-tuning throughput: finetune.py's `full` mode vs a plain transformers `Trainer` run of the same classifier.

Both train the same `VisionCLIPForImageClassification` (the image tower, projection and a linear head over the
normalised embedding, built from one model's weights) on the same generated images, prepared once to the model's
input size and turned into pixel values batch by batch; same batch size, epochs, AdamW learning rates, warm-up and
cosine schedule and precision (what `--mixed-precision auto` picks on this device), no evaluation, no checkpoints.
Each is timed around its whole training call (set-up included) after a one-batch warm-up run of both. Reports
images/s of each and their ratio.

    python bench/bench_finetune.py [--model runs/visionclip/model] [--images 64] [--batch-size 16] [--epochs 2]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import tempfile
import time

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from visionclip.factory import load_model
from visionclip.finetune.fit import FitOptions, fit, pixel_values
from visionclip.finetune.model import zero_shot_classifier
from visionclip.precision import PRECISIONS, resolve_precision
from visionclip.synthetic.labels import resolve_prevalence
from visionclip.synthetic.writer import SampleMaker
from visionclip.zeroshot.tasks import load_task


class PreparedImages(torch.utils.data.Dataset):
    """Prepared uint8 images and labels as the `Trainer` takes them: pixel values computed per item."""

    def __init__(self, image_processor, images: list[np.ndarray], labels: np.ndarray):
        self.image_processor, self.images, self.labels = image_processor, images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pixels = pixel_values(self.image_processor, [self.images[index]])[0]
        return {"pixel_values": pixels, "labels": torch.tensor(int(self.labels[index]))}


def generated_images(image_processor, count: int) -> tuple[list[np.ndarray], np.ndarray]:
    maker = SampleMaker(512, 7, tuple(sorted(resolve_prevalence().items())))
    images = [np.asarray(image_processor.prepare_image(maker.sample("evaluation", i).png)) for i in range(count)]
    return images, np.arange(count) % 3


def time_ours(start, image_processor, images, labels, options: FitOptions) -> float:
    began = time.perf_counter()
    fit(start, image_processor, images, labels, options)
    return len(images) * options.epochs / (time.perf_counter() - began)


def time_trainer(start, image_processor, images, labels, options: FitOptions) -> float:
    model = copy.deepcopy(start).train()
    with tempfile.TemporaryDirectory() as output:
        arguments = TrainingArguments(
            output_dir=output,
            per_device_train_batch_size=options.batch_size,
            num_train_epochs=options.epochs,
            learning_rate=options.lr,
            weight_decay=options.weight_decay,
            warmup_steps=int(options.warmup_ratio * options.epochs * math.ceil(len(images) / options.batch_size)),
            lr_scheduler_type="cosine",
            bf16=options.precision == "bf16",
            fp16=options.precision == "fp16",
            use_cpu=not torch.cuda.is_available(),
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            logging_strategy="no",
            dataloader_num_workers=0,
            seed=options.seed,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=arguments, train_dataset=PreparedImages(image_processor, images, labels))
        began = time.perf_counter()
        trainer.train()
        return len(images) * options.epochs / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small", help="saved folder, Hub id, checkpoint or preset")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--mixed-precision", choices=PRECISIONS, default="auto")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, processor = load_model(args.model)
    precision = resolve_precision(args.mixed_precision, "cuda" if torch.cuda.is_available() else "cpu")
    print(precision.summary())
    start = zero_shot_classifier(model, processor.tokenizer, load_task("hrf"), list(load_task("hrf").labels))
    images, labels = generated_images(processor.image_processor, args.images)
    # one learning rate for tower and head, no inner validation: what the Trainer run does too
    options = FitOptions(
        mode="full",
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-4,
        head_lr=1e-4,
        val_fraction=0.0,
        class_weighting=False,
        precision=precision.mixed_precision,
    )
    warm_up = dataclasses.replace(options, epochs=1)
    for timed in (time_ours, time_trainer):  # first calls pay one-off costs (kernel selection, allocations)
        timed(start, processor.image_processor, images[: args.batch_size], labels[: args.batch_size], warm_up)
    ours = time_ours(start, processor.image_processor, images, labels, options)
    theirs = time_trainer(start, processor.image_processor, images, labels, options)
    print(f"finetune.py full mode : {ours:8.1f} images/s")
    print(f"transformers Trainer  : {theirs:8.1f} images/s")
    print(f"ratio                 : {ours / theirs:8.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()
