"""Training throughput of VisionCLIP vs a plain loop around transformers' VisionTextDualEncoderModel.

Both train one preset's towers (`small`, or `small-pretrained` with its packaged ImageNet EfficientNet-Lite0 and
all-MiniLM-L6-v2 towers; same initial weights, same batch of the preset's image size and generated captions,
same AdamW step, symmetric InfoNCE) in this process, in fp32 and in bf16 autocast (both, to compare them; the line
above the table says which one train.py's `--mixed-precision auto` picks on this CPU). Reports images/s, model FLOPs
utilisation against a matmul peak measured in the same run, and memory per image (peak RSS slope between two batch
sizes, each measured in a fresh process). Also prints the preset's forward FLOPs per image and per caption, and
those of `flair-reference` (for docs/gpu_hours.md).

    python bench/bench_training.py [--preset small-pretrained] [--lock-image] [--batch-size 64] [--steps 4]

`--lock-image` freezes both models' vision towers, as the main job does (`train.py --lock-image true`).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from modeling_visionclip import VisionCLIPModel
from towers_visionclip import vision_feature_size
from visionclip.captions import Captioner
from visionclip.factory import build_model
from visionclip.precision import resolve_precision
from visionclip.schema import COLUMN_NAMES, FINDING_COLUMNS

ROOT = Path(__file__).resolve().parents[1]


class FlatPooledVision(nn.Module):
    """VisionTextDualEncoderModel projects `pooler_output` with a Linear and reads `config.hidden_size`; a ResNet's
    pooled output is `(B, C, 1, 1)` and its config has `hidden_sizes` (EfficientNet's `hidden_dim`). This shim only
    flattens and names them."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower
        self.config = tower.config
        self.config.hidden_size = vision_feature_size(tower.config)

    def forward(self, pixel_values, output_attentions=None, output_hidden_states=None, return_dict=None):
        output = self.tower(pixel_values=pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        output.pooler_output = output.pooler_output.flatten(1)
        return output


PRESETS = ("small", "small-pretrained")


def build_pair(preset: str = "small"):
    from transformers import VisionTextDualEncoderModel

    ours, processor = build_model(preset)
    text = type(ours.text_model)(ours.config.text_config, add_pooling_layer=True)  # the peer projects the pooler
    text.load_state_dict(ours.text_model.state_dict(), strict=False)
    vision = FlatPooledVision(copy.deepcopy(ours.vision_model))
    peer = VisionTextDualEncoderModel(vision_model=vision, text_model=text)
    # the peer can only project the tower's pooled output; VisionCLIP reads the preset's `vision_feature_layers`
    peer.visual_projection = nn.Linear(vision.config.hidden_size, ours.config.projection_dim, bias=False)
    peer.text_projection = nn.Linear(ours.text_embed_dim, ours.config.projection_dim, bias=False)
    return ours, peer, processor


def make_batch(processor, batch_size: int) -> dict[str, torch.Tensor]:
    rng = random.Random(0)
    captioner = Captioner()
    records = []
    for index in range(batch_size):
        record = {name: 0 for name in COLUMN_NAMES}
        record.update(
            file_name=f"{index}.png",
            eyes_side=rng.choice(["left", "right"]),
            is_fundus=1,
            is_macular_readable=1,
            is_optic_disc_readable=1,
            is_retinal_region_readable=1,
            dr_grade=rng.choice([0, 0, 1, 2, 3]),
            **{rng.choice(FINDING_COLUMNS): 1},
        )
        records.append(record)
    tokens = processor.tokenizer([captioner(r) for r in records], padding=True, truncation=True, return_tensors="pt")
    size = processor.image_processor.size["height"]
    return {**tokens, "pixel_values": torch.randn(batch_size, 3, size, size)}


def training_step(model, optimizer, batch, bf16: bool) -> None:
    if isinstance(model, VisionCLIPModel):
        # what train.py feeds these presets on a CPU (channels-last, see visionclip.training.loop)
        batch = {**batch, "pixel_values": batch["pixel_values"].contiguous(memory_format=torch.channels_last)}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch, return_loss=True).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def lock_vision(model) -> None:
    """LiT, as `train.py --lock-image true` runs it: the vision tower frozen, its batch norms in eval mode."""
    model.vision_model.requires_grad_(False)


def images_per_second(model, batch, steps: int, bf16: bool) -> float:
    model.train()
    if not any(p.requires_grad for p in model.vision_model.parameters()):
        model.vision_model.eval()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    training_step(model, optimizer, batch, bf16)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        training_step(model, optimizer, batch, bf16)
        times.append(time.perf_counter() - start)
    return len(batch["pixel_values"]) / statistics.median(times)


def convolution_backward_flops(grad_out_shape, x_shape, w_shape, *args, **kwargs) -> int:
    """A convolution's backward: each gradient it computes (input, weight) costs what the forward did. torch's own
    formula ignores `groups` and counts a depthwise convolution's backward as if it were dense (40x EfficientNet's
    forward); for groups=1 it gives the same number as this one."""
    transposed, output_mask = args[4], args[7]
    return conv_flop_count(x_shape, w_shape, grad_out_shape, transposed) * (int(output_mask[0]) + int(output_mask[1]))


def step_flops(model, batch) -> int:
    """FLOPs of one forward + backward (the optimizer step is negligible)."""
    corrected = {torch.ops.aten.convolution_backward: convolution_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=corrected) as counter:
        model(**batch, return_loss=True).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def peak_rss_mib(which: str, batch_size: int, preset: str, lock_image: bool = False) -> float:
    """Peak resident memory of a fresh process that runs two training steps."""
    code = f"import bench_training; bench_training.child({which!r}, {batch_size}, {preset!r}, {lock_image!r})"  # `-c`: from cwd
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT / "bench")
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]


