from __future__ import annotations

import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional as F

from visionclip.losses import ClipLoss, LabelAwareLoss, SigLipLoss, build_loss


def embeddings(n: int = 6, dim: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(n, dim, generator=generator), dim=-1)
    texts = F.normalize(torch.randn(n, dim, generator=generator), dim=-1)
    return images, texts


def test_clip_loss_matches_direct_formula():
    images, texts = embeddings()
    scale = torch.tensor(7.0)
    loss = ClipLoss()(images, texts, scale)
    n = len(images)
    total = 0.0
    for i in range(n):
        row = [math.exp(scale * images[i] @ texts[j]) for j in range(n)]
        col = [math.exp(scale * images[j] @ texts[i]) for j in range(n)]
        total += -math.log(row[i] / sum(row)) - math.log(col[i] / sum(col))
    assert loss.item() == pytest.approx(total / (2 * n), rel=1e-5)


def test_exact_label_aware_loss_matches_direct_formula_and_reduces_to_clip():
    images, texts = embeddings()
    scale = torch.tensor(5.0)
    distinct = torch.arange(6)[:, None]
    torch.testing.assert_close(
        LabelAwareLoss("exact")(images, texts, scale, distinct), ClipLoss()(images, texts, scale)
    )
    labels = torch.tensor([[0, 1], [0, 1], [2, 0], [0, 1], [2, 0], [3, 3]])
    loss = LabelAwareLoss("exact")(images, texts, scale, labels)
    n = len(images)
    total = 0.0
    for i in range(n):
        positives = [j for j in range(n) if torch.equal(labels[i], labels[j])]
        logits_row = [float(scale * images[i] @ texts[j]) for j in range(n)]
        logits_col = [float(scale * images[j] @ texts[i]) for j in range(n)]
        log_z_row = math.log(sum(math.exp(v) for v in logits_row))
        log_z_col = math.log(sum(math.exp(v) for v in logits_col))
        total += -sum(logits_row[j] - log_z_row for j in positives) / len(positives)
        total += -sum(logits_col[j] - log_z_col for j in positives) / len(positives)
    assert loss.item() == pytest.approx(total / (2 * n), rel=1e-5)


def test_siglip_loss_matches_direct_formula():
    images, texts = embeddings()
    siglip = SigLipLoss(bias_init=-2.0)
    scale = torch.tensor(10.0)
    loss = siglip(images, texts, scale)
    n = len(images)
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            logit = scale * images[i] @ texts[j] - 2.0
            total += math.log(1 + math.exp(-z * logit))
    assert loss.item() == pytest.approx(total / n, rel=1e-5)
    loss.backward()
    assert siglip.logit_bias.grad is not None


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="Unknown loss 'infonce'.*clip"):
        build_loss("infonce")


def record_labels(n: int = 8) -> torch.Tensor:
    """Label rows in `LABEL_VECTOR_COLUMNS` order: readable images with DR grade i % 3, glaucoma on every 4th and no
    haze grade (as SynFundus-1M rows)."""
    return torch.stack([record(dr_grade=i % 3, is_gc=int(i % 4 == 0)) for i in range(n)])


def _rank_worker(rank: int, world: int, init_file: str, name: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    images, texts = embeddings(n=8, seed=3)
    labels = record_labels()
    per_rank = 8 // world
    local = slice(rank * per_rank, (rank + 1) * per_rank)
    local_images = images[local].clone().requires_grad_(True)
    local_texts = texts[local].clone().requires_grad_(True)
    loss = build_loss(name)(local_images, local_texts, torch.tensor(6.0), labels[local])
    loss.backward()
    results[rank] = (loss.item(), local_images.grad.clone(), local_texts.grad.clone())
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ["clip", "label_aware", "siglip"])
def test_two_process_loss_equals_single_process_loss_on_the_combined_batch(name):
    images, texts = embeddings(n=8, seed=3)
    labels = record_labels()
    images.requires_grad_(True)
    texts.requires_grad_(True)
    reference = build_loss(name)(images, texts, torch.tensor(6.0), labels)
    reference.backward()
    with tempfile.TemporaryDirectory() as folder:
        manager = mp.Manager()
        results = manager.dict()
        mp.spawn(_rank_worker, args=(2, os.path.join(folder, "init"), name, results), nprocs=2, join=True)
        for rank in range(2):
            loss, image_grad, text_grad = results[rank]
            assert loss == pytest.approx(reference.item(), rel=1e-6)
            # world_size x the global loss's gradient for its slice: after DDP averages over the 2 processes,
            # parameter gradients equal single-process training on the combined batch
            torch.testing.assert_close(image_grad, 2 * images.grad[rank * 4 : (rank + 1) * 4])
            torch.testing.assert_close(text_grad, 2 * texts.grad[rank * 4 : (rank + 1) * 4])


def record(**values) -> torch.Tensor:
    """One label row in `LABEL_VECTOR_COLUMNS` order: a readable fundus photograph with the given labels and no
    haze grade unless `media_haze` is given."""
    from visionclip.schema import HAZE_COLUMN, LABEL_VECTOR_COLUMNS, MISSING_LABEL

    row = torch.zeros(len(LABEL_VECTOR_COLUMNS), dtype=torch.long)
    row[LABEL_VECTOR_COLUMNS.index(HAZE_COLUMN)] = MISSING_LABEL
    for column in ("is_fundus", "is_macular_readable", "is_optic_disc_readable", "is_retinal_region_readable"):
        row[LABEL_VECTOR_COLUMNS.index(column)] = 1
    for column, value in values.items():
        row[LABEL_VECTOR_COLUMNS.index(column)] = value
    return row


