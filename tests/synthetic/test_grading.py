import numpy as np
import pytest

from visionclip.synthetic import DRInventory, FundusGenerator, dr_grade_from_inventory
from visionclip.synthetic.grading import DRPlan, plan_dr

from .conftest import only


def inventory_of(plan: DRPlan) -> DRInventory:
    return DRInventory(
        microaneurysms=list(plan.microaneurysms),
        haemorrhages=list(plan.haemorrhages),
        hard_exudates=plan.hard_exudates,
        cotton_wool_spots=plan.cotton_wool_spots,
        venous_beading=list(plan.venous_beading),
        irma=list(plan.irma),
        new_vessels_disc=plan.new_vessels_disc,
        new_vessels_elsewhere=plan.new_vessels_elsewhere,
        preretinal_haemorrhage=plan.preretinal_haemorrhage,
    )


@pytest.mark.parametrize(
    ("inventory", "grade"),
    [
        (DRInventory(), 0),
        (DRInventory(microaneurysms=[3, 0, 0, 1]), 1),
        (DRInventory(microaneurysms=[3, 0, 0, 1], haemorrhages=[1, 0, 0, 0]), 2),
        (DRInventory(hard_exudates=4), 2),
        (DRInventory(cotton_wool_spots=1), 2),
        (DRInventory(venous_beading=[True, False, False, False]), 2),
        (DRInventory(haemorrhages=[20, 20, 20, 20]), 2),  # "more than 20" in each quadrant is needed
        (DRInventory(haemorrhages=[21, 21, 21, 0]), 2),
        (DRInventory(haemorrhages=[21, 21, 21, 21]), 3),
        (DRInventory(venous_beading=[True, False, True, False]), 3),
        (DRInventory(irma=[False, False, False, True]), 3),
        (DRInventory(new_vessels_disc=True), 4),
        (DRInventory(new_vessels_elsewhere=True), 4),
        (DRInventory(preretinal_haemorrhage=True, microaneurysms=[1, 0, 0, 0]), 4),
    ],
)
def test_icdr_rules(inventory, grade):
    assert dr_grade_from_inventory(inventory) == grade


@pytest.mark.parametrize("grade", range(5))
def test_plans_satisfy_exactly_their_grade(grade):
    rng = np.random.default_rng(grade)
    for visible in ([True] * 4, [True, True, False, True], [False, False, True, True]):
        for _ in range(50):
            plan = plan_dr(rng, grade, np.array(visible), disc_visible=visible[0])
            assert dr_grade_from_inventory(inventory_of(plan)) == grade
            assert not any(count for q, count in enumerate(plan.haemorrhages) if not visible[q])


def test_plan_rejects_bad_grade():
    with pytest.raises(ValueError):
        plan_dr(np.random.default_rng(0), 5, np.ones(4, bool))


@pytest.mark.parametrize("grade", range(1, 5))
def test_drawn_inventory_gives_the_target_grade(grade, small_size):
    generator = FundusGenerator(small_size, prevalence=only(**{f"dr_grade_{grade}": 1.0}), seed=11, encode_png=False)
    for index in range(12):
        sample = generator.sample(index)
        assert sample.plan.dr_grade == grade
        assert dr_grade_from_inventory(sample.inventory) == grade == sample.record["dr_grade"]


def test_default_mix_grades_match_inventory(small_size):
    generator = FundusGenerator(small_size, seed=5, encode_png=False)
    for index in range(80):
        sample = generator.sample(index)
        assert sample.record["dr_grade"] == dr_grade_from_inventory(sample.inventory) == sample.plan.dr_grade
