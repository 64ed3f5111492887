"""Report the molecule-features study on all of QM9 gap into benchmarks/qm9_gap_features/ and
the ``qm9-features`` section of BENCHMARKS.md.

The study (experiment=qm9_gap_features: the splits and labels of experiment=qm9_gap_full;
one process per core, ``OMP_NUM_THREADS=1``; re-running a command resumes its runs):

    # the GP on MiniMol + GFN2-xTB (+ the Morgan fingerprint's Tanimoto kernel), random labels
    # and the strategies, 11 rounds of the learning curve each, seeing the GP's own variance
    python -m regal_torch.run --multirun experiment=qm9_gap_features loop.local_neighbours=null \\
        'hydra.sweep.subdir=gp_mx/${hydra:runtime.choices.strategy}/seed${seed}' \\
        strategy=random,lcmd,covariance
    # the strategies that see the validation-neighbour std (the default), BAIT, and LCMD on
    # the kernel weighted by that std (strategy.weighted, measured at commit 2c63fd1 and then
    # removed: it did not help, BENCHMARKS.md "Uncertainty and intervals", finding 5)
    python -m regal_torch.run --multirun experiment=qm9_gap_features \\
        'hydra.sweep.subdir=gp_mx_local/${hydra:runtime.choices.strategy}/seed${seed}' \\
        strategy=random,uncertainty,covariance,bait
    python -m regal_torch.run --multirun experiment=qm9_gap_features strategy=lcmd \\
        strategy.weighted=true 'hydra.sweep.subdir=gp_mx_local/lcmd_weighted/seed${seed}'
    # the GINE networks on the same features: one fit at 200, 1,000 and 2,200 random labels
    python -m regal_torch.run --multirun experiment=qm9_gap_features model=mc_dropout \\
        model.mc_samples=10 loop.rounds=0 loop.initial_size=200,1000,2200 \\
        loop.local_neighbours=null 'data.features=[minimol]' predict.outputs=false \\
        'hydra.sweep.subdir=gine_m/n${loop.initial_size}/seed${seed}'
    python -m regal_torch.run --multirun experiment=qm9_gap_features model=mc_dropout \\
        model.mc_samples=10 loop.rounds=0 loop.initial_size=200,1000,2200 \\
        loop.local_neighbours=null model.baseline=xtb_gap predict.outputs=false \\
        'hydra.sweep.subdir=gine_mx_delta/n${loop.initial_size}/seed${seed}'

The GINE without features is the random runs of the full-scale study
(``benchmarks/qm9_gap_full/runs``). Labels to reach a level are interpolated log-log between
the measured label counts (error falls as a power of the labels); "not reached" where the
largest count measured does not reach it.

    python scripts/bench_qm9_features.py [--save-runs]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from regal_torch.report.cli import report
from regal_torch.report.runs import find_runs, read_run

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "multirun" / "qm9_gap_features"
OUT = ROOT / "benchmarks" / "qm9_gap_features"
TODAY = ROOT / "benchmarks" / "qm9_gap_full" / "runs"
POINTS = (200, 1000, 2200)
MODELS = {  # name -> (what it is, where its runs are)
    "gine": ("GINE MC-dropout, no features (the previous default network)", None),
    "gine_m": ("GINE MC-dropout + MiniMol (concatenated to the pooled embedding)", "gine_m"),
    "gine_mx_delta": (
        "GINE MC-dropout + MiniMol + xTB (10 values), Delta on the xTB gap",
        "gine_mx_delta",
    ),
    "gp_mx": (
        "exact GP: Tanimoto (Morgan) + RBF (MiniMol) + ARD RBF (xTB, 10 values)",
        "gp_mx/random",
    ),
}


def seed_of(path: Path) -> int:
    """The run's ``seed`` (its options leave it out)."""
    return int(OmegaConf.load(path / ".hydra" / "config.yaml").seed)


def rows_of(name: str) -> pd.DataFrame:
    """``n_labeled, seed, mae, rmse`` of every finished round of the model's random runs."""
    where = MODELS[name][1]
    if where is None:
        paths = [p for p in find_runs([TODAY]) if read_run(p).strategy == "random"]
    else:
        paths = find_runs([SWEEP / where]) if (SWEEP / where).exists() else []
    frames = []
    for path in paths:
        run = read_run(path)
        seed = seed_of(path)
        history = run.history
        frames.append(
            pd.DataFrame(
                {
                    "n_labeled": history["n_labeled"],
                    "seed": seed,
                    "mae": history["test_mae"],
                    "rmse": history["test_rmse"],
                    "spearman": history["test_spearman"],
                    "nll_recal": history["test_nll_recal"],
                    "nll_const": history["test_nll_const"],
                }
            )
        )
    return pd.concat(frames) if frames else pd.DataFrame()


