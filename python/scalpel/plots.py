"""Pictures and files of tracing results: heatmaps with labelled axes (layer x
head, layer x position, head x position per layer) and JSON.

    r = scalpel.patch_sweep(model, clean, corrupted, metric, component="z", per_position=False)
    scalpel.plots.save_sweep(r, "runs/x/heads")            # heads.png + heads.json
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence
from . import _scalpel


def sweep_to_dict(result, tokens: Sequence[str] | None = None, normalized: bool = True) -> dict:
    """A JSON-ready dict: raw scores, the effect of each patch relative to the
    target run, and (normalized) the fraction of the source-target gap recovered."""
    scores = result.scores.float()
    gap = result.source_score - result.target_score
    out = {
        "component": result.component, "dims": list(result.dims), "layers": list(result.layers),
        "source_score": result.source_score, "target_score": result.target_score,
        "scores": scores.tolist(), "effect": (scores - result.target_score).tolist(),
    }
    if normalized and gap != 0:
        out["gap_recovered"] = ((scores - result.target_score) / gap).tolist()
    positions = list(getattr(result, "positions", []) or [])
    if positions:
        out["positions"] = positions
    if tokens is not None:
        out["tokens"] = list(tokens)
    return out


def _swept_tokens(result, tokens: Sequence[str] | None) -> list[str] | None:
    """The tokens of the swept positions: `tokens` may cover the whole sequence."""
    if tokens is None:
        return None
    positions = list(getattr(result, "positions", []) or [])
    if positions and len(tokens) > max(positions) and len(tokens) != len(positions):
        return [f"{p}:{tokens[p]}" for p in positions]
    return list(tokens)


def _atomic_write(path: Path, data: bytes | str) -> None:
    _scalpel.write_file_atomic(str(path), data)  # the one atomic writer (C++)


def _save_fig(fig, path: str | os.PathLike) -> Path:
    """fig as a PNG at `path`, written beside it and renamed into place."""
    import io

    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _atomic_write(path, buf.getvalue())
    return path


def plot_sweep(result, path: str | os.PathLike, tokens: Sequence[str] | None = None, title: str | None = None,
               normalized: bool = True) -> Path:
    """A heatmap PNG of a SweepResult. 2-D results ([layer, head], [layer, pos])
    give one panel; 3-D ([layer, head, pos]) one panel per layer (head x pos).
    Colour = fraction of the gap recovered when `normalized` and the gap is
    non-zero, else the raw effect (score - target score), diverging around 0."""
    # A Figure without pyplot: no global backend switch (notebooks keep their inline plots).
    from matplotlib.figure import Figure

    gap = result.source_score - result.target_score
    values = result.scores.float() - result.target_score
    label = "effect on the metric"
    if normalized and gap != 0:
        values = values / gap
        label = "fraction of the gap recovered"
    dims = list(result.dims)
    if values.dim() == 1:
        values, dims = values.unsqueeze(1), dims + [""]
    panels = [(values, f"{result.component}", dims)]
    if values.dim() == 3:
        panels = [(values[i], f"{result.component}, layer {l}", dims[1:]) for i, l in enumerate(result.layers)]
    tokens = _swept_tokens(result, tokens)
    vmax = max(float(values.abs().max()), 1e-9)
    cols = min(len(panels), 4)
    rows = (len(panels) + cols - 1) // cols
    panel_w = max(4.2, 1.6 + 0.22 * panels[0][0].shape[1]) if dims[-1] == "pos" else 4.2
    fig = Figure(figsize=(panel_w * cols, 3.4 * rows + 0.3), dpi=110)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (v, name, (ydim, xdim)) in zip(axes.flat, panels):
        im = ax.imshow(v.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(ydim)
        ax.set_xlabel(xdim)
        if ydim == "layer":
            ax.set_yticks(range(len(result.layers)), [str(l) for l in result.layers], fontsize=7)
        if xdim == "pos" and tokens is not None and len(tokens) == v.shape[1]:
            ax.set_xticks(range(len(tokens)), [repr(t)[1:-1][:10] for t in tokens], rotation=90, fontsize=7)
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    import textwrap

    title = title or f"patching {result.component}: source {result.source_score:.3g}, target {result.target_score:.3g}"
    fig.suptitle(textwrap.fill(title, width=int(panel_w * cols * 11)), fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return _save_fig(fig, path)


def save_sweep(result, stem: str | os.PathLike, tokens: Sequence[str] | None = None, title: str | None = None) -> Path:
    """stem.png (plot_sweep) and stem.json (sweep_to_dict); returns the PNG path."""
    stem = Path(stem)
    png = plot_sweep(result, stem.with_suffix(".png"), tokens=tokens, title=title)
    _atomic_write(stem.with_suffix(".json"), (json.dumps(sweep_to_dict(result, tokens), indent=1) + "\n").encode())
    return png


def plot_losses(csv_path: str | os.PathLike, path: str | os.PathLike, title: str | None = None) -> Path:
    """A PNG of a training run's losses.csv (step, loss, [named loss parts, e.g. harm and preserve],
    lr, grad_norm): the loss and its parts (log scale when there are parts), and the learning rate."""
    from matplotlib.figure import Figure

    lines = [line for line in Path(csv_path).read_text().splitlines() if line]
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    col = {name: i for i, name in enumerate(header)}
    steps = [int(r[0]) for r in rows]
    parts = [n for n in header if n not in ("step", "loss", "lr", "grad_norm")]
    fig = Figure(figsize=(7, 3.2), dpi=110)
    ax = fig.subplots()
    ax.plot(steps, [float(r[col["loss"]]) for r in rows], lw=0.8, label="loss")
    for n in parts:
        ax.plot(steps, [float(r[col[n]]) for r in rows], lw=0.8, label=n)
    if parts:
        ax.set_yscale("log")
        ax.legend(fontsize=8, loc="upper center")
    ax.set_xlabel("step")
    ax.set_ylabel("loss" if parts else "loss (nats / token)")
    lr = ax.twinx()
    lr.plot(steps, [float(r[col["lr"]]) for r in rows], color="tab:gray", lw=0.6, ls=":", label="learning rate")
    lr.set_ylabel("learning rate")
    ax.set_title(title or Path(csv_path).parent.name, fontsize=9)
    fig.tight_layout()
    return _save_fig(fig, path)


def plot_edit_sweep(curves: dict[str, list[dict]], x: str, path: str | os.PathLike, ys: Sequence[str] = ("refusal_rate", "first_token_kl"),
                    title: str | None = None, logx: bool = False) -> Path:
    """One panel per metric in `ys`, one line per edit in `curves` (label → rows with x and the
    metrics), e.g. refusal rate and first-token KL against γ for dirty and SRA ablation."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(ys), 3.3), dpi=110)
    axes = fig.subplots(1, len(ys), squeeze=False)[0]
    for ax, y in zip(axes, ys):
        for label, rows in curves.items():
            ax.plot([r[x] for r in rows], [r[y] for r in rows], marker="o", ms=3, lw=1, label=label)
        ax.set_xlabel(x)
        ax.set_ylabel(y.replace("_", " "))
        if logx:
            ax.set_xscale("log")
        if y.endswith("kl"):
            ax.set_yscale("symlog", linthresh=1e-4)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save_fig(fig, path)


