"""PNG plots of a simulation report (matplotlib), kept out of ``mtsnn.hw_model`` (numpy only).

Every plot is titled with the report's title (model, target, samples, static convention) and
labels its axes in SI-prefixed units chosen from the data (nJ or uJ, ns or us, kSOP or MSOP),
never in matplotlib's offset notation. What each plot shows is described in
docs/hardware_model.md section 5.

- ``energy_per_layer.png``: dynamic energy per layer (input generators first), stacked by event
  kind, and the static energy as its own bar, so the bars add up to the total.
- ``sops_per_layer.png``: SOPs (synapse reads) per layer, and each layer's firing rate inside its window.
- ``core_utilisation_mesh.png``: the routers in use (the bounding box of the used tiles, however
  large the mesh); each used core is a cell coloured by its neuron utilisation and labelled
  with its layer; unused cores are hatched grey.
- ``latency_breakdown.png``: the sample's latency split into compute, synchronisation and idle
  time, and each layer's busy time (its busiest core, summed over ticks).

A sweep (``mtsnn.sweep``) adds ``pareto_energy.png`` and ``pareto_latency.png``: accuracy
against energy (latency) per sample, one colour per target and static convention, every
bit-exact point labelled with its bits / Smax / T, the Pareto front of each series drawn as a
step line.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mtsnn.hw_model.fileio import atomic_write_bytes
from mtsnn.hw_model.report import si

__all__ = ["write_plots", "scaled_unit", "PLOT_NAMES", "sweep_pareto_plots"]

PLOT_NAMES = ("energy_per_layer.png", "sops_per_layer.png", "core_utilisation_mesh.png", "latency_breakdown.png")
_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"),
             (1e-12, "p"), (1e-15, "f"))
MAX_MESH_CELLS = 4096  # the mesh plot draws at most this many routers (the bounding box of the used ones)


def scaled_unit(values, unit: str) -> tuple[float, str]:
    """(factor, label) so that values / factor are in 1..1000 of an SI-prefixed ``unit``."""
    largest = float(np.max(np.abs(values))) if np.size(values) else 0.0
    for factor, prefix in _PREFIXES:
        if largest >= factor:
            return factor, f"{prefix}{unit}"
    return 1.0, unit


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _energy_plot(plt, report: dict, path: Path) -> Path:
    rows = [("input", report["input"]["energy_breakdown_j"])] + [
        (layer["name"], layer["energy_breakdown_j"]) for layer in report["layers"]]
    names = [name for name, _ in rows] + ["static"]
    kinds = list(rows[0][1])
    totals = [sum(b.values()) for _, b in rows] + [report["total"]["static_energy_j"]]
    factor, unit = scaled_unit(totals, "J")
    fig, ax = plt.subplots(figsize=(10, 4.8))
    bottom = np.zeros(len(names))
    for kind in kinds:
        values = np.array([b[kind] for _, b in rows] + [0.0]) / factor
        ax.bar(names, values, bottom=bottom, label=kind)
        bottom += values
    ax.bar(names, [0.0] * len(rows) + [report["total"]["static_energy_j"] / factor], bottom=bottom, label="static",
           color="0.45", hatch="//")
    ax.set_ylabel(f"energy per sample [{unit}]")
    ax.set_title(f"Energy per layer: {report['title']}\ntotal {si(report['total']['energy_j'], 'J')} = dynamic "
                 f"{si(report['total']['dynamic_energy_j'], 'J')} + static {si(report['total']['static_energy_j'], 'J')}",
                 fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return _save(fig, path)


def _sops_plot(plt, report: dict, path: Path) -> Path:
    layers = report["layers"]
    names = [layer["name"] for layer in layers]
    factor, unit = scaled_unit([layer["sops"] for layer in layers], "SOP")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax1.bar(names, [layer["sops"] / factor for layer in layers], color="tab:blue")
    ax1.set_ylabel(f"synapse reads per sample [{unit}]")
    ax1.set_title("SOPs per layer", fontsize=10)
    hidden = [layer for layer in layers if layer["firing_rate"] is not None]
    ax2.bar([layer["name"] for layer in hidden], [layer["firing_rate"] for layer in hidden], color="tab:green")
    ax2.set_ylabel("spikes per neuron per step (in the window)")
    ax2.set_title("Firing rate per layer", fontsize=10)
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(report["title"], fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _mesh_plot(plt, report: dict, mapping, path: Path) -> Path:
    from matplotlib.patches import Rectangle

    target = mapping.target
    per = target.cores_per_router
    side = int(np.ceil(np.sqrt(per)))  # a router's cores as a side x side block of cells
    used = {core.router for core in mapping.cores}
    xs, ys = [x for x, _ in used], [y for _, y in used]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    while (x1 - x0 + 1) * (y1 - y0 + 1) > MAX_MESH_CELLS:  # bounded however large the mesh
        x1, y1 = max(x0, x1 - 1), max(y0, y1 - 1)
    layer_names = [layer.name for layer in mapping.network.layers]
    cmap = plt.get_cmap("viridis")
    width, height = x1 - x0 + 1, y1 - y0 + 1
    fig, ax = plt.subplots(figsize=(min(14, max(9, 3 + 1.4 * width * side)), min(11, max(5.5, 2.5 + 1.4 * height * side))))
    occupied = {}
    for core in mapping.cores:
        occupied[(core.router, core.core_id % per)] = core
    for rx in range(x0, x1 + 1):
        for ry in range(y0, y1 + 1):
            for slot in range(per):
                cx, cy = rx * side + slot % side, ry * side + slot // side
                core = occupied.get(((rx, ry), slot))
                if core is None:
                    ax.add_patch(Rectangle((cx, cy), 0.95, 0.95, facecolor="0.9", edgecolor="0.7", hatch="xx"))
                    continue
                capacity = target.generators_per_core if core.is_input else target.neurons_per_core
                util = core.n_neurons / capacity
                ax.add_patch(Rectangle((cx, cy), 0.95, 0.95, facecolor=cmap(util), edgecolor="black"))
                label = "in" if core.is_input else f"L{core.layer_index}"
                ax.text(cx + 0.47, cy + 0.47, label, ha="center", va="center", fontsize=7,
                        color="white" if util < 0.6 else "black")
    ax.set_xlim(x0 * side, (x1 + 1) * side)
    ax.set_ylim(y0 * side, (y1 + 1) * side)
    ax.set_aspect("equal")
    step_x, step_y = max(1, -(-width // 16)), max(1, -(-height // 16))  # at most ~16 labels per axis
    ax.set_xticks([rx * side + side / 2 for rx in range(x0, x1 + 1, step_x)], [str(rx) for rx in range(x0, x1 + 1, step_x)])
    ax.set_yticks([ry * side + side / 2 for ry in range(y0, y1 + 1, step_y)], [str(ry) for ry in range(y0, y1 + 1, step_y)])
    ax.set_xlabel("router x")
    ax.set_ylabel("router y")
    legend = ", ".join(f"L{i}={name}" for i, name in enumerate(layer_names))
    ax.set_title(f"Cores in use: {report['title']}\n{len(mapping.cores)} of {target.n_cores} cores; routers x {x0}..{x1},"
                 f" y {y0}..{y1} of the {target.mesh_x} x {target.mesh_y} mesh, {per} cores per router\n"
                 f"in = input generators, {legend}; hatched = unused core", fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, label="neuron utilisation", shrink=0.8)
    fig.tight_layout()
    return _save(fig, path)


def _latency_plot(plt, report: dict, path: Path) -> Path:
    breakdown = report["total"]["time_breakdown_s"]
    layers = report["layers"]
    factor, unit = scaled_unit(list(breakdown.values()) + [layer["busy_s"] for layer in layers], "s")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax1.bar(list(breakdown), [v / factor for v in breakdown.values()], color="tab:orange")
    ax1.set_ylabel(f"time per sample [{unit}]")
    ax1.set_title(f"Latency {si(report['total']['latency_s'], 's')}: compute, sync, idle", fontsize=10)
    ax2.bar([layer["name"] for layer in layers], [layer["busy_s"] / factor for layer in layers], color="tab:green")
    ax2.set_ylabel(f"busiest core, summed over ticks [{unit}]")
    ax2.set_title("Busy time per layer", fontsize=10)
    ax2.tick_params(axis="x", rotation=30)
    fig.suptitle(report["title"], fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def write_plots(report: dict, mapping, directory) -> list[Path]:
    """Write the four PNG plots (``PLOT_NAMES``) into ``directory``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in zip(PLOT_NAMES, (_energy_plot, _sops_plot, None, _latency_plot)):
        if draw is None:
            written.append(_mesh_plot(plt, report, mapping, directory / name))
        else:
            written.append(draw(plt, report, directory / name))
        plt.close("all")
    return written