def labels_to(n: np.ndarray, error: np.ndarray, level: float) -> float:
    """The labels at which ``error`` (mean over seeds at each ``n``) first reaches ``level``,
    interpolated log-log; NaN if it never does."""
    order = np.argsort(n)
    n, error = np.asarray(n, float)[order], np.asarray(error, float)[order]
    if error[0] <= level:
        return float(n[0])
    for i in range(1, len(n)):
        if error[i] <= level:
            a, b = np.log(error[i - 1]), np.log(error[i])
            t = (np.log(level) - a) / (b - a)
            return float(np.exp(np.log(n[i - 1]) + t * (np.log(n[i]) - np.log(n[i - 1]))))
    return float("nan")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = {name: rows_of(name) for name in MODELS}
    today = data["gine"].groupby("n_labeled")[["mae", "rmse"]].mean()
    final_mae, final_rmse = today.loc[2200, "mae"], today.loc[2200, "rmse"]
    records = []
    for name, frame in data.items():
        if frame.empty:
            continue
        curve = frame.groupby("n_labeled").agg(["mean", "std", "count"])
        for n in POINTS:
            if n not in curve.index:
                continue
            row = curve.loc[n]
            records.append(
                {
                    "model": name,
                    "n_labeled": n,
                    "seeds": int(row[("mae", "count")]),
                    "mae": row[("mae", "mean")],
                    "mae_std": row[("mae", "std")],
                    "rmse": row[("rmse", "mean")],
                    "rmse_std": row[("rmse", "std")],
                    "spearman": row[("spearman", "mean")],
                    "nll_recal": row[("nll_recal", "mean")],
                    "nll_const": row[("nll_const", "mean")],
                    "labels_to_gine_final_mae": labels_to(
                        curve.index, curve[("mae", "mean")], final_mae
                    ),
                    "labels_to_gine_final_rmse": labels_to(
                        curve.index, curve[("rmse", "mean")], final_rmse
                    ),
                }
            )
    summary = pd.DataFrame(records)
    summary.to_csv(OUT / "summary.csv", index=False)
    strategy_rows = strategy_table(final_mae, final_rmse)
    write_section("qm9-features", _section(summary, final_mae, final_rmse, strategy_rows))


def strategy_label(path: Path) -> str | None:
    """How the strategy table names a run of ``gp_mx`` or ``gp_mx_local``: the strategy, with
    ``weighted`` and the std it sees where it uses one; None for the local folder's random
    runs (random picks do not see the std: the same runs as ``gp_mx``'s)."""
    cfg = OmegaConf.load(path / ".hydra" / "config.yaml")
    strategy = read_run(path).strategy
    weighted = bool(cfg.strategy.get("weighted", False))
    local = cfg.loop.local_neighbours is not None
    if strategy == "random":
        return None if local else "random"
    label = f"{strategy} weighted" if weighted else strategy
    if weighted or strategy in ("uncertainty", "covariance"):
        label += ", local std" if local else ", GP variance"
    return label


