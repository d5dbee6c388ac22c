"""What each lesion class looks like at the dermal-epidermal junction (DEJ).

The three renderers follow the RCM criteria in shared/DOMAIN.md:

- benign naevus: regular honeycomb epidermis, edged papillae (dark, rimmed by a
  bright ring of monomorphic basal cells), meshwork between them, dense
  compact round junctional nests;
- melanoma: disarranged epidermis with broken outlines, large bright roundish
  and dendritic pagetoid cells, non-edged irregular papillae, atypical cells at
  the junction, nucleated cells inside papillae, loose sheet-like nests;
- basal cell carcinoma: polarised elongated nuclei, tumour islands (bright, or
  dark silhouettes) with peripheral palisading and a dark cleft, bright
  dendritic cells inside islands, dilated convoluted vessels in a fibrous
  stroma.

Output is "reflectance" in roughly [0, 1]; the class-independent acquisition
model (generator.py) later remaps intensities and adds fields, vignetting and
noise, so classes differ in shape, not in global statistics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rcm_viewer.synthetic.cells import CellPopulation, render_cells
from rcm_viewer.synthetic.noise import BlobField, Worley, fbm, hash_uniform, smoothstep, value_noise

LESION_CLASSES: tuple[str, ...] = ("melanoma", "bcc", "naevus")
CLASS_DISPLAY_NAMES = {
    "melanoma": "Melanoma",
    "bcc": "Basal cell carcinoma",
    "naevus": "Benign naevus",
}

# Noise layer ids: one per independent random field.
(
    L_DEPTH,
    L_FIBRE,
    L_EPI,
    L_BREAK,
    L_WARPX,
    L_WARPY,
    L_PAP,
    L_BASAL,
    L_NEST,
    L_NESTCELL,
    L_PAPFILL,
    L_PAGETOID,
    L_ATYPICAL,
    L_PAPCELL,
    L_DOTS,
    L_POLAR,
    L_POLMASK,
    L_ISLAND,
    L_ISLCELL,
    L_VESSEL,
    L_VESMASK,
    L_RBC,
    L_DENDRITIC,
    L_BLOTCH,
) = range(1, 25)


def draw_params(lesion_class: str, rng: np.random.Generator) -> dict[str, Any]:
    """Per-mosaic morphology parameters: each mosaic of a class looks a bit different."""
    u = rng.uniform
    common: dict[str, Any] = {
        "epi_threshold": u(0.45, 0.62),
        "depth_scale_um": u(350.0, 700.0),
        "fibre_angle": u(0.0, np.pi),
        "cell_um": u(9.5, 13.0),
        "outline_um": u(1.1, 1.8),
    }
    if lesion_class == "naevus":
        common.update(
            papilla_spacing_um=u(95.0, 130.0),
            papilla_radius=(0.24, u(0.40, 0.46)),
            rim_um=u(7.0, 11.0),
            nest_spacing_um=u(150.0, 210.0),
            nest_presence=u(0.45, 0.7),
        )
    elif lesion_class == "melanoma":
        common.update(
            papilla_spacing_um=u(105.0, 150.0),
            papilla_radius=(0.2, u(0.38, 0.44)),
            papilla_presence=u(0.4, 0.65),
            nest_spacing_um=u(230.0, 330.0),
            nest_presence=u(0.35, 0.6),
            pagetoid_spacing_um=u(45.0, 70.0),
            pagetoid_presence=u(0.35, 0.6),
            atypical_presence=u(0.4, 0.65),
            warp_um=u(10.0, 18.0),
        )
    elif lesion_class == "bcc":
        common.update(
            polar_angle=u(0.0, np.pi),
            polar_long_um=u(14.0, 20.0),
            polar_short_um=u(5.0, 7.0),
            island_spacing_um=u(320.0, 450.0),
            island_presence=u(0.7, 0.9),
            bright_island_fraction=u(0.5, 0.8),
            cleft_um=u(5.0, 12.0),
            vessel_spacing_um=u(130.0, 200.0),
            vessel_width_um=u(12.0, 24.0),
        )
        common["epi_threshold"] = u(0.55, 0.7)
    else:
        raise ValueError(f"unknown lesion class {lesion_class!r}")
    return {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in common.items()}


def _lerp(a: np.ndarray, b: np.ndarray | float, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * t


def _screen(base: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Add bright cells without exceeding 1 ("screen" blend)."""
    return 1.0 - (1.0 - base) * (1.0 - layer)