def test_entailment_targets_pair_each_caption_with_every_image_it_is_true_of():
    from visionclip.schema import FACTS

    def claims(asserted=(), denied=()):
        flags = torch.zeros(2 * len(FACTS), dtype=torch.long)
        for fact in asserted:
            flags[FACTS.index(fact)] = 1
        for fact in denied:
            flags[len(FACTS) + FACTS.index(fact)] = 1
        return flags

    labels = torch.stack(
        [record(), record(is_gc=1, is_abnormal=1), record(is_gc=1, is_amd=1, is_abnormal=1), record(dr_grade=2)]
    )
    caption_facts = torch.stack(
        [
            claims(["normal"]),  # "a healthy retina"
            claims(["is_gc"]),  # "glaucoma"
            claims(["is_amd"], denied=["is_gc"]),  # "drusen; no glaucoma": false of its own image
            claims(["dr_grade=2"], denied=["is_gc"]),  # "moderate DR, no glaucoma"
        ]
    )
    weights = LabelAwareLoss("entailment").pair_weights(labels, caption_facts)
    expected = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.float)
    torch.testing.assert_close(weights, expected)
    images, texts = embeddings(n=4)
    loss = LabelAwareLoss("entailment")(images, texts, torch.tensor(5.0), labels, caption_facts)
    logits = 5.0 * images @ texts.t()
    image_to_text = -(expected / expected.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    text_to_image = -(expected.t() / expected.t().sum(1, keepdim=True) * logits.t().log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(loss, (image_to_text + text_to_image) / 2)
    with pytest.raises(ValueError, match="caption_facts"):
        LabelAwareLoss("entailment")(images, texts, torch.tensor(5.0), labels)


def test_label_overlap_targets_are_jaccard_over_findings():
    labels = torch.stack(
        [record(), record(), record(is_gc=1), record(is_gc=1, dr_grade=2), record(dr_grade=2, is_macular_readable=0)]
    )
    targets = LabelAwareLoss("jaccard").targets(labels)
    # raw overlaps: normal-normal 1; glaucoma vs glaucoma+DR2 1/2; DR2 vs DR2+unreadable macula 1/2; else 0
    raw = torch.tensor(
        [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0.5, 0], [0, 0, 0.5, 1, 1 / 3], [0, 0, 0, 1 / 3, 1]]
    )
    torch.testing.assert_close(targets, raw / raw.sum(1, keepdim=True))
    images, texts = embeddings(n=5)
    loss = build_loss("label_aware", "jaccard")(images, texts, torch.tensor(5.0), labels)
    logits = 5.0 * images @ texts.t()
    expected = (
        -(targets * logits.log_softmax(1)).sum(1).mean() - (targets * logits.t().log_softmax(1)).sum(1).mean()
    ) / 2
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="similarity"):
        LabelAwareLoss("cosine")


def hazy(haze: int, **values) -> torch.Tensor:
    """A label row with a media haze grade (-1: the record has none)."""
    return record(media_haze=haze, **values)


def test_exact_targets_tell_haze_grades_apart():
    """Two images that share their findings but not their haze grade get captions that differ ("a hazy image"):
    neither caption is a positive for the other image."""
    labels = torch.stack([hazy(0, is_gc=1), hazy(2, is_gc=1), hazy(-1, is_gc=1), hazy(2, is_gc=1)])
    weights = LabelAwareLoss("exact").pair_weights(labels)
    expected = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.float)
    torch.testing.assert_close(weights, expected)


def test_haze_statements_are_entailed_only_by_images_of_that_grade():
    from visionclip.captions import Captioner
    from visionclip.schema import FACTS, LABEL_VECTOR_COLUMNS

    captioner = Captioner()
    readable = {c: 1 for c in ("is_fundus", "is_macular_readable", "is_optic_disc_readable")}
    base = {c: 0 for c in LABEL_VECTOR_COLUMNS} | readable | {"is_retinal_region_readable": 1, "file_name": "a.png"}
    moderate = captioner.caption_with_facts(dict(base, media_haze=2))[1]
    assert moderate[FACTS.index("media_haze=2")] == 1
    clear_epoch = next(e for e in range(50) if any(p.concept == "clear_media" for p in captioner.parts(dict(base), e)))
    clear = captioner.caption_with_facts(dict(base), clear_epoch)[1]
    assert clear[len(FACTS) + FACTS.index("media_haze=2")] == 1  # "a clear view" denies haze
    labels = torch.stack([hazy(2), hazy(0), hazy(-1), hazy(1)])
    caption_facts = torch.tensor([moderate, clear, clear, moderate])
    weights = LabelAwareLoss("entailment").pair_weights(labels, caption_facts)
    # "moderately hazy" is true of the haze-2 image only; "clear" of the clear image and of the one without a grade
    torch.testing.assert_close(weights[:, 0], torch.tensor([1.0, 0, 0, 0]))
    torch.testing.assert_close(weights[:, 1], torch.tensor([0.0, 1, 1, 0]))
