"""Training side of VisionCLIP: configuration, optimisation, checkpoints, evaluation and the loop."""