def child(which: str, batch_size: int, preset: str = "small", lock_image: bool = False) -> None:
    ours, peer, processor = build_pair(preset)
    model = ours if which == "ours" else peer
    if lock_image:
        lock_vision(model)
    batch = make_batch(processor, batch_size)
    images_per_second(model, batch, 1, bf16=False)
    print(json.dumps({"peak_mib": high_water_mib()}))


def high_water_mib() -> float:
    """This process's peak resident memory. Not `ru_maxrss`: Linux carries it over from the parent across
    fork + exec, so a child started by a large parent reports the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def forward_flops(model: VisionCLIPModel, image_size: int, caption_tokens: int) -> tuple[int, int]:
    """Forward FLOPs per image and per caption of `caption_tokens` tokens."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as image:
        model.encode_image(torch.randn(1, 3, image_size, image_size))
    with torch.no_grad(), FlopCounterMode(display=False) as text:
        model.encode_text(torch.randint(5, 300, (1, caption_tokens)))
    return image.get_total_flops(), text.get_total_flops()


def flair_reference_flops() -> tuple[int, int]:
    """Forward FLOPs per image (512 px) and per caption (64 tokens) of the flair-reference preset."""
    return forward_flops(build_model("flair-reference")[0], 512, 64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, default="small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--lock-image", action="store_true", help="freeze both vision towers (the main job's LiT)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    ours, peer, processor = build_pair(args.preset)
    if args.lock_image:
        lock_vision(ours)
        lock_vision(peer)
    batch = make_batch(processor, args.batch_size)
    flops = step_flops(ours, batch)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(
        f"{args.preset} preset{' with the vision tower locked' if args.lock_image else ''}, batch {args.batch_size}, {batch['pixel_values'].shape[-1]} px, captions of {batch['input_ids'].shape[1]} tokens, "
        f"{torch.get_num_threads()} threads; {flops / args.batch_size / 1e9:.2f} GFLOPs per image per step; "
        f"matmul peak {peaks['fp32'] / 1e9:.0f} GFLOP/s fp32, {peaks['bf16'] / 1e9:.0f} GFLOP/s bf16"
    )
    print(f"train.py's {resolve_precision('auto', 'cpu').summary()}")
    print("| precision | VisionCLIP img/s | VisionTextDualEncoderModel img/s | ratio | VisionCLIP MFU |")
    print("|---|---|---|---|---|")
    for precision in ("fp32", "bf16"):
        bf16 = precision == "bf16"
        ours_rate = images_per_second(ours, batch, args.steps, bf16)
        peer_rate = images_per_second(peer, batch, args.steps, bf16)
        mfu = ours_rate * flops / args.batch_size / peaks[precision]
        print(f"| {precision} | {ours_rate:.1f} | {peer_rate:.1f} | {ours_rate / peer_rate:.2f}x | {mfu:.0%} |")
    for which in ("ours", "peer"):
        small, large = (peak_rss_mib(which, size, args.preset, args.lock_image) for size in (16, 64))
        print(
            f"memory per image ({which}, fp32 training): {(large - small) / 48:.1f} MiB "
            f"(peak RSS {small:.0f} MiB at batch 16, {large:.0f} MiB at batch 64)"
        )
    size, tokens = batch["pixel_values"].shape[-1], batch["input_ids"].shape[1]
    image_flops, text_flops = forward_flops(copy.deepcopy(ours), size, tokens)
    print(
        f"{args.preset} forward FLOPs: {image_flops / 1e9:.2f} G per {size} px image, "
        f"{text_flops / 1e9:.2f} G per {tokens}-token caption"
    )
    image_flops, text_flops = flair_reference_flops()
    print(
        f"flair-reference forward FLOPs: {image_flops / 1e9:.1f} G per 512 px image, "
        f"{text_flops / 1e9:.1f} G per 64-token caption"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
