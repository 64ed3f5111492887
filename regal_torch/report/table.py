"""The summary table as Markdown, for ``summary.md`` and the terminal."""

from __future__ import annotations

import math

import pandas as pd


def summary_markdown(summary: pd.DataFrame, unit: str) -> str:
    """Markdown tables of :func:`regal_torch.report.summary.summarize`'s output: accuracy
    against random sampling, then cost per round and uncertainty quality.

    Values are ``mean ± std`` over seeds (the std is left out for one seed); a missing
    random baseline leaves its columns empty; a level never reached reads ``not reached``.
    """
    u = f" ({unit})" if unit else ""
    header = [
        "strategy",
        "model",
        "seeds",
        "labels",
        f"final MAE{u}",
        f"final RMSE{u}",
        f"AUC MAE{u}",
        "labels to random's final MAE",
        "saving",
        "labels to random's final RMSE",
        "RMSE saving",
        "RMSE reduction",
        "worst MAE vs random",
    ]
    lines = [_row(header), _row(["---"] * len(header))]
    for row in summary.itertuples(index=False):
        has_random = not math.isnan(row.random_final_mae)
        versus = [
            _reach(row.labels_to_random_mae, row.saving_pct),
            _reach(row.labels_to_random_rmse, row.saving_rmse_pct),
            (f"{row.rmse_reduction_pct:.1f}%", f"{row.worst_mae_vs_random_pct:+.1f}%"),
        ]
        lines.append(
            _row(
                [
                    row.strategy,
                    row.model,
                    str(row.n_seeds),
                    str(row.final_n_labeled),
                    _mean_std(row.final_mae_mean, row.final_mae_std),
                    _mean_std(row.final_rmse_mean, row.final_rmse_std),
                    f"{row.auc_mae:.4f}",
                    *(cell if has_random else "" for pair in versus for cell in pair),
                ]
            )
        )
    header = ["strategy", "model", "s train", "s predict", "s select", "final Spearman"]
    header += ["final NLL recal", "final NLL const"]
    lines += ["", _row(header), _row(["---"] * len(header))]
    for row in summary.itertuples(index=False):
        numbers = (row.seconds_train, row.seconds_predict, row.seconds_select)
        uncertainty = (row.final_spearman, row.final_nll_recal, row.final_nll_const)
        lines.append(
            _row(
                [
                    row.strategy,
                    row.model,
                    *(f"{x:.1f}" if not math.isnan(x) else "" for x in numbers),
                    *(f"{x:.3f}" if not math.isnan(x) else "" for x in uncertainty),
                ]
            )
        )
    return "\n".join(lines) + "\n"


def _reach(labels: float, saving: float) -> tuple[str, str]:
    if math.isnan(labels):
        return "not reached", ""
    return f"{labels:.0f}", f"{saving:.0f}%"


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
