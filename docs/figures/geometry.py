"""Draw docs/figures/geometry.png: the cone-beam geometry and sign conventions of ``microct.geometry``.

Run from the repository root, in an environment with microct and matplotlib (``pip install -e '.[preview]'``)::

    python docs/figures/geometry.py

It writes ``geometry.png`` beside this script and prints its path. The output depends only on this script,
``microct.geometry`` and the matplotlib version (no date, no version stamp in the file), so running it again
in the same environment rewrites the same bytes.

Left: the lab frame seen from above (+z towards the reader): focal spot, rotation axis, detector, SOD and
SDD, the centre-of-rotation offset (along +x, measured at the axis), the detector's u offset, the sense of
a positive angle for ``rotation_direction = +1``. Right: the detector seen from the source (looking along
+y): u along +x, v along −z, pixel (0, 0) top left, both detector offsets, and where the rotation axis falls
on the detector (at M × the centre-of-rotation offset). Offsets are exaggerated to be visible; everything
else is drawn to scale from the ``Geometry`` below.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Arc, Circle, FancyArrowPatch, Polygon, Rectangle

from microct.geometry import Geometry

OUTPUT = Path(__file__).with_name("geometry.png")
SIZE_IN = (13.0, 6.6)
DPI = 110

GEOMETRY = Geometry(source_object_distance_mm=75.0, source_detector_distance_mm=150.0,
                    detector_offset_u_mm=26.0, detector_offset_v_mm=8.0, centre_of_rotation_offset_mm=7.0,
                    rotation_direction=1)
"""The drawn set-up (mm): M = 2; offsets exaggerated."""
DETECTOR_WIDTH_MM = 76.0  # u extent
DETECTOR_HEIGHT_MM = 64.0  # v extent
SAMPLE_RADIUS_MM = 9.0

BEAM = "#f2c94c"
AXIS = "#c0392b"
DETECTOR = "#2c3e50"
DIMENSION = "#555555"
OFFSET = "#2471a3"


def arrow(ax, start, end, color=DIMENSION, style="-|>", width=1.2, both=False, **kwargs) -> None:
    """An arrow (or, with ``both``, a dimension line with two heads) from ``start`` to ``end``."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="<|-|>" if both else style, mutation_scale=12,
                                 color=color, linewidth=width, shrinkA=0, shrinkB=0, **kwargs))


def out_of_page(ax, centre, radius, color, into=False) -> None:
    """⊙ (towards the reader) or ⊗ (``into``: away from the reader) at ``centre``."""
    ax.add_patch(Circle(centre, radius, fill=False, color=color, linewidth=1.4, zorder=5))
    x, y = centre
    if into:
        d = radius * math.sqrt(0.5)
        ax.plot([x - d, x + d], [y - d, y + d], color=color, linewidth=1.4, zorder=5)
        ax.plot([x - d, x + d], [y + d, y - d], color=color, linewidth=1.4, zorder=5)
    else:
        ax.add_patch(Circle(centre, radius * 0.28, color=color, zorder=5))


def frame_glyph(ax, origin, length, right_label, up_label, normal_label, normal_into) -> None:
    """Three lab axes: one along the page's right, one up, the third through the page."""
    x, y = origin
    arrow(ax, (x, y), (x + length, y), color="black")
    arrow(ax, (x, y), (x, y + length), color="black")
    ax.text(x + length + 1.5, y, right_label, fontsize=11, va="center", style="italic")
    ax.text(x, y + length + 2.5, up_label, fontsize=11, ha="center", style="italic")
    out_of_page(ax, (x, y), 1.8, "black", into=normal_into)
    ax.text(x + 2.5, y - 2.5, normal_label, fontsize=11, ha="left", va="top", style="italic")


