"""Distance matrices as markdown, JSON and a heatmap PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class DistanceReport:
    """A K×K distance matrix with optional CIs, ready to print or write.

    Attributes:
        names: reward names (matrix order).
        metric: "starc" | "epic" | "dard" (plus variant in `settings`).
        distance: [K, K], symmetric, zero diagonal, values in [0, 1].
        ci_low, ci_high: [K, K] CI bounds, or None (exact tabular values).
        settings: everything needed to reproduce the numbers.
    """

    names: list[str]
    metric: str
    distance: np.ndarray
    ci_low: np.ndarray | None = None
    ci_high: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_sampled(cls, result: Any) -> DistanceReport:
        """From an `embodied.compare.sampled.SampledComparison` (per-seed values go into settings)."""
        settings = dict(result.settings)
        settings["per_seed"] = np.asarray(result.per_seed).round(6).tolist()
        return cls(list(result.names), result.metric, result.distance, result.ci_low, result.ci_high, settings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""

        def arr(x: np.ndarray | None) -> list | None:
            return None if x is None else np.asarray(x, dtype=float).round(6).tolist()

        return {
            "metric": self.metric,
            "names": list(self.names),
            "distance": arr(self.distance),
            "ci_low": arr(self.ci_low),
            "ci_high": arr(self.ci_high),
            "settings": _jsonable(self.settings),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_markdown(self, digits: int = 3) -> str:
        """Markdown table: one row and column per reward; cells 'd [lo, hi]' when CIs exist."""
        return matrix_markdown(self.names, self.distance, self.ci_low, self.ci_high, digits, self.metric)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def _cell(d: float, lo: float | None, hi: float | None, digits: int) -> str:
    text = f"{d:.{digits}f}"
    if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi)):
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


def matrix_markdown(
    names: Sequence[str],
    distance: np.ndarray,
    ci_low: np.ndarray | None = None,
    ci_high: np.ndarray | None = None,
    digits: int = 3,
    metric: str = "distance",
) -> str:
    """A markdown table of a K×K matrix; the corner cell names the metric."""
    k = len(names)
    D = np.asarray(distance, dtype=float)
    if D.shape != (k, k):
        raise ValueError(f"distance: shape {D.shape} does not match {k} names")
    esc = [n.replace("|", "\\|") for n in names]
    lines = ["| " + " | ".join([metric, *esc]) + " |", "|" + "---|" * (k + 1)]
    for i in range(k):
        cells = []
        for j in range(k):
            lo = None if ci_low is None or i == j else float(ci_low[i, j])
            hi = None if ci_high is None or i == j else float(ci_high[i, j])
            cells.append(_cell(float(D[i, j]), lo, hi, digits))
        lines.append("| " + " | ".join([esc[i], *cells]) + " |")
    return "\n".join(lines)


def short_label(name: str, width: int = 28) -> str:
    """A heatmap label: 'kind:file' for path-like specs, cut to `width` characters."""
    kind, sep, arg = name.partition(":")
    if sep and "/" in arg:
        name = f"{kind}:{arg.rstrip('/').rsplit('/', 1)[-1]}"
    return name if len(name) <= width else name[: width - 1] + "…"


def heatmap(report: DistanceReport, path: Path, title: str | None = None) -> Path:
    """Write a heatmap PNG of the matrix (0 = same, 1 = opposite), annotated with the values."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    k = len(report.names)
    labels = [short_label(n) for n in report.names]
    size = max(3.5, 1.0 + 0.9 * k)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    try:
        im = ax.imshow(np.asarray(report.distance, dtype=float), vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(k), labels, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(k), labels, fontsize=8)
        for i in range(k):
            for j in range(k):
                v = float(report.distance[i, j])
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < 0.6 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=f"{report.metric} distance")
        ax.set_title(title or f"{report.metric} distance", fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def write_report(report: DistanceReport, out_dir: Path, stem: str, title: str | None = None) -> dict[str, Path]:
    """Write `<stem>.md`, `<stem>.json` and `<stem>.png` into `out_dir`; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / f"{stem}.md", "json": out_dir / f"{stem}.json", "png": out_dir / f"{stem}.png"}
    paths["markdown"].write_text(report.to_markdown() + "\n")
    paths["json"].write_text(report.to_json() + "\n")
    heatmap(report, paths["png"], title)
    return paths