def _pareto_plot(plt, rows: list, x: str, label: str, unit: str, path: Path, pareto_front, point_key,
                 context: str = "") -> Path:
    ok = [r for r in rows if r["status"] == "ok"]
    factor, scaled = scaled_unit([r[x] for r in ok] or [0.0], unit)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    series = sorted({(r["target"], r["static"]) for r in ok})
    for i, (target, static) in enumerate(series):
        group = [r for r in ok if r["target"] == target and r["static"] == static]
        color = f"C{i % 10}"
        ax.scatter([r[x] / factor for r in group], [100 * r["accuracy"] for r in group], color=color, alpha=0.6,
                   label=f"{target} (static: {static})")
        front = pareto_front(group, x)
        ax.step([r[x] / factor for r in front], [100 * r["accuracy"] for r in front], where="post", color=color,
                linewidth=1.5)
        for r in front:
            ax.annotate(point_key(r), (r[x] / factor, 100 * r["accuracy"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color=color)
    skipped = len(rows) - len(ok)
    ax.set_xlabel(f"{label} per sample ({scaled})")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Sweep: accuracy vs {label} (Pareto front as a step line, labelled bits-Smax-T)"
                 + (f"; {skipped} refused or not bit-exact rows not shown" if skipped else "")
                 + (f"\n{context}" if context else ""), fontsize=9)
    if series:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def sweep_pareto_plots(rows: list, directory, pareto_front, point_key, context: str = "") -> dict:
    """Write ``pareto_energy.png`` and ``pareto_latency.png`` into ``directory``; ``pareto_front(rows,
    x)`` and ``point_key(row)`` come from ``mtsnn.sweep``; ``context``: a second title line (data
    set, architecture, samples)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    written = {}
    for name, x, label, unit in (("pareto_energy", "energy_j", "energy", "J"),
                                 ("pareto_latency", "latency_s", "latency", "s")):
        written[name] = _pareto_plot(plt, rows, x, label, unit, directory / f"{name}.png", pareto_front, point_key,
                                     context)
        plt.close("all")
    return written
