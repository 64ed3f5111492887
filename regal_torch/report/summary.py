"""Learning curves averaged over seeds, and the summary table that compares them with random.

The definitions of its numbers are :data:`DEFINITIONS` (also written into ``summary.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from regal_torch.report.runs import Run

RANDOM = ("random", "RandomStrategy")  # the baseline: choice name, or class name
ACCURACY_COLUMNS = ("test_mae", "test_rmse", "test_r2")
TIMING_COLUMNS = ("seconds_train", "seconds_predict", "seconds_select")
DEFINITIONS = """\
- **group**: the runs of one strategy with one model that differ only in their seed; runs of
  one strategy and model that differ in another result-changing option form separate groups,
  named by those options (for example `lcmd [loop.candidates=20000]`);
- **mean curve** of a group: mean, sample std, min and max over the group's seeds of each
  metric, at every `n_labeled` that all its seeds reached;
- **final**: the mean curve's last point;
- **AUC**: the trapezoid area under the mean test MAE over `n_labeled`, divided by the label
  range (last minus first `n_labeled`): the MAE averaged over the labeling budget, in the
  target's unit (lower is better; a single point gives its own MAE);
- **labels to random's final MAE**: the first `n_labeled` at which the group's mean MAE is
  at or below the final mean MAE of random sampling with the same model, interpolated
  linearly between rounds (NaN when never reached); **saving** is `1 - that / random's final
  n_labeled`, in percent; the same for RMSE (**labels to random's final RMSE**, **RMSE
  saving**);
- **RMSE reduction**: `1 - RMSE / random's RMSE` at the last label count both curves have
  (the final budget when both runs are complete), in percent (positive: better);
- **worst MAE vs random**: the largest `MAE / random's MAE - 1` over the label counts both
  curves have, in percent (positive: worse than random at that round, mean over seeds);
- **s train / predict / select**: mean seconds per round of training, of predicting the pool
  and of selecting (rounds that do not select are left out of the last two);
