import numpy as np

from visionclip.synthetic.geometry import QUADRANTS, sample_geometry


def test_disc_is_nasal_and_fovea_is_temporal():
    rng = np.random.default_rng(0)
    for _ in range(50):
        right = sample_geometry(rng, 512, "right")
        left = sample_geometry(rng, 512, "left")
        assert right.disc[0] > right.fovea[0]  # right eye: disc on the viewer's right
        assert left.disc[0] < left.fovea[0]
        for geom in (right, left):
            distance = np.hypot(geom.disc[0] - geom.fovea[0], geom.disc[1] - geom.fovea[1]) / geom.dd
            assert 2.2 < distance < 2.9
            assert geom.disc[1] < geom.fovea[1]  # the disc sits a little above the fovea
            assert geom.inside(*geom.disc) and geom.inside(*geom.fovea)


def test_landmarks_out_of_field():
    rng = np.random.default_rng(1)
    for eye in ("left", "right"):
        no_disc = sample_geometry(rng, 256, eye, disc_in_field=False)
        assert not no_disc.inside(*no_disc.disc)
        assert no_disc.inside(*no_disc.fovea)
        no_macula = sample_geometry(rng, 256, eye, macula_in_field=False)
        assert not no_macula.inside(*no_macula.fovea) and no_macula.inside(*no_macula.disc)


def test_quadrants_split_at_the_fovea():
    geom = sample_geometry(np.random.default_rng(2), 512, "right")
    fx, fy = geom.fovea
    step = 20
    assert QUADRANTS[geom.quadrant(fx - step, fy - step)] == "superotemporal"
    assert QUADRANTS[geom.quadrant(fx - step, fy + step)] == "inferotemporal"
    assert QUADRANTS[geom.quadrant(fx + step, fy - step)] == "superonasal"
    assert QUADRANTS[geom.quadrant(fx + step, fy + step)] == "inferonasal"


def test_sampled_points_respect_constraints():
    geom = sample_geometry(np.random.default_rng(3), 256, "left")
    rng = np.random.default_rng(4)
    points = geom.sample_points(rng, 50, quadrant=1, around=geom.fovea, max_distance=3 * geom.dd, margin=5)
    assert len(points) == 50
    assert geom.inside(points[:, 0], points[:, 1], 5).all()
    assert (geom.quadrant(points[:, 0], points[:, 1]) == 1).all()
    assert (np.hypot(points[:, 0] - geom.fovea[0], points[:, 1] - geom.fovea[1]) <= 3 * geom.dd + 1e-3).all()