def top_view(ax, g: Geometry) -> None:
    """The lab frame from above: page right = +x, page up = +y (the beam), +z towards the reader."""
    sod, sdd = g.source_object_distance_mm, g.source_detector_distance_mm
    source = (0.0, -sod)
    plane_y = sdd - sod  # the detector plane, y = SDD − SOD
    centre_u = g.detector_offset_u_mm
    left, right = centre_u - DETECTOR_WIDTH_MM / 2, centre_u + DETECTOR_WIDTH_MM / 2
    axis = (g.centre_of_rotation_offset_mm, 0.0)

    ax.add_patch(Polygon([source, (left, plane_y), (right, plane_y)], closed=True, color=BEAM, alpha=0.35,
                         linewidth=0))
    ax.plot([0, 0], [-sod, plane_y], color="#b7950b", linestyle=(0, (6, 4)), linewidth=1.2)
    ax.text(-1.5, plane_y - 30, "central ray\n(x = 0, along +y)", color="#7d6608", fontsize=9, ha="right")

    ax.plot(*source, marker="*", markersize=17, color="#e67e22", zorder=6)
    ax.text(3.5, -sod, "focal spot (0, −SOD, 0)", fontsize=10, va="center")

    ax.add_patch(Circle(axis, SAMPLE_RADIUS_MM, color="#aed6f1", alpha=0.8, zorder=3))
    ax.plot([axis[0], axis[0] + SAMPLE_RADIUS_MM], [0, 0], color="#1b4f72", linewidth=1.0, zorder=4)
    ax.text(axis[0] + SAMPLE_RADIUS_MM + 1.5, 0.0, "sample at angle 0\n(sample frame = lab frame)",
            fontsize=8.5, color="#1b4f72", va="center")
    out_of_page(ax, axis, 1.9, AXIS)
    ax.text(axis[0] - 12.0, 12.5, "rotation axis\n(+z, towards you)", color=AXIS, fontsize=9.5, ha="right")
    sense = g.rotation_direction  # +1: counter-clockwise seen from above
    ax.add_patch(Arc(axis, 2 * (SAMPLE_RADIUS_MM + 4), 2 * (SAMPLE_RADIUS_MM + 4), theta1=200, theta2=330,
                     color=AXIS, linewidth=1.6, zorder=4))
    tip_angle = math.radians(330 if sense > 0 else 200)
    r = SAMPLE_RADIUS_MM + 4
    tip = (axis[0] + r * math.cos(tip_angle), r * math.sin(tip_angle))
    back = math.radians(320 if sense > 0 else 210)
    arrow(ax, (axis[0] + r * math.cos(back), r * math.sin(back)), tip, color=AXIS, width=1.6)
    ax.text(axis[0] + 15.0, -10.0, "positive angle with\nrotation_direction = +1:\ncounter-clockwise\n"
            "seen from above\n(−1: clockwise)", color=AXIS, fontsize=9, va="top")

    # centre-of-rotation offset, measured at the axis
    arrow(ax, (0, -25.0), (axis[0], -25.0), color=OFFSET, both=True)
    ax.plot([axis[0], axis[0]], [-25.0, -2.0], color=OFFSET, linewidth=0.8, linestyle=":")
    ax.text(-3.0, -27.0, "centre_of_rotation_offset_mm\n(along +x, measured\nat the axis)", color=OFFSET,
            fontsize=9, ha="right", va="center")

    # the detector, its u axis and u offset
    ax.plot([left, right], [plane_y, plane_y], color=DETECTOR, linewidth=5, solid_capstyle="butt", zorder=4)
    ax.text(right + 2.0, plane_y, "detector\ny = SDD − SOD", color=DETECTOR, fontsize=10, va="center")
    ax.plot([centre_u, centre_u], [plane_y - 3, plane_y + 3], color=DETECTOR, linewidth=1.5, zorder=5)
    arrow(ax, (0, plane_y + 9.0), (centre_u, plane_y + 9.0), color=OFFSET, both=True)
    ax.plot([0, 0], [plane_y, plane_y + 10.0], color=OFFSET, linewidth=0.8, linestyle=":")
    ax.text(centre_u / 2, plane_y + 11.5, "detector_offset_u_mm (+u)", color=OFFSET, fontsize=9, ha="center")
    arrow(ax, (20.0, plane_y - 7.0), (44.0, plane_y - 7.0), color=DETECTOR, width=1.6)
    ax.text(32.0, plane_y - 10.0, "u (columns) = +x", color=DETECTOR, fontsize=9.5, ha="center", va="top")
    # where the rotation axis falls on the detector: at M × the offset
    on_detector = g.magnification * g.centre_of_rotation_offset_mm
    ax.plot([source[0], on_detector], [source[1], plane_y], color=AXIS, linewidth=0.8, linestyle=(0, (2, 3)))

    # distances
    for x_at, top, label in ((-58.0, 0.0, "SOD"), (-70.0, plane_y, "SDD")):
        arrow(ax, (x_at, -sod), (x_at, top), both=True)
        ax.plot([x_at - 2, 1.5 if top == 0.0 else left], [top, top], color=DIMENSION, linewidth=0.6,
                linestyle=":")
        ax.text(x_at + 1.2, (top - sod) / 2, label, fontsize=11, rotation=90, va="center", ha="left")
    ax.plot([-72.0, -1.5], [-sod, -sod], color=DIMENSION, linewidth=0.6, linestyle=":")
    ax.text(-76.0, plane_y + 19.0, f"M = SDD / SOD = {g.magnification:g}\nvoxel = pixel pitch / M", fontsize=10,
            ha="left", va="top", bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": DIMENSION})

    frame_glyph(ax, (66.0, -62.0), 11.0, "x", "y", "z (up)", normal_into=False)
    ax.set_title("Lab frame seen from above (+z towards you)", fontsize=12)
    ax.set_xlim(-78, 98)
    ax.set_ylim(-sod - 7, plane_y + 22)


def detector_view(ax, g: Geometry) -> None:
    """The detector from the source, looking along +y: page right = +x (u), page up = +z (v runs down)."""
    cu, cz = g.detector_offset_u_mm, -g.detector_offset_v_mm  # the centre moves along +u and +v (= −z)
    left, top = cu - DETECTOR_WIDTH_MM / 2, cz + DETECTOR_HEIGHT_MM / 2
    ax.add_patch(Rectangle((left, top - DETECTOR_HEIGHT_MM), DETECTOR_WIDTH_MM, DETECTOR_HEIGHT_MM,
                           facecolor="#eaf2f8", edgecolor=DETECTOR, linewidth=2.5))
    pixel = 4.0
    ax.add_patch(Rectangle((left, top - pixel), pixel, pixel, facecolor=DETECTOR))
    ax.text(left + pixel + 1.0, top - pixel / 2, "pixel (0, 0)", fontsize=9.5, va="center", color=DETECTOR)
    arrow(ax, (left + 2, top + 4.0), (left + 30, top + 4.0), color=DETECTOR, width=1.6)
    ax.text(left + 31.5, top + 4.0, "u: columns increase along +x", fontsize=9.5, va="center", color=DETECTOR)
    arrow(ax, (left - 4.0, top - 2), (left - 4.0, top - 30), color=DETECTOR, width=1.6)
    ax.text(left - 5.5, top - 16, "v: rows increase\nalong −z", fontsize=9.5, va="center", ha="right",
            color=DETECTOR)

    out_of_page(ax, (0.0, 0.0), 2.0, "#b7950b", into=True)
    ax.plot([-2.0, -19.0], [-1.4, -14.0], color="#b7950b", linewidth=0.8)
    ax.text(-20.0, -14.0, "central ray\n(+y, away from you)", fontsize=9, color="#7d6608", ha="right", va="center")
    ax.plot(cu, cz, marker="+", markersize=12, markeredgewidth=2, color=OFFSET)
    arrow(ax, (0, 0), (cu, 0), color=OFFSET)
    arrow(ax, (cu, 0), (cu, cz), color=OFFSET)
    ax.text(cu / 2, 3.0, "detector_offset_u_mm (+u)", color=OFFSET, fontsize=9, ha="center", va="bottom",
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "#eaf2f8", "edgecolor": "none"}, zorder=6)
    ax.text(cu + 1.5, cz / 2 + 1.0, "detector_offset_v_mm\n(+v)", color=OFFSET, fontsize=9, va="center")
    ax.text(cu + 1.5, cz - 3.5, "detector centre", color=OFFSET, fontsize=9, va="top")

    on_detector = g.magnification * g.centre_of_rotation_offset_mm
    ax.plot([on_detector, on_detector], [top - DETECTOR_HEIGHT_MM - 6, top + 10], color=AXIS, linewidth=1.2,
            linestyle=(0, (8, 3, 2, 3)))
    ax.text(on_detector + 1.5, top - DETECTOR_HEIGHT_MM - 5, "the rotation axis on the detector:\n"
            "x = M × centre_of_rotation_offset_mm", color=AXIS, fontsize=9, va="center")

    frame_glyph(ax, (-56.0, -44.0), 11.0, "x", "z", "y", normal_into=True)
    ax.set_title("Detector seen from the source (looking along +y)", fontsize=12)
    ax.set_xlim(-62, 82)
    ax.set_ylim(-54, 36)


def draw(path: Path = OUTPUT, g: Geometry = GEOMETRY) -> Path:
    fig = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without pyplot: no display needed
    top, front = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1.0]})
    for ax in (top, front):
        ax.set_aspect("equal")
        ax.axis("off")
    top_view(top, g)
    detector_view(front, g)
    fig.suptitle("microct.geometry: lab frame (mm, right-handed), rotation axis = z (up); "
                 "offsets exaggerated", fontsize=12)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


if __name__ == "__main__":
    print(draw())
