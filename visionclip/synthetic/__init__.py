"""Procedural synthetic colour fundus photographs with labels in the SynFundus-1M schema.

>>> from visionclip.synthetic import FundusGenerator
>>> sample = FundusGenerator(image_size=256, seed=0).sample(0)
>>> sample.image.size, sample.record["dr_grade"] in range(5)
((256, 256), True)
"""

from .generator import MASK_KEYS, FundusGenerator, SyntheticFundus, encode_png
from .grading import DRInventory, dr_grade_from_inventory
from .labels import DEFAULT_PREVALENCE, LabelPlan, resolve_prevalence

__all__ = [
    "DEFAULT_PREVALENCE",
    "DRInventory",
    "FundusGenerator",
    "LabelPlan",
    "MASK_KEYS",
    "SyntheticFundus",
    "dr_grade_from_inventory",
    "encode_png",
    "resolve_prevalence",
]
