"""Zero-shot evaluation: one task type and parser (`tasks`), one engine (`engine`), used by `eval_zeroshot.py`
(`runner`, `data`, `probe`, `report`) and by training's held-out evaluation (`heldout`)."""