def plot_matrix(matrix, labels: Sequence[str], path: str | os.PathLike, title: str | None = None,
                col_labels: Sequence[str] | None = None, fmt: str = "{:.2f}", cmap: str = "RdBu_r",
                symmetric: bool = True) -> Path:
    """A labelled heatmap with values written in the cells (atom cosines, candidate scores)."""
    from matplotlib.figure import Figure
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    fig = Figure(figsize=(1.0 + 0.62 * m.shape[1], 0.9 + 0.45 * m.shape[0]), dpi=110)
    ax = fig.subplots()
    lim = np.nanmax(np.abs(m)) if m.size else 1.0
    im = ax.imshow(m, cmap=cmap, vmin=-lim if symmetric else None, vmax=lim if symmetric else None, aspect="auto")
    ax.set_yticks(range(m.shape[0]), labels, fontsize=8)
    ax.set_xticks(range(m.shape[1]), col_labels or labels, fontsize=8, rotation=45, ha="right")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.04)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save_fig(fig, path)


def plot_bars(rows: list[dict], label: str, ys: Sequence, path: str | os.PathLike, title: str | None = None) -> Path:
    """Bars, one group per row (its `label`), one panel per entry of `ys`; an entry that is a tuple
    of metrics draws them side by side in one panel (e.g. ("dirty_kl", "sra_kl"))."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.2, 0.5 * len(rows) + 1.5) * len(ys), 3.5), dpi=110)
    axes = fig.subplots(1, len(ys), squeeze=False)[0]
    names = [str(r[label]) for r in rows]
    for ax, y in zip(axes, ys):
        group = (y,) if isinstance(y, str) else tuple(y)
        w = 0.8 / len(group)
        for k, metric in enumerate(group):
            ax.bar([i + (k - (len(group) - 1) / 2) * w for i in range(len(rows))], [r[metric] for r in rows], w,
                   label=metric.replace("_", " "))
        ax.set_xticks(range(len(rows)), names, fontsize=7, rotation=40, ha="right")
        ax.set_ylabel(" / ".join(m.replace("_", " ") for m in group) if len(group) == 1 else "")
        if all(m.endswith("kl") for m in group):
            ax.set_yscale("symlog", linthresh=1e-4)
        if len(group) > 1:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save_fig(fig, path)
