"""Figures of a report: learning curves and calibration metrics versus labels.

Headless by construction: figures are :class:`matplotlib.figure.Figure` objects drawn by
matplotlib's Agg canvas at ``savefig``, with no pyplot, no GUI backend and no change to the
caller's global matplotlib backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from regal_torch.report.summary import is_random

Curves = dict[tuple[str, str], pd.DataFrame]

_VARIANTS = {"": "-", "_recal": "--", "_const": ":"}  # suffix -> line style
_LABELS = {
    "test_nll": "test Gaussian NLL (nats)",
    "test_spearman": "Spearman(|error|, std) on test",
    "test_miscal": "test miscalibration area",
    "test_mean_std": "mean predicted std on test{unit}",
}
_DPI = 120
_SYMLOG_ABOVE = 100  # panels with a larger |value| get a symmetric-log y axis


def plot_learning_curves(
    curves: Curves,
    seeds: dict[tuple[str, str], int],
    quantity: str,
    unit: str,
    path: Path,
    loglog: bool = False,
) -> None:
    """Test MAE and RMSE versus labels: mean over seeds, band from the seeds' min to max; and,
    where random sampling was run, each group's MAE relative to random's at equal labels.

    Args:
        curves: each ``(strategy, model)`` group's mean curve
            (:func:`regal_torch.report.summary.mean_curve`).
        seeds: each group's number of runs (for the legend).
        quantity: what is predicted, for the title (e.g. ``qm9 gap``).
        unit: the target's unit for the y axes; empty where unknown.
        path: the PNG to write.
        loglog: logarithmic x and y axes.
    """
    baselines = _random_baselines(curves)
    panels = 3 if baselines else 2
    figure = Figure(figsize=(6 * panels, 5.2), layout="constrained")
    axes = figure.subplots(1, panels)
    suffix = f" ({unit})" if unit else ""
    for ax, metric, name in zip(axes[:2], ("test_mae", "test_rmse"), ("MAE", "RMSE"), strict=True):
        for color, (key, curve) in zip(_colors(len(curves)), curves.items(), strict=True):
            n = curve["n_labeled"]
            label = f"{key[0]} / {key[1]} ({seeds[key]} seed{'s' * (seeds[key] > 1)})"
            ax.plot(n, curve[f"{metric}_mean"], "o-", color=color, label=label, markersize=3)
            ax.fill_between(
                n, curve[f"{metric}_min"], curve[f"{metric}_max"], color=color, alpha=0.2
            )
        ax.set_xlabel("labeled molecules")
        ax.set_ylabel(f"test {name}{suffix}")
        ax.grid(True, which="both", alpha=0.3)
        if loglog:
            ax.set_xscale("log")
            ax.set_yscale("log")
    if baselines:
        _plot_relative(axes[2], curves, baselines, loglog)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize="small")
    figure.suptitle(f"{quantity}: mean over seeds, band = min to max over seeds")
    figure.savefig(path, dpi=_DPI)


def _random_baselines(curves: Curves) -> dict[str, pd.DataFrame]:
    """Each model's random-sampling mean curve (strategy ``random`` or ``RandomStrategy``)."""
    return {model: curve for (strategy, model), curve in curves.items() if is_random(strategy)}


def _plot_relative(ax: Axes, curves: Curves, baselines: dict[str, pd.DataFrame], log: bool) -> None:
    """Mean test MAE relative to random sampling's with the same model, in percent."""
    for color, (key, curve) in zip(_colors(len(curves)), curves.items(), strict=True):
        if key[1] not in baselines:
            continue
        both = curve.merge(baselines[key[1]], on="n_labeled", suffixes=("", "_random"))
        relative = 100 * (both["test_mae_mean"] / both["test_mae_mean_random"] - 1)
        ax.plot(both["n_labeled"], relative, "o-", color=color, markersize=3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("labeled molecules")
    ax.set_ylabel("test MAE vs random, same labels (%)")
    ax.grid(True, which="both", alpha=0.3)
    if log:
        ax.set_xscale("log")


def plot_calibration(
    curves: Curves, columns: Sequence[str], quantity: str, unit: str, path: Path
) -> None:
    """Calibration metrics (mean over seeds) versus labels, one panel per metric.

    Columns ``m``, ``m_recal`` (variance rescaled on validation molecules) and ``m_const``
    (a constant std) share a panel: solid, dashed and dotted lines.

    Args:
        curves: each group's mean curve, with ``{column}_mean`` for the ``columns``.
        columns: history columns to plot (see
            :func:`regal_torch.report.summary.calibration_columns`).
        quantity: what is predicted, for the title.
        unit: the target's unit, for metrics in that unit.
        path: the PNG to write.
    """
    panels: dict[str, list[str]] = {}
    for column in columns:
        panels.setdefault(_base(column), []).append(column)
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    figure = Figure(figsize=(4.5 * ncols + 3, 3.6 * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (base, members) in zip(axes, panels.items(), strict=False):
        _calibration_panel(ax, curves, base, members, unit)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    # One legend for all panels: a colour per group, a line style per variant.
    handles = [
        Line2D([], [], color=color, marker="o", markersize=3, label=f"{key[0]} / {key[1]}")
        for color, key in zip(_colors(len(curves)), curves, strict=True)
    ]
    handles += [
        Line2D([], [], color="gray", linestyle=style, label=name)
        for name, style in (("raw", "-"), ("recalibrated", "--"), ("constant std", ":"))
    ]
    figure.legend(handles=handles, loc="outside right center", fontsize="small")
    figure.suptitle(f"{quantity}: uncertainty metrics, mean over seeds")
    figure.savefig(path, dpi=_DPI)


def _calibration_panel(
    ax: Axes, curves: Curves, base: str, members: Sequence[str], unit: str
) -> None:
    """One metric's panel: a line per group and variant (raw, ``_recal``, ``_const``)."""
    largest = 0.0
    for color, (key, curve) in zip(_colors(len(curves)), curves.items(), strict=True):
        for column in members:
            if f"{column}_mean" not in curve:  # a group whose runs lack this metric
                continue
            values = curve[f"{column}_mean"]
            largest = max(largest, values.abs().max())
            variant = column[len(base) :]
            ax.plot(
                curve["n_labeled"],
                values,
                _VARIANTS[variant],
                color=color,
                label=f"{key[0]} / {key[1]}{variant.replace('_', ' ')}",
                marker="o",
                markersize=3,
            )
    ylabel = _LABELS.get(base, base).format(unit=f" ({unit})" if unit else "")
    if largest > _SYMLOG_ABOVE:  # raw NLLs of overconfident models reach 1e4
        ax.set_yscale("symlog", linthresh=1)
        ylabel += ", symlog"
    ax.set_xlabel("labeled molecules")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def _base(column: str) -> str:
    for variant in _VARIANTS:
        if variant and column.endswith(variant):
            return column[: -len(variant)]
    return column


def _colors(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]
