"""VisionCLIP's Hugging Face Space: zero-shot classification of a colour fundus photograph, with where the model
looks. The page only wires `fundus_demo` (the logic, testable without a browser) to Gradio components.

    python space/app.py                                # the main job's model, runs/visionclip/model
    python space/app.py --model your-name/visionclip   # or a folder; also $VISIONCLIP_MODEL
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gradio as gr
from fundus_demo import DemoError, FundusDemo, model_source

EXAMPLES = Path(__file__).resolve().parent / "examples"
DEFAULT_TASK = "diagnosis"  # healthy / diabetic retinopathy / glaucoma
EXAMPLE_TASKS = {"glaucoma": "glaucoma", "diabetic_retinopathy": "dr_grading", "normal": "normal_vs_abnormal"}
INTRO = """# VisionCLIP: zero-shot reading of colour fundus photographs
Upload a colour fundus photograph (or pick a synthetic example), choose a recommended task or type your own class
names, and see the class probabilities, the field of view the model cropped, and where it looks for a class.
**Research use only: not a medical device, not for diagnosis.** The model was trained on synthetic images only.
"""


def example_rows(tasks: list[str]) -> list[list[str]]:
    """`[photo, task]` for each bundled synthetic example whose task the model knows."""
    rows = []
    for path in sorted(EXAMPLES.glob("*.jpg")):
        task = EXAMPLE_TASKS.get(path.stem)
        rows.append([str(path), task if task in tasks else tasks[0]])
    return rows


def build_app(demo: FundusDemo) -> gr.Blocks:
    def classify(photo, task, class_names):
        try:
            analysis = demo.analyse(photo, task, class_names)
        except DemoError as error:
            raise gr.Error(str(error)) from None
        choices = gr.Dropdown(choices=list(analysis.overlays), value=analysis.top_class)
        top = analysis.overlays[analysis.top_class]
        return analysis.probabilities, choices, top, analysis.crop, analysis.summary, analysis.overlays

    def show_heatmap(name, overlays):
        return overlays.get(name) if overlays else None

    with gr.Blocks(title="VisionCLIP fundus demo") as app:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                photo = gr.File(label="Fundus photograph", type="filepath", elem_id="photo")
                default = DEFAULT_TASK if DEFAULT_TASK in demo.tasks else demo.tasks[0]
                task = gr.Dropdown(demo.tasks, value=default, label="Recommended task", elem_id="task")
                class_names = gr.Textbox(
                    label="Or your own class names, comma-separated (used instead of the task)",
                    placeholder="cataract, a normal fundus",
                    elem_id="class-names",
                )
                run = gr.Button("Classify and explain", variant="primary", elem_id="run")
                gr.Examples(example_rows(demo.tasks), inputs=[photo, task], label="Synthetic examples")
                gr.Markdown(f"Model: `{demo.source}`")
            with gr.Column():
                probabilities = gr.Label(label="Class probabilities", elem_id="probabilities")
                summary = gr.Markdown(elem_id="summary")
                heatmap_class = gr.Dropdown(label="Heatmap for class", elem_id="heatmap-class")
                gr.Markdown(
                    "**Where the model looks** (the chosen class's class-activation map, `cam`, over the field of view)"
                )
                heatmap = gr.Image(show_label=False, type="pil", format="png", elem_id="heatmap")
                gr.Markdown("**The field-of-view crop the model used**")
                crop = gr.Image(show_label=False, type="pil", elem_id="crop")
        overlays = gr.State({})
        run.click(
            classify,
            inputs=[photo, task, class_names],
            outputs=[probabilities, heatmap_class, heatmap, crop, summary, overlays],
            api_name="classify",
        )
        heatmap_class.input(show_heatmap, inputs=[heatmap_class, overlays], outputs=heatmap, api_name=False)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or Hub id (default: $VISIONCLIP_MODEL, else the main job's)")
    parser.add_argument("--host", help="address to listen on (default: Gradio's, $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: Gradio's, $GRADIO_SERVER_PORT or 7860)")
    args = parser.parse_args(argv)
    try:
        source = model_source(args.model)
    except DemoError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    build_app(FundusDemo.load(source)).launch(server_name=args.host, server_port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
