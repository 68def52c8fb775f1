"""PNG plots of a simulation report (matplotlib), kept out of ``mtsnn.hw_model`` (numpy only)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mtsnn.hw_model.fileio import atomic_write_bytes

__all__ = ["write_plots"]


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_plots(report: dict, mapping, directory) -> list[Path]:
    """PNG plots: SOPs and energy per layer, core utilisation on the mesh, latency breakdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    names = [layer["name"] for layer in report["layers"]]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.bar(names, [layer["sops"] for layer in report["layers"]], color="tab:blue")
    ax1.set_title("SOPs per layer (per sample)")
    bottom = np.zeros(len(names))
    for kind in ("sop", "update", "packet", "hop"):
        values = np.array([layer["energy_breakdown_j"][kind] for layer in report["layers"]])
        ax2.bar(names, values, bottom=bottom, label=kind)
        bottom += values
    ax2.set_title("energy per layer (J per sample)")
    ax2.legend()
    fig.tight_layout()
    written.append(_save(fig, directory / "sops_energy_per_layer.png"))
    plt.close(fig)

    target = mapping.target
    grid = np.zeros((target.mesh_y, target.mesh_x))
    for core in mapping.cores:
        x, y = core.router
        grid[y, x] += core.n_neurons / (target.neurons_per_core * target.cores_per_router)
    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, origin="lower")
    ax.set_title(f"neuron utilisation per router ({target.name} {target.mesh_x} x {target.mesh_y})")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    written.append(_save(fig, directory / "core_utilisation_mesh.png"))
    plt.close(fig)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    breakdown = report["total"]["time_breakdown_s"]
    ax1.bar(list(breakdown), list(breakdown.values()), color="tab:orange")
    ax1.set_title("latency breakdown (s per sample)")
    ax2.bar(names, [layer["busy_s"] for layer in report["layers"]], color="tab:green")
    ax2.set_title("busy time per layer (slowest core, s per sample)")
    fig.tight_layout()
    written.append(_save(fig, directory / "latency_breakdown.png"))
    plt.close(fig)
    return written