def _honeycomb(x, y, cell_um, outline_um, seed, layer, jitter):
    cells = Worley(x / cell_um, y / cell_um, seed, layer, jitter=jitter)
    border_um = (cells.f2 - cells.f1) * cell_um
    outline = np.exp(-((border_um / outline_um) ** 2))
    nucleus = np.exp(-((cells.f1 / 0.28) ** 2))
    return cells, outline, nucleus


def _cobblestone(x, y, cell_um, seed, layer, jitter=0.5):
    cells = Worley(x / cell_um, y / cell_um, seed, layer, jitter=jitter)
    body = np.clip(1.0 - cells.f1 / 0.58, 0.0, 1.0)
    return body * (0.55 + 0.45 * cells.cell_value), cells


def _fibres(x, y, angle, seed):
    c, s = np.cos(angle), np.sin(angle)
    u = x * c + y * s
    v = -x * s + y * c
    n = value_noise(u / 45.0, v / 5.0, seed, L_FIBRE)
    ridge = 1.0 - np.abs(2.0 * n - 1.0)
    return ridge**3


def render_tissue(
    lesion_class: str,
    params: dict[str, Any],
    seed: int,
    x0_um: float,
    y0_um: float,
    shape: tuple[int, int],
    pixel_um: float,
) -> np.ndarray:
    """Render the lesion's reflectance over a region (float32, ~[0, 1])."""
    h, w = shape
    x = (x0_um + np.arange(w, dtype=np.float64) * pixel_um)[None, :]
    y = (y0_um + np.arange(h, dtype=np.float64) * pixel_um)[:, None]
    p = params
    ds = p["depth_scale_um"]
    depth = fbm(x / ds, y / ds, seed, L_DEPTH, octaves=3)
    epi_w = smoothstep(p["epi_threshold"] - 0.05, p["epi_threshold"] + 0.05, depth)
    fibres = _fibres(x, y, p["fibre_angle"], seed)
    dermis = 0.12 + 0.22 * fibres
    fine = value_noise(x / 4.0, y / 4.0, seed, L_PAPFILL)

    def cells(pop: CellPopulation, layer: int) -> np.ndarray:
        return render_cells(shape, x0_um, y0_um, pixel_um, seed, layer, pop)

    if lesion_class == "naevus":
        hc, outline, nucleus = _honeycomb(x, y, p["cell_um"], p["outline_um"], seed, L_EPI, 0.8)
        epi = 0.2 + 0.06 * hc.cell_value + 0.5 * outline - 0.08 * nucleus
        s = p["papilla_spacing_um"]
        pap = BlobField(
            x / s,
            y / s,
            seed,
            L_PAP,
            presence=0.92,
            r_min=p["papilla_radius"][0],
            r_max=p["papilla_radius"][1],
            lobulation=0.06,
        )
        cob, _ = _cobblestone(x, y, 7.0, seed, L_BASAL)
        radius_um = pap.radius * s
        inside = 1.0 - smoothstep(0.92, 1.0, pap.rho)
        rim_end = 1.0 + p["rim_um"] / radius_um
        rim = smoothstep(0.95, 1.02, pap.rho) * (
            1.0 - smoothstep(rim_end - 0.05, rim_end + 0.05, pap.rho)
        )
        interior = 0.05 + 0.05 * fine + 0.08 * fibres
        dej = 0.26 + 0.3 * cob
        dej = _lerp(dej, 0.4 + 0.6 * cob, rim)
        dej = _lerp(dej, interior, inside)
        ns = p["nest_spacing_um"]
        nest = BlobField(
            x / ns,
            y / ns,
            seed,
            L_NEST,
            presence=p["nest_presence"],
            r_min=0.1,
            r_max=0.18,
            lobulation=0.05,
        )
        nest_cells, _ = _cobblestone(x, y, 6.0, seed, L_NESTCELL, jitter=0.35)
        nest_mask = (1.0 - smoothstep(0.9, 1.0, nest.rho)) * smoothstep(1.0, 1.2, pap.rho)
        dej = _lerp(dej, 0.5 + 0.5 * nest_cells, nest_mask)
        tissue = _lerp(dej, epi, epi_w)
        dots = cells(CellPopulation(120.0, 0.35, (1.8, 3.0), (0.7, 0.95)), L_DOTS)
        tissue = _screen(tissue, dots)

    elif lesion_class == "melanoma":
        wu = p["warp_um"]
        wx = x + wu * 2.0 * (fbm(x / 40.0, y / 40.0, seed, L_WARPX, 2) - 0.5)
        wy = y + wu * 2.0 * (fbm(x / 40.0, y / 40.0, seed, L_WARPY, 2) - 0.5)
        hc, outline, nucleus = _honeycomb(
            wx, wy, p["cell_um"], p["outline_um"] * 1.3, seed, L_EPI, 1.0
        )
        broken = smoothstep(0.3, 0.65, fbm(x / 28.0, y / 28.0, seed, L_BREAK, 2))
        blotch = fbm(x / 70.0, y / 70.0, seed, L_BLOTCH, 2)
        epi = 0.16 + 0.16 * hc.cell_value + 0.38 * outline * broken + 0.16 * (blotch - 0.5)
        s = p["papilla_spacing_um"]
        pap = BlobField(
            x / s,
            y / s,
            seed,
            L_PAP,
            presence=p["papilla_presence"],
            r_min=p["papilla_radius"][0],
            r_max=p["papilla_radius"][1],
            lobulation=0.3,
        )
        cob, basal = _cobblestone(wx, wy, 8.5, seed, L_BASAL, jitter=1.0)
        inside = 1.0 - smoothstep(0.9, 1.0, pap.rho)
        interior = 0.06 + 0.05 * fine + 0.08 * fibres
        dej = 0.2 + 0.28 * cob * basal.cell_value + 0.1 * (blotch - 0.5)
        dej = _lerp(dej, interior, inside)  # non-edged: no bright rim
        ns = p["nest_spacing_um"]
        nest = BlobField(
            x / ns,
            y / ns,
            seed,
            L_NEST,
            presence=p["nest_presence"],
            r_min=0.2,
            r_max=0.4,
            lobulation=0.38,
        )
        loose, loose_cells = _cobblestone(x, y, 7.5, seed, L_NESTCELL, jitter=1.0)
        loose = loose * (loose_cells.cell_value > 0.4)
        nest_mask = 1.0 - smoothstep(0.85, 1.0, nest.rho)
        dej = _lerp(dej, 0.18 + 0.7 * loose, nest_mask)
        tissue = _lerp(dej, epi, epi_w)
        atypical = cells(
            CellPopulation(
                28.0,
                p["atypical_presence"],
                (5.0, 10.0),
                (0.5, 1.0),
                dendritic_fraction=0.15,
                branch_length_um=(10.0, 25.0),
                nucleus_fraction=0.4,
                irregularity=0.12,
            ),
            L_ATYPICAL,
        )
        tissue = _screen(tissue, atypical * (1.0 - epi_w) * (1.0 - inside))
        in_papilla = cells(CellPopulation(32.0, 0.55, (3.5, 6.0), (0.5, 0.9)), L_PAPCELL)
        tissue = _screen(tissue, in_papilla * inside * (1.0 - epi_w))
        pagetoid = cells(
            CellPopulation(
                p["pagetoid_spacing_um"],
                p["pagetoid_presence"],
                (6.0, 12.0),
                (0.75, 1.0),
                dendritic_fraction=0.35,
                branch_length_um=(15.0, 40.0),
                nucleus_fraction=0.3,
                irregularity=0.08,
            ),
            L_PAGETOID,
        )
        tissue = _screen(tissue, pagetoid * (0.45 + 0.55 * epi_w))

    elif lesion_class == "bcc":
        hc, outline, nucleus = _honeycomb(x, y, p["cell_um"], p["outline_um"], seed, L_EPI, 0.6)
        honey = 0.2 + 0.08 * hc.cell_value + 0.45 * outline - 0.08 * nucleus
        a = p["polar_angle"]
        u_ax = x * np.cos(a) + y * np.sin(a)
        v_ax = -x * np.sin(a) + y * np.cos(a)
        polar = Worley(
            u_ax / p["polar_long_um"], v_ax / p["polar_short_um"], seed, L_POLAR, jitter=0.6
        )
        elongated = np.clip(1.0 - polar.f1 / 0.55, 0.0, 1.0) * (0.6 + 0.4 * polar.cell_value)
        polar_mask = smoothstep(0.35, 0.55, fbm(x / 250.0, y / 250.0, seed, L_POLMASK, 2))
        epi = _lerp(honey, 0.16 + 0.55 * elongated, polar_mask)
        # dilated, convoluted vessels in the stroma
        vs = p["vessel_spacing_um"]
        vx = x + 25.0 * 2.0 * (fbm(x / 90.0, y / 90.0, seed, L_WARPX, 2) - 0.5)
        vy = y + 25.0 * 2.0 * (fbm(x / 90.0, y / 90.0, seed, L_WARPY, 2) - 0.5)
        vessels = Worley(vx / vs, vy / vs, seed, L_VESSEL, jitter=1.0)
        edge_um = (vessels.f2 - vessels.f1) * vs * 0.5
        half = p["vessel_width_um"] * 0.5
        lumen = 1.0 - smoothstep(half - 2.0, half, edge_um)
        wall = np.exp(-(((edge_um - half) / 2.0) ** 2))
        v_mask = smoothstep(0.45, 0.6, fbm(x / 400.0, y / 400.0, seed, L_VESMASK, 2))
        rbc = hash_uniform(seed, L_RBC, np.floor(x / 3.0), np.floor(y / 3.0)) > 0.88
        stroma = _lerp(dermis, 0.05 + 0.35 * rbc, lumen * v_mask) + 0.25 * wall * v_mask
        background = _lerp(stroma, epi, epi_w)
        # tumour islands
        s = p["island_spacing_um"]
        isl = BlobField(
            x / s,
            y / s,
            seed,
            L_ISLAND,
            presence=p["island_presence"],
            r_min=0.25,
            r_max=0.42,
            lobulation=0.3,
        )
        radius_um = isl.radius * s
        inside = 1.0 - smoothstep(0.97, 1.0, isl.rho)
        bright_island = (isl.value < p["bright_island_fraction"]).astype(np.float32)
        itex, _ = _cobblestone(x, y, 6.0, seed, L_ISLCELL, jitter=0.3)
        interior = bright_island * (0.38 + 0.3 * itex) + (1 - bright_island) * (0.06 + 0.07 * itex)
        annulus = smoothstep(1.0 - 16.0 / radius_um, 1.0 - 11.0 / radius_um, isl.rho) * inside
        spokes = np.round(2 * np.pi * radius_um / 6.0)
        bars = smoothstep(0.2, 0.8, np.cos(spokes * isl.theta))
        island = interior + 0.45 * annulus * bars
        tissue = _lerp(background, island, inside)
        cleft_end = 1.0 + p["cleft_um"] / radius_um
        cleft = smoothstep(0.97, 1.0, isl.rho) * (
            1.0 - smoothstep(cleft_end - 0.02, cleft_end, isl.rho)
        )
        tissue = _lerp(tissue, 0.02, cleft)
        dendritic = cells(
            CellPopulation(
                60.0,
                0.45,
                (3.0, 5.0),
                (0.7, 1.0),
                dendritic_fraction=0.9,
                branch_length_um=(15.0, 35.0),
            ),
            L_DENDRITIC,
        )
        core = 1.0 - smoothstep(0.75, 0.9, isl.rho)
        tissue = _screen(tissue, dendritic * core * bright_island)
    else:
        raise ValueError(f"unknown lesion class {lesion_class!r}")
    return np.clip(tissue, 0.0, 1.0).astype(np.float32)
