"""Model and dataset cards, rendered from Jinja templates with huggingface_hub's `ModelCard` / `DatasetCard`."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from .explain.options import OVERLAY_METHOD, OVERLAY_UPSCALE
from .resources import DATASET_CARD_TEMPLATE, MODEL_CARD_TEMPLATE, data_path
from .schema import COLUMNS, LABEL_COLUMNS
from .zeroshot.report import markdown_table, model_index

TAGS = ["retina", "fundus", "ophthalmology", "clip", "medical", "synthetic-data", "custom_code"]
SYNFUNDUS_LICENSE = "cc-by-nc-sa-4.0"
PROJECT_LICENSE = "apache-2.0"
TARGET_AUROC = 0.9  # the project's bar for a finding learnt from the synthetic data
BELOW_TARGET_REASONS = (
    "The held-out images come from the same generator with exact labels, so a finding below the bar is one the "
    "model has not learnt to see well enough, not a labelling problem. In the project's measurements on the "
    "`small` CPU demo model, the weakest findings were those whose signs are smallest at the input size "
    "(arteriolar narrowing and AV nicking, microaneurysms, the macular hole, a serous blister) or shared with other "
    "findings (cotton-wool spots and haemorrhages occur in DR, hypertension and vein occlusion); a "
    "logistic-regression probe on its image embeddings also stayed below the bar for most of them, so the image "
    "features, more than the prompts, were the limit of its short, compute-bound CPU run. The repository's "
    "`docs/generator.md` gives the AUROC a supervised CNN reaches on each label as a reference."
)
# the card of a `train.py --objective supervised` model
UNTRAINED_TEXT_NOTE = (
    "Supervised-pretraining baseline (`train.py --objective supervised`): only the image tower and its projection "
    "were trained, on the synthetic labels through a linear head. The text tower, its projection and the "
    "temperature are the preset's, untrained: zero-shot classification with prompts is meaningless for this model. "
    "Use its image embeddings (few-shot, cross-validated linear probe, `finetune.py`)."
)


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
    lines = [
        f"| finding | zero-shot AUROC | reaches {TARGET_AUROC} | positives | negatives |",
        "|---|---|---|---|---|",
    ]
    for finding, result in results.items():
        if result["auroc"] is None:
            auroc, reached = "too rare to measure", "–"
        else:
            auroc, reached = f"{result['auroc']:.3f}", "yes" if result["auroc"] >= TARGET_AUROC else "no"
        lines.append(f"| {finding} | {auroc} | {reached} | {result['positives']} | {result['negatives']} |")
    return "\n".join(lines)


def below_target(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Measurable findings whose held-out AUROC is below `TARGET_AUROC`, weakest first."""
    measured = [(r["auroc"], finding) for finding, r in results.items() if r.get("auroc") is not None]
    return [finding for auroc, finding in sorted(measured) if auroc < TARGET_AUROC]