- **final Spearman, NLL recal, NLL const**: the final round's `test_spearman`,
  `test_nll_recal` and `test_nll_const` (see the README's uncertainty columns).
"""
SUMMARY_COLUMNS = (
    "strategy",
    "model",
    "n_seeds",
    "final_n_labeled",
    "final_mae_mean",
    "final_mae_std",
    "final_rmse_mean",
    "final_rmse_std",
    "auc_mae",
    "random_final_mae",
    "labels_to_random_mae",
    "saving_pct",
    "random_final_rmse",
    "labels_to_random_rmse",
    "saving_rmse_pct",
    "rmse_reduction_pct",
    "worst_mae_vs_random_pct",
    "seconds_train",
    "seconds_predict",
    "seconds_select",
    "final_spearman",
    "final_nll_recal",
    "final_nll_const",
)


def group_runs(runs: Sequence[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs grouped by ``(strategy, model)`` and by every other option they differ in but the
    seed, keys sorted.

    The first item of a key is the strategy's name, followed, where runs of that strategy and
    model differ in other options, by those options' values: ``lcmd [loop.candidates=20000]``.
    A run that lacks one of those options (a run older than the option) joins the one group
    whose values agree with all the options it has, if there is exactly one.
    """
    by_choice: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_choice.setdefault((run.strategy, run.model), []).append(run)
    groups: dict[tuple[str, str], list[Run]] = {}
    for (strategy, model), members in by_choice.items():
        varying = _varying_options(members)
        complete: dict[tuple, list[Run]] = {}
        partial = []
        for run in members:
            if all(key in run.options for key in varying):
                values = tuple(run.options[key] for key in varying)
                complete.setdefault(values, []).append(run)
            else:
                partial.append(run)
        for run in partial:
            fits = [
                values
                for values in complete
                if all(run.options.get(k, v) == v for k, v in zip(varying, values, strict=True))
            ]
            values = fits[0] if len(fits) == 1 else tuple(run.options.get(k) for k in varying)
            complete.setdefault(values, []).append(run)
        for values, grouped in complete.items():
            named = ", ".join(f"{key}={value}" for key, value in zip(varying, values, strict=True))
            groups[(f"{strategy} [{named}]" if varying else strategy, model)] = grouped
    return dict(sorted(groups.items()))


def is_random(strategy: str) -> bool:
    """Whether a group's strategy label (:func:`group_runs`) is random sampling."""
    return strategy.split(" [", 1)[0] in RANDOM


def _varying_options(runs: Sequence[Run]) -> list[str]:
    """The options that take more than one value among the runs that have them, sorted; the
    options of a config group whose choice varies are named by the choice alone
    (``loop/initial_strategy=kmeanspp``, not its ``loop.initial_strategy.*``)."""
    values: dict[str, set[str]] = {}
    for run in runs:
        for key, value in run.options.items():
            values.setdefault(key, set()).add(repr(value))
    varying = [key for key, seen in values.items() if len(seen) > 1]
    groups = [key.replace("/", ".") + "." for key in varying if "/" in key]
    return sorted(key for key in varying if not any(key.startswith(g) for g in groups))


def calibration_columns(runs: Sequence[Run]) -> list[str]:
    """History columns that start with ``test_`` beyond the accuracy ones, in file order."""
    columns: dict[str, None] = {}
    for run in runs:
        columns.update(
            (c, None)
            for c in run.history.columns
            if c.startswith("test_") and c not in ACCURACY_COLUMNS
        )
    return list(columns)


def mean_curve(histories: Sequence[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """Mean, std, min and max over seeds of ``columns`` at each ``n_labeled`` all seeds reached.

    Returns:
        One row per ``n_labeled`` (ascending), the column ``n_labeled`` and, for each metric
        ``m`` of ``columns`` present in a history, ``m_mean``, ``m_std`` (sample std, NaN for
        one seed), ``m_min``, ``m_max``.
    """
    common = set.intersection(*(set(h["n_labeled"]) for h in histories))
    present = [c for c in columns if any(c in h.columns for h in histories)]
    stacked = pd.concat([h.reindex(columns=["n_labeled", *present]) for h in histories])
    stacked = stacked[stacked["n_labeled"].isin(common)]
    stats = stacked.groupby("n_labeled")[present].agg(["mean", "std", "min", "max"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    return stats.reset_index().sort_values("n_labeled", ignore_index=True)


def area_under_curve(n_labeled: np.ndarray, mae: np.ndarray) -> float:
    """Trapezoid area under ``mae`` over ``n_labeled``, divided by the label range.

    Shapes:
        n_labeled, mae: ``[R]``, ``n_labeled`` ascending.
    """
    if len(n_labeled) == 1:
        return float(mae[0])
    area = np.sum((mae[1:] + mae[:-1]) / 2 * np.diff(n_labeled))
    return float(area / (n_labeled[-1] - n_labeled[0]))


def labels_to_reach(n_labeled: np.ndarray, mae: np.ndarray, level: float) -> float:
    """First ``n_labeled`` at which ``mae <= level``, linear between rounds; NaN if never.

    Shapes:
        n_labeled, mae: ``[R]``, ``n_labeled`` ascending.
    """
    reached = np.flatnonzero(mae <= level)
    if len(reached) == 0:
        return float("nan")
    i = reached[0]
    if i == 0:
        return float(n_labeled[0])
    fraction = (mae[i - 1] - level) / (mae[i - 1] - mae[i])
    return float(n_labeled[i - 1] + fraction * (n_labeled[i] - n_labeled[i - 1]))


def summarize(
    curves: dict[tuple[str, str], pd.DataFrame], seeds: dict[tuple[str, str], int]
) -> pd.DataFrame:
    """The summary table: one row per ``(strategy, model)`` with :data:`SUMMARY_COLUMNS`.

    Args:
        curves: each group's :func:`mean_curve` (with ``test_mae`` and ``test_rmse``).
        seeds: each group's number of runs.
    """
    finals = {key: curve.iloc[-1] for key, curve in curves.items()}
    rows = []
    for (strategy, model), curve in curves.items():
        final, n, mae = finals[strategy, model], curve["n_labeled"], curve["test_mae_mean"]
        row = {
            "strategy": strategy,
            "model": model,
            "n_seeds": seeds[strategy, model],
            "final_n_labeled": int(final["n_labeled"]),
            "final_mae_mean": final["test_mae_mean"],
            "final_mae_std": final["test_mae_std"],
            "final_rmse_mean": final["test_rmse_mean"],
            "final_rmse_std": final["test_rmse_std"],
            "auc_mae": area_under_curve(n.to_numpy(float), mae.to_numpy(float)),
        }
        for column in TIMING_COLUMNS:  # pandas' mean skips rounds without a value
            if f"{column}_mean" in curve:
                row[column] = float(curve[f"{column}_mean"].mean())
        for name in ("spearman", "nll_recal", "nll_const"):
            row[f"final_{name}"] = final.get(f"test_{name}_mean", float("nan"))
        base = next((key for key in curves if is_random(key[0]) and key[1] == model), None)
        if base is not None:
            row.update(_versus_random(curve, curves[base]))
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=list(SUMMARY_COLUMNS))


def _versus_random(curve: pd.DataFrame, random: pd.DataFrame) -> dict[str, float]:
    """The summary columns that compare one group's mean curve with random sampling's."""
    n = curve["n_labeled"].to_numpy(float)
    last = random.iloc[-1]
    row = {"random_final_mae": last["test_mae_mean"], "random_final_rmse": last["test_rmse_mean"]}
    for metric, suffix in (("mae", ""), ("rmse", "_rmse")):
        reach = labels_to_reach(
            n, curve[f"test_{metric}_mean"].to_numpy(float), row[f"random_final_{metric}"]
        )
        row[f"labels_to_random_{metric}"] = reach
        row[f"saving{suffix}_pct"] = 100 * (1 - reach / last["n_labeled"])
    both = curve.merge(random, on="n_labeled", suffixes=("", "_random"))
    row["rmse_reduction_pct"] = row["worst_mae_vs_random_pct"] = float("nan")
    if len(both):
        final = both.iloc[-1]
        row["rmse_reduction_pct"] = 100 * (
            1 - final["test_rmse_mean"] / final["test_rmse_mean_random"]
        )
        excess = both["test_mae_mean"] / both["test_mae_mean_random"] - 1
        row["worst_mae_vs_random_pct"] = 100 * float(excess.max())
    return row


def models_without_random(summary: pd.DataFrame) -> list[str]:
    """Models of the summary that have no random-sampling group to compare with."""
    with_random = set(summary.loc[summary["strategy"].map(is_random), "model"])
    return sorted(set(summary["model"]) - with_random)