def strategy_table(final_mae: float, final_rmse: float) -> list[str]:
    """Rows of the strategies' table (finished runs of ``gp_mx`` and ``gp_mx_local``): final
    MAE and RMSE, labels to the GINE's and to random's final MAE and RMSE, and the worst
    round's MAE against random's at the same labels."""
    folders = [SWEEP / f for f in ("gp_mx", "gp_mx_local") if (SWEEP / f).exists()]
    finished = [p for p in find_runs(folders) if len(read_run(p).history) == 11] if folders else []
    labelled = [(strategy_label(p), p) for p in finished]
    labelled = [(label, p) for label, p in labelled if label is not None]
    if not labelled:
        return []
    report([p for _, p in labelled], OUT / "strategies")
    curves = pd.concat(
        read_run(p).history.assign(strategy=label, seed=seed_of(p)) for label, p in labelled
    )
    means = {
        label: frame.groupby("n_labeled")[["test_mae", "test_rmse"]].mean()
        for label, frame in curves.groupby("strategy")
    }
    random = means["random"]
    rows = []
    for label, mean in sorted(means.items(), key=lambda item: item[1]["test_rmse"].iloc[-1]):
        seeds = curves.loc[curves["strategy"] == label, "seed"].nunique()
        worst = (mean["test_mae"] / random["test_mae"] - 1).max()
        rows.append(
            f"| {label} | {seeds} | {mean['test_mae'].iloc[-1]:.4f} | "
            f"{mean['test_rmse'].iloc[-1]:.4f} | "
            f"{_n(labels_to(mean.index, mean['test_mae'], final_mae))} / "
            f"{_n(labels_to(mean.index, mean['test_rmse'], final_rmse))} | "
            f"{_n(labels_to(mean.index, mean['test_mae'], random['test_mae'].iloc[-1]))} / "
            f"{_n(labels_to(mean.index, mean['test_rmse'], random['test_rmse'].iloc[-1]))} | "
            f"{100 * worst:+.1f}% |"
        )
    return rows


def _n(value: float) -> str:
    return "not reached" if np.isnan(value) else f"{value:,.0f}"


def _section(
    summary: pd.DataFrame, final_mae: float, final_rmse: float, strategy_rows: list[str]
) -> str:
    lines = [
        "### Molecule features on all of QM9 gap: the measured tables",
        "",
        "Splits and labels of `experiment=qm9_gap_full` (119,831 pool, 10,000 test, 1,000 val),"
        " `experiment=qm9_gap_features`; random labels; one process per core",
        "(`OMP_NUM_THREADS=1`). Test MAE and RMSE in eV, mean ± sample std over seeds;"
        " Spearman(|error|, std) and the recalibrated NLL against a constant std's; labels to"
        " reach the GINE's (graph only) random final MAE"
        f" ({final_mae:.4f} eV) and RMSE ({final_rmse:.4f} eV) at 2,200 labels, interpolated"
        " log-log between the counts measured. Report:"
        " [benchmarks/qm9_gap_features/](benchmarks/qm9_gap_features/summary.csv).",
        "",
        "| model | labels | seeds | MAE | RMSE | Spearman | NLL (const) | labels to GINE's "
        "final MAE / RMSE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, r in summary.iterrows():
        lines.append(
            f"| {MODELS[r['model']][0]} | {r['n_labeled']:,} | {r['seeds']} | "
            f"{r['mae']:.4f} ± {r['mae_std']:.4f} | {r['rmse']:.4f} ± {r['rmse_std']:.4f} | "
            f"{r['spearman']:.2f} | {r['nll_recal']:.3f} ({r['nll_const']:.3f}) | "
            f"{_n(r['labels_to_gine_final_mae'])} / {_n(r['labels_to_gine_final_rmse'])} |"
        )
    if strategy_rows:
        lines += [
            "",
            "The strategies on the GP (200 random labels, then 10 rounds of 200, 20,000 fresh"
            " random candidates a round), seeing the GP's posterior variance (`gp_mx`) or the"
            " validation-neighbour std (`gp_mx_local`, `loop.local_neighbours=0.05`); `weighted`:"
            " the kernel weighted by that std. Labels to a level are interpolated log-log between"
            " rounds; worst round: the largest MAE excess over random's at the same labels. The"
            " report with the learning curves: [strategies/summary.md]"
            "(benchmarks/qm9_gap_features/strategies/summary.md).",
            "",
            "| strategy | seeds | final MAE | final RMSE | labels to GINE's final MAE / RMSE |"
            " labels to random's final MAE / RMSE | worst round vs random (MAE) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *strategy_rows,
        ]
    lines += ["", "Reproduce: the commands in `scripts/bench_qm9_features.py`, then the script."]
    return "\n".join(lines)


def save_runs() -> None:
    """Copy the study's run folders (no logs, no lock) to ``OUT/runs`` (to resume elsewhere)."""
    for run in find_runs([SWEEP]):
        target = OUT / "runs" / run.relative_to(SWEEP)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(
            run,
            target,
            ignore=shutil.ignore_patterns("logs", ".lock", "*.tmp", "predictions*", "model.ckpt"),
        )


if __name__ == "__main__":
    if "--save-runs" in sys.argv:
        save_runs()
    main()
