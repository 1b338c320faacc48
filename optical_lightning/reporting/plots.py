"""Figures a run writes next to its results (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: clusters and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from optical_lightning.utils.atomic import atomic_write_bytes  # noqa: E402


def plan_heatmaps(plans: Sequence[Tensor], en_tokens: Sequence[list[str]], tgt_tokens: Sequence[list[str]],
                  path: str | Path, lang: str = "tgt", title: str = "OT plan") -> Path:
    """One heatmap per pair: English teacher tokens (rows) x student tokens (columns), mass of the plan.

    Each plan is rescaled to its row marginals (rows sum to 1), so a dark cell reads "this
    English token sends most of its mass to that token" whatever the sentence lengths.
    """
    n = len(plans)
    fig, axes = plt.subplots(1, n, figsize=(min(6 * n, 24), 5.5), squeeze=False, layout="constrained")
    for ax, plan, rows, cols in zip(axes[0], plans, en_tokens, tgt_tokens):
        p = plan / plan.sum(1, keepdim=True).clamp_min(1e-12)
        im = ax.imshow(p.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=90)
        ax.set_ylabel("teacher (en)")
        ax.set_xlabel(f"student ({lang})")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="share of the row's mass")
    fig.suptitle(title)
    return save_png(fig, path)


def save_png(fig, path: str | Path) -> Path:
    """PNG bytes written atomically: a half-written image never sits where a finished one should."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def learning_curves(rows: Sequence[dict[str, float]] | dict[str, Sequence[dict[str, float]]], path: str | Path,
                    best_step: int | None = None) -> Path:
    """One panel per headline curve value (``<set>/<metric>``: P@1, nDCG@10, accuracy, agreement) against
    the training step; the selected step, if any, as a dashed line. ``curves.json`` keeps every value.

    ``rows`` is one run's curve, or ``{label: curve}`` to draw several runs (e.g. OPTICAL and MSE) as one
    line each on the same panels; a value one run lacks is left out of its line.
    """
    runs = dict(rows) if isinstance(rows, dict) else {"": list(rows)}
    if not runs or not all(runs.values()):
        raise ValueError("learning_curves: every run needs at least one evaluated step")
    headline = ("P@1", "nDCG@10", "accuracy", "agreement")
    keys = list(dict.fromkeys(k for curve in runs.values() for k in curve[0]))
    keys = [k for k in keys if k.rpartition("/")[2] in headline] or [k for k in keys if k not in ("step", "score")]
    cols = min(3, len(keys)) or 1
    n_rows = -(-len(keys) // cols) or 1
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.0 * n_rows), squeeze=False, layout="constrained")
    for ax, key in zip(axes.flat, keys):
        for label, curve in runs.items():
            points = [(r["step"], r[key]) for r in curve if key in r]
            ax.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3, label=label or None)
        if best_step is not None:
            ax.axvline(best_step, linestyle="--", color="grey", linewidth=1)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if len(runs) > 1:
        axes.flat[0].legend(fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    return save_png(fig, path)
