"""Draw benchmarks/results/latest.png from latest.json (run with a Python that has
matplotlib: the benchmark tools' venv)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def bars(axis, figures, title):  # type: ignore[no-untyped-def]
    names = [f["name"] for f in figures]
    medians = [f["median"] for f in figures]
    errors = [
        [m - f["min"] for m, f in zip(medians, figures, strict=True)],
        [f["max"] - m for m, f in zip(medians, figures, strict=True)],
    ]
    axis.barh(names, medians, xerr=errors, color="#4878a8")
    axis.set_title(title)
    axis.set_xlabel(figures[0]["unit"] if figures else "")
    axis.invert_yaxis()


def by_unit(group):  # type: ignore[no-untyped-def]
    """One panel per unit: a group may hold rates and their CPU cost side by side."""
    units = list(dict.fromkeys(f["unit"] for f in group["figures"]))
    return [
        (group["title"] if i == 0 else f"{group['title']}: {unit}",
         [f for f in group["figures"] if f["unit"] == unit])
        for i, unit in enumerate(units)
    ]  # fmt: skip


def main(path: str) -> None:
    results = json.loads(Path(path).read_text())
    groups = [panel for group in results["groups"] for panel in by_unit(group)]
    fig, axes = plt.subplots(
        len(groups), 1, figsize=(10, 2.2 + 1.6 * sum(len(f) for _, f in groups) / 2)
    )
    for axis, (title, figures) in zip(axes if len(groups) > 1 else [axes], groups, strict=True):
        bars(axis, figures, title)
    fig.suptitle(f"ingestor benchmarks ({results['machine']})")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(Path(path).with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main(sys.argv[1])
