import numpy as np

from visionclip.synthetic.geometry import sample_geometry
from visionclip.synthetic.vessels import CANONICAL_FOVEA, FOVEAL_AVASCULAR_RADIUS, grow_tree, layout_vessels


def test_trees_are_deterministic_and_have_both_kinds():
    a, b = grow_tree(3), grow_tree.__wrapped__(3)
    assert np.array_equal(a.centre, b.centre) and np.array_equal(a.crossings, b.crossings)
    assert a.is_vein.any() and (~a.is_vein).any()
    assert len(a.crossings) > 0  # arteries cross veins somewhere (needed for AV nicking)


def test_veins_are_wider_than_arteries_and_spare_the_fovea():
    tree = grow_tree(5)
    trunks = tree.depth == 0
    starts = tree.start[:-1]
    vein_width = tree.half_width[starts[trunks & tree.is_vein]].max()
    artery_width = tree.half_width[starts[trunks & ~tree.is_vein]].max()
    assert vein_width > artery_width
    to_fovea = np.linalg.norm(tree.centre - CANONICAL_FOVEA, axis=1)
    assert to_fovea.min() >= FOVEAL_AVASCULAR_RADIUS - 0.1


def test_layout_puts_trunks_on_the_disc():
    geom = sample_geometry(np.random.default_rng(0), 256, "right")
    layout = layout_vessels(geom, np.random.default_rng(1))
    first_points = layout.centres()[layout.tree.start[:-1][layout.tree.depth == 0]]
    assert (np.hypot(first_points[:, 0] - geom.disc[0], first_points[:, 1] - geom.disc[1]) < geom.dd).all()
