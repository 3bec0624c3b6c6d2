"""Diabetic retinopathy: the lesion inventory, the ICDR grade it implies, and lesion plans for a target grade.

ICDR (International Clinical Diabetic Retinopathy scale), as implemented by :func:`dr_grade_from_inventory`:

* 0 - no apparent retinopathy: no DR lesion;
* 1 - mild NPDR: microaneurysms only;
* 2 - moderate NPDR: more than microaneurysms only (haemorrhages, hard exudates, cotton-wool spots, venous
  beading in one quadrant) but less than severe;
* 3 - severe NPDR (4-2-1 rule): more than 20 intraretinal haemorrhages in each of 4 quadrants, or venous beading
  in 2 or more quadrants, or IRMA in 1 or more quadrant; and no sign of PDR;
* 4 - PDR: neovascularisation (at the disc or elsewhere) or pre-retinal / vitreous haemorrhage.

Quadrants are split at the fovea (see :mod:`.geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SEVERE_HAEMORRHAGES_PER_QUADRANT = 20


def _four_ints() -> list[int]:
    return [0, 0, 0, 0]


def _four_flags() -> list[bool]:
    return [False, False, False, False]


@dataclass
class DRInventory:
    """Diabetic lesions counted per quadrant (superotemporal, inferotemporal, superonasal, inferonasal)."""

    microaneurysms: list[int] = field(default_factory=_four_ints)
    haemorrhages: list[int] = field(default_factory=_four_ints)
    hard_exudates: int = 0
    cotton_wool_spots: int = 0
    venous_beading: list[bool] = field(default_factory=_four_flags)
    irma: list[bool] = field(default_factory=_four_flags)
    new_vessels_disc: bool = False
    new_vessels_elsewhere: bool = False
    preretinal_haemorrhage: bool = False

    def is_empty(self) -> bool:
        """No diabetic lesion at all (grade 0)."""
        return dr_grade_from_inventory(self) == 0

    def as_dict(self) -> dict:
        """Plain-Python copy (JSON-serialisable)."""
        return {
            "microaneurysms": list(self.microaneurysms),
            "haemorrhages": list(self.haemorrhages),
            "hard_exudates": self.hard_exudates,
            "cotton_wool_spots": self.cotton_wool_spots,
            "venous_beading": list(self.venous_beading),
            "irma": list(self.irma),
            "new_vessels_disc": self.new_vessels_disc,
            "new_vessels_elsewhere": self.new_vessels_elsewhere,
            "preretinal_haemorrhage": self.preretinal_haemorrhage,
        }


def dr_grade_from_inventory(inventory: DRInventory) -> int:
    """The ICDR grade (0-4) implied by a lesion inventory (see the module docstring)."""
    if inventory.new_vessels_disc or inventory.new_vessels_elsewhere or inventory.preretinal_haemorrhage:
        return 4
    if (
        all(count > SEVERE_HAEMORRHAGES_PER_QUADRANT for count in inventory.haemorrhages)
        or sum(inventory.venous_beading) >= 2
        or any(inventory.irma)
    ):
        return 3
    if (
        sum(inventory.haemorrhages) > 0
        or inventory.hard_exudates > 0
        or inventory.cotton_wool_spots > 0
        or any(inventory.venous_beading)
    ):
        return 2
    if sum(inventory.microaneurysms) > 0:
        return 1
    return 0


@dataclass
class DRPlan(DRInventory):
    """Lesions to draw for a target grade: counts per quadrant and which quadrants get beading/IRMA."""

    grade: int = 0


def _spread(rng: np.random.Generator, total: int, quadrants: list[int], cap: int | None = None) -> list[int]:
    """Split ``total`` lesions over the allowed quadrants at random, at most ``cap`` per quadrant."""
    counts = [0, 0, 0, 0]
    if not quadrants:
        return counts
    weights = rng.dirichlet(np.ones(len(quadrants)) * 1.5)
    for q, n in zip(quadrants, rng.multinomial(total, weights), strict=True):
        counts[q] = int(n if cap is None else min(n, cap))
    return counts


def _moderate_background(rng: np.random.Generator, plan: DRPlan, usable: list[int], heavy: bool) -> None:
    plan.microaneurysms = _spread(rng, int(rng.integers(6, 40 if heavy else 30)), usable)
    plan.haemorrhages = _spread(rng, int(rng.integers(2, 45 if heavy else 30)), usable, cap=15)
    plan.hard_exudates = int(rng.integers(4, 40)) if rng.random() < 0.5 else 0
    plan.cotton_wool_spots = int(rng.integers(1, 5)) if rng.random() < (0.5 if heavy else 0.3) else 0


def plan_dr(rng: np.random.Generator, grade: int, visible_quadrants: np.ndarray, disc_visible: bool = True) -> DRPlan:
    """Lesions satisfying exactly the definition of ``grade``.

    ``visible_quadrants`` (4 bools) says where lesions can be placed; the severe 4-quadrant haemorrhage criterion
    is chosen only when all four are visible, and new vessels at the disc only when the disc is.
    """
    if grade not in range(5):
        raise ValueError(f"dr grade must be 0-4, got {grade}")
    plan = DRPlan(grade=grade)
    usable = [q for q in range(4) if visible_quadrants[q]]
    if grade == 0:
        return plan
    if not usable:
        raise ValueError("no visible quadrant to place diabetic lesions in")
    if grade == 1:
        plan.microaneurysms = _spread(rng, int(rng.integers(1, 16)), usable)
        return plan
    if grade == 2:
        _moderate_background(rng, plan, usable, heavy=False)
        if rng.random() < 0.1:
            plan.venous_beading[int(rng.choice(usable))] = True
        if sum(plan.haemorrhages) == 0 and plan.hard_exudates == 0 and plan.cotton_wool_spots == 0:
            plan.haemorrhages = _spread(rng, int(rng.integers(2, 12)), usable, cap=15)
        return plan
    _moderate_background(rng, plan, usable, heavy=True)
    if grade == 3 or rng.random() < 0.5:
        criteria = []
        while not criteria:
            if len(usable) == 4 and rng.random() < 0.5:
                criteria.append("haemorrhages")
            if len(usable) >= 2 and rng.random() < 0.4:
                criteria.append("beading")
            if rng.random() < 0.5:
                criteria.append("irma")
        if "haemorrhages" in criteria:
            plan.haemorrhages = [int(rng.integers(SEVERE_HAEMORRHAGES_PER_QUADRANT + 1, 30)) for _ in range(4)]
        if "beading" in criteria:
            for q in rng.choice(usable, size=int(rng.integers(2, len(usable) + 1)), replace=False):
                plan.venous_beading[int(q)] = True
        if "irma" in criteria:
            for q in rng.choice(usable, size=int(rng.integers(1, len(usable) + 1)), replace=False):
                plan.irma[int(q)] = True
    if grade == 4:
        while not (plan.new_vessels_disc or plan.new_vessels_elsewhere or plan.preretinal_haemorrhage):
            plan.new_vessels_disc = disc_visible and rng.random() < 0.5
            plan.new_vessels_elsewhere = rng.random() < 0.5
            plan.preretinal_haemorrhage = rng.random() < 0.35
    return plan
