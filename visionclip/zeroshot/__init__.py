"""Zero-shot and few-shot evaluation of VisionCLIP models on external datasets (used by `eval_zeroshot.py`)."""
