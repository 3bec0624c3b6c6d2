"""Fine-tuning VisionCLIP into an image classifier on a small labelled set (`finetune.py`)."""