def below_target_note(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One paragraph: how many measurable findings reach the target and why the others may not."""
    measurable = sum(r.get("auroc") is not None for r in results.values())
    below = below_target(results)
    if not below:
        return f"Every measurable finding ({measurable}) reaches AUROC {TARGET_AUROC}."
    listed = ", ".join(f"{finding} ({results[finding]['auroc']:.3f})" for finding in below)
    return (
        f"{measurable - len(below)} of {measurable} measurable findings reach AUROC {TARGET_AUROC}; below it: "
        f"{listed}. {BELOW_TARGET_REASONS}"
    )


RESULTS_FILE = "eval_results.json"  # {"training_summary", "held_out_synthetic", "real_datasets"} in a model folder
WIDGET_LABELS = "glaucoma, diabetic retinopathy, a normal fundus"


def _read(path: Path, loader) -> Any:
    return loader(path.read_text(encoding="utf-8")) if path.is_file() else None


def render_model_card(folder: str | Path, model_path: str, repo_id: str | None = None) -> ModelCard:
    """The card of a saved model folder, from what the folder holds: config, processor settings, the training
    configuration, evaluation results (held-out synthetic and, once `eval_zeroshot.py` ran, real datasets) and the
    example images. With `repo_id`, the widget shows the examples from the Hub repository."""
    folder = Path(folder)
    config = _read(folder / "config.json", json.loads)
    processor = _read(folder / "processor_config.json", json.loads) or {}
    training = _read(folder / "training_config.yaml", yaml.safe_load) or {}
    results = _read(folder / RESULTS_FILE, json.loads) or {}
    if config is None:
        raise FileNotFoundError(f"{folder}: no config.json; not a saved model folder")
    examples = sorted((folder / "examples").glob("*.png"))
    model_name = f"VisionCLIP ({training.get('preset', 'custom')})"
    synthetic = results.get("held_out_synthetic") or {}
    real = results.get("real_datasets") or []
    supervised = training.get("objective") == "supervised"  # its held-out figures are a head's, not zero-shot
    eval_results = (
        [] if supervised else synthetic_eval_results(model_name, synthetic, "VisionCLIP synthetic held-out split")
    )
    eval_results += [EvalResult(**entry) for entry in model_index(real, real[0]["model"])] if real else []
    evaluation = []
    if real:
        evaluation.append(
            "Real external photographs (`eval_zeroshot.py`; 95% bootstrap confidence intervals in "
            "brackets; other rows, where present, are the models it was compared with, and the random-init row is the "
            "same architecture untrained):\n\n" + markdown_table(real)
        )
    if supervised:
        evaluation.insert(0, f"**Text side untrained.** {UNTRAINED_TEXT_NOTE}")
        if synthetic:
            evaluation.append(
                "AUROC per finding of the supervised head (not zero-shot) on the held-out synthetic split:\n\n"
                + evaluation_table(synthetic).replace("zero-shot AUROC", "head AUROC")
            )
    elif synthetic:
        evaluation.append(
            "Zero-shot AUROC per finding on the held-out synthetic split (prompt ensembles from the "
            "knowledge base, finding vs its denial):\n\n"
            + evaluation_table(synthetic)
            + "\n\n"
            + below_target_note(synthetic)
        )
    widget = (
        [
            {
                "src": f"https://huggingface.co/{repo_id}/resolve/main/examples/{path.name}",
                "candidate_labels": WIDGET_LABELS,
                "example_title": f"Synthetic example ({path.stem.replace('_', ' ')})",
            }
            for path in examples
        ]
        if repo_id and not supervised  # prompts mean nothing to an untrained text side
        else None
    )
    dataset = training.get("dataset")
    license_id, license_reason = training_license(dataset)
    towers = [training.get("vision_tower"), training.get("text_tower")]
    card_data = ModelCardData(
        license=license_id,
        library_name="transformers",
        pipeline_tag="image-feature-extraction" if supervised else "zero-shot-image-classification",
        tags=TAGS,
        datasets=[dataset] if dataset and dataset.count("/") == 1 and not Path(dataset).exists() else None,
        metrics=["roc_auc", "accuracy", "f1", "cohen_kappa"],
        base_model=[t for t in towers if t and t.count("/") == 1 and not Path(t).exists()] or None,  # Hub ids
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
        template_path=str(data_path(MODEL_CARD_TEMPLATE)),
        model_name=model_name,
        model_path=model_path,
        example_image=f"examples/{examples[0].name}" if examples else "examples/fundus.png",
        explain_usage=explain_usage(folder),
        vision_tower=_vision_tower_words(config),
        text_tower=config["text_config"]["model_type"],
        projection_dim=config["projection_dim"],
        image_size=processor.get("image_processor", {}).get("size", {}).get("height", "?"),
        loss=training.get("loss", "label_aware"),
        training_data=f"{data_text}\n\nLicence: {license_reason}",
        training_config=yaml.safe_dump(training, sort_keys=False).strip() or "(not recorded)",
        training_summary=results.get("training_summary", ""),
        evaluation="\n\n".join(evaluation) or "Not evaluated yet: run `eval_zeroshot.py`.",
    )


def explain_usage(folder: Path) -> str:
    """The card's lines that call `explain`, as the folder's own remote code takes them: with the overlays' method
    and grid where its `explain` has `upscale`, without the grid where it predates that, none without `explain`."""
    parameters = _explain_parameters(folder / "explaining_visionclip.py")
    if parameters is None:
        return ""
    options = f', method="{OVERLAY_METHOD}"' + (f", upscale={OVERLAY_UPSCALE}" if "upscale" in parameters else "")
    return (
        f'\nexplained = model.explain([image], processor, task="glaucoma"{options})  # where the model looks\n'
        "print(explained.heatmaps[0].shape)  # (classes, height, width) in the photograph's own pixels"
    )


def _explain_parameters(code_file: Path) -> list[str] | None:
    """The parameter names of `explain` in a saved remote-code file, or None where it has none."""
    if not code_file.is_file():
        return None
    for node in ast.walk(ast.parse(code_file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and node.name == "explain":
            return [argument.arg for argument in node.args.args + node.args.kwonlyargs]
    return None


def label_statistics(counts: Mapping[str, int]) -> dict[str, str]:
    """`{"is_gc=1": 40, ...}` -> `{"is_gc": "0: 960, 1: 40", ...}` in schema order."""
    table: dict[str, dict[int, int]] = {}
    for key, count in counts.items():
        column, _, value = key.partition("=")
        table.setdefault(column, {})[int(value)] = count
    return {c: ", ".join(f"{v}: {n}" for v, n in sorted(table[c].items())) for c in LABEL_COLUMNS if c in table}


def render_dataset_card(
    *,
    repo_id: str,
    num_rows: int,
    num_converted: int,
    num_rejected: int,
    num_shards: int,
    rows_per_shard: int,
    counts: Mapping[str, int],
    extra_columns: list[str],
) -> DatasetCard:
    """The card of a converted SynFundus-1M copy: gated, CC BY-NC-SA 4.0, schema and per-label statistics."""
    card_data = DatasetCardData(
        license=SYNFUNDUS_LICENSE,
        pretty_name="SynFundus-1M (parquet)",
        task_categories=["image-classification", "zero-shot-image-classification"],
        tags=["retina", "fundus", "ophthalmology", "synthetic-data", "medical"],
        size_categories=[
            "1M<n<10M"
            if num_converted >= 1_000_000
            else "100K<n<1M"
            if num_converted >= 100_000
            else "10K<n<100K"
            if num_converted >= 10_000
            else "n<10K"
        ],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        extra_gated_prompt="SynFundus-1M is for research use only (CC BY-NC-SA 4.0). Access requires the authors' "
        "approval.",
    )
    return DatasetCard.from_template(
        card_data,
        template_path=str(data_path(DATASET_CARD_TEMPLATE)),
        pretty_name="SynFundus-1M (parquet)",
        description="Over one million synthetic colour fundus photographs generated by a diffusion model trained on "
        "1.3 million private real photographs (Shang et al., 2023), with eleven disease and four readability labels, "
        "converted to sharded parquet for streaming with `datasets`.",
        repo_id=repo_id,
        num_shards=num_shards,
        rows_per_shard=rows_per_shard,
        columns=COLUMNS,
        extra_columns=", ".join(f"`{c}`" for c in extra_columns),
        num_rows=num_rows,
        num_converted=num_converted,
        num_rejected=num_rejected,
        statistics=label_statistics(counts),
    )


def _vision_tower_words(config: dict[str, Any]) -> str:
    """The vision tower's type, and which of its hidden states make the image features when the config chooses."""
    kind = config["vision_config"]["model_type"]
    layers = config.get("vision_feature_layers")
    if not layers:
        return kind
    return f"{kind} (image features: the averaged hidden states {layers}, concatenated)"
