"""The summary table as Markdown, for ``summary.md`` and the terminal."""

from __future__ import annotations

import math

import pandas as pd


def summary_markdown(summary: pd.DataFrame, unit: str) -> str:
    """A Markdown table of :func:`regal_torch.report.summary.summarize`'s output.

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
    ]
    lines = [_row(header), _row(["---"] * len(header))]
    for row in summary.itertuples(index=False):
        has_random = not math.isnan(row.random_final_mae)
        reached = not math.isnan(row.labels_to_random_mae)
        reach = f"{row.labels_to_random_mae:.0f}" if reached else "not reached"
        saving = f"{row.saving_pct:.0f}%" if reached else ""
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
                    reach if has_random else "",
                    saving if has_random else "",
                ]
            )
        )
    return "\n".join(lines) + "\n"


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
