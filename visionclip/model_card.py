"""Rendering the model card (`model_card.md`, a Jinja template) with huggingface_hub's `ModelCard`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .paths import REPO_ROOT

TEMPLATE = REPO_ROOT / "model_card.md"
TAGS = ["retina", "fundus", "ophthalmology", "clip", "medical", "synthetic-data", "custom_code"]
SYNFUNDUS_LICENSE = "cc-by-nc-sa-4.0"
PROJECT_LICENSE = "apache-2.0"


def training_license(dataset: str | None) -> tuple[str, str]:
    """The model's licence and why: the embedded generator's images are the project's own; anything else is
    treated as SynFundus-1M, whose CC BY-NC-SA 4.0 terms bind models trained on it."""
    if dataset is None:
        return PROJECT_LICENSE, (
            "Trained only on images from this project's procedural generator, which are the project's own work, so "
            f"the model carries the project's licence ({PROJECT_LICENSE})."
        )
    return SYNFUNDUS_LICENSE, (
        f"Trained on `{dataset}` (SynFundus-1M or data derived from it), licensed CC BY-NC-SA 4.0 for research "
        "use only; the model is released under the same terms and must not be used outside research."
    )


def synthetic_eval_results(
    model_name: str, results: Mapping[str, Mapping[str, Any]], dataset_name: str
) -> list[EvalResult]:
    """`model-index` entries for the held-out synthetic AUROCs (measurable findings only)."""
    return [
        EvalResult(
            task_type="zero-shot-image-classification",
            dataset_type="synthetic",
            dataset_name=dataset_name,
            dataset_split="validation",
            metric_type="roc_auc",
            metric_name=f"AUROC {finding}",
            metric_value=round(float(result["auroc"]), 4),
        )
        for finding, result in results.items()
        if result.get("auroc") is not None
    ]


def evaluation_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["| finding | zero-shot AUROC | positives | negatives |", "|---|---|---|---|"]
    for finding, result in results.items():
        auroc = "too rare to measure" if result["auroc"] is None else f"{result['auroc']:.3f}"
        lines.append(f"| {finding} | {auroc} | {result['positives']} | {result['negatives']} |")
    return "\n".join(lines)


def render_model_card(
    *,
    model_name: str,
    model_path: str,
    example_image: str,
    model_config: Any,
    image_size: int,
    training_config: Mapping[str, Any],
    training_summary: str,
    evaluation: str,
    eval_results: list[EvalResult],
    dataset: str | None,
    base_models: list[str] | None = None,
    widget: list[dict[str, Any]] | None = None,
) -> ModelCard:
    """The model card as a `ModelCard` (metadata + body)."""
    license_id, license_reason = training_license(dataset)
    card_data = ModelCardData(
        license=license_id,
        library_name="transformers",
        pipeline_tag="zero-shot-image-classification",
        tags=TAGS,
        datasets=[dataset] if dataset and "/" in dataset and not Path(dataset).exists() else None,
        metrics=["roc_auc", "accuracy", "f1", "cohen_kappa"],
        base_model=base_models or None,
        widget=widget,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    data_text = (
        "The project's procedural generator (privacy-safe synthetic colour fundus photographs in the SynFundus-1M "
        "label schema, exact labels, no patient data)."
        if dataset is None
        else f"`{dataset}` (SynFundus-1M schema: eleven disease and four readability labels)."
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        model_path=model_path,
        example_image=example_image,
        vision_tower=model_config.vision_config.model_type,
        text_tower=model_config.text_config.model_type,
        projection_dim=model_config.projection_dim,
        image_size=image_size,
        loss=training_config.get("loss", "label_aware"),
        training_data=f"{data_text}\n\nLicence: {license_reason}",
        training_config=yaml.safe_dump(dict(training_config), sort_keys=False).strip(),
        training_summary=training_summary,
        evaluation=evaluation,
    )
