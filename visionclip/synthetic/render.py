"""Painting one synthetic photograph from a label plan, layer by layer, deepest first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .anatomy import paint_background, paint_disc, paint_macula, sample_disc
from .camera import CameraSettings, sample_camera
from .canvas import Canvas, MaskLog
from .dr_lesions import bead_veins, draw_dme, draw_dr_lesions, draw_preretinal, flush_retinal_lesions
from .exposure import expose
from .geometry import FundusGeometry, sample_geometry
from .grading import DRInventory, plan_dr
from .labels import LabelPlan
from .laser import draw_laser_scars
from .macular import draw_amd, draw_epiretinal_membrane, draw_macular_hole, draw_serous_detachment
from .nonfundus import render_non_fundus
from .optic import (
    atrophic_disc,
    draw_glaucoma_extras,
    draw_myopic_changes,
    draw_tessellation,
    glaucomatous_disc,
    log_pale_disc,
)
from .vascular import draw_hypertensive_lesions, draw_rvo_haemorrhages, hypertensive_vessels, occlude_vein
from .vessels import draw_vessels, layout_vessels

# A quadrant needs this share of the image inside the field to receive quadrant-specific lesions.
MIN_QUADRANT_AREA = 0.04


@dataclass
class Rendering:
    """A painted photograph and what went into it."""

    image: Image.Image
    geometry: FundusGeometry
    camera: CameraSettings
    inventory: DRInventory
    log: MaskLog


@dataclass(frozen=True)
class Streams:
    """Independent random streams for one image, so changing one painter does not reshuffle the others."""

    geometry: np.random.Generator
    anatomy: np.random.Generator
    lesions: np.random.Generator
    camera: np.random.Generator


def _laser_pattern(plan: LabelPlan, rng: np.random.Generator) -> str:
    options = []
    if plan.dr_grade >= 3:
        options.append("panretinal")
    if plan.findings["is_dme"]:
        options.append("focal")
    if plan.findings["is_rvo"]:
        options.append("sector")
    return str(rng.choice(options)) if options else "panretinal"


def render(plan: LabelPlan, size: int, streams: Streams) -> Rendering:
    """Paint the photograph described by ``plan`` at ``size`` x ``size`` pixels."""
    geom = sample_geometry(
        streams.geometry, size, plan.eye, disc_in_field=plan.disc_in_field, macula_in_field=plan.macula_in_field
    )
    settings = sample_camera(streams.camera, plan.degradation)
    if not plan.is_fundus:
        image = render_non_fundus(geom, streams.camera, settings)
        return Rendering(image, geom, settings, DRInventory(), MaskLog(size))
    anatomy, lesions = streams.anatomy, streams.lesions
    found = plan.findings
    canvas = Canvas(size)
    paint_background(canvas, geom, anatomy)
    if found["is_tessellated"]:
        strength = lesions.uniform(0.6, 0.85) if found["is_pm"] else lesions.uniform(0.4, 0.8)
        draw_tessellation(canvas, geom, lesions, strength)
    paint_macula(canvas, geom, anatomy)
    # Deep (choroid / RPE / outer retina) findings, under the vessels.
    if found["is_amd"]:
        draw_amd(canvas, geom, lesions)
    if found["is_crp"]:
        draw_serous_detachment(canvas, geom, lesions)
    if found["is_mh"]:
        draw_macular_hole(canvas, geom, lesions)
    central_occlusion = bool(found["is_rvo"] and lesions.random() < 0.3)
    superior_occlusion = bool(lesions.random() < 0.5)
    if found["is_treated"]:
        draw_laser_scars(canvas, geom, lesions, _laser_pattern(plan, lesions), superior=superior_occlusion)
    disc = sample_disc(anatomy)
    if found["is_gc"]:
        glaucomatous_disc(disc, lesions)
    if found["is_aon"]:
        atrophic_disc(disc, lesions)
    if central_occlusion:
        disc.swelling = 1.0
    x0, y0, cup = paint_disc(canvas, geom, anatomy, disc)
    if found["is_gc"]:
        draw_glaucoma_extras(canvas, geom, lesions, x0, y0, cup)
    if found["is_aon"]:
        log_pale_disc(canvas, geom)
    if found["is_pm"]:
        draw_myopic_changes(canvas, geom, lesions)
    # The vessel tree, edited by the vascular findings before it is drawn.
    layout = layout_vessels(geom, anatomy)
    visible = geom.quadrant_visible(margin=3.0) >= MIN_QUADRANT_AREA
    dr_plan = plan_dr(lesions, plan.dr_grade, visible, disc_visible=plan.disc_in_field)
    beaded = bead_veins(layout, dr_plan.venous_beading, lesions, canvas)
    nicks = hypertensive_vessels(layout, canvas, lesions) if found["is_htr"] else 0
    occlusion = (
        occlude_vein(layout, canvas, lesions, central_occlusion, superior_occlusion) if found["is_rvo"] else None
    )
    if found["is_aon"]:
        layout.width_scale *= 0.85
    draw_vessels(canvas, layout)
    # Inner retinal lesions, over the vessels.
    dme_exudates = draw_dme(canvas, geom, lesions) if found["is_dme"] else 0
    inventory, preretinal = draw_dr_lesions(canvas, geom, layout, lesions, dr_plan, beaded)
    inventory.hard_exudates += dme_exudates
    if occlusion is not None:
        draw_rvo_haemorrhages(canvas, layout, lesions, occlusion)
    if found["is_htr"]:
        draw_hypertensive_lesions(canvas, geom, lesions, nicks)
    flush_retinal_lesions(canvas)
    # In front of the retina.
    if preretinal is not None:
        draw_preretinal(canvas, preretinal)
    if found["is_em"]:
        draw_epiretinal_membrane(canvas, geom, lesions)
    image = expose(canvas, geom, settings, streams.camera)
    return Rendering(image, geom, settings, inventory, canvas.log)
