"""Which uncertainty has signal on all of QM9 gap? Reported into benchmarks/qm9_gap_uncertainty/
and the ``qm9-uncertainty`` section of BENCHMARKS.md.

It reads the histories of runs at 200, 1,000 and 2,200 random labels (3 seeds each), on the
splits of experiment=qm9_gap_full (10,000 test, 1,000 val):

- GINE MC-dropout without features: the full-scale study's random runs
  (``benchmarks/qm9_gap_full/runs``);
- GINE MC-dropout with MiniMol, and with MiniMol + xTB (Delta): the molecule-features study's
  single fits (``multirun/qm9_gap_features/gine_m``, ``gine_mx_delta``);
- the networks on MiniMol + xTB (Delta), one fit at each label count, each with its own
  uncertainty and the validation-neighbour (local) variance on the same model
  (``loop.local_neighbours=0.05``: 50 of the 1,000 validation molecules), for MODEL in
  mc_dropout (10 passes), ensemble (5 members), mean_variance (beta-NLL head), laplace
  (last-layer Laplace), evidential (deep evidential regression) and dkl (deep-kernel GP)
  (the ensemble's folder is ``ens_mx_delta``; mc_dropout adds ``model.mc_samples=10``):

    python -m regal_torch.run --multirun experiment=qm9_gap_features model=MODEL \\
        loop.rounds=0 loop.initial_size=200,1000,2200 loop.local_neighbours=0.05 \\
        model.baseline=xtb_gap predict.outputs=false \\
        'hydra.sweep.subdir=MODEL_mx_delta/n${loop.initial_size}/seed${seed}'

  and for the mean-variance head and evidential regression the same with
  ``loop.local_neighbours=null`` into ``MODEL_mx_delta_own`` (the intervals on their own std;
  mc_dropout's own std is ``gine_mx_delta``'s);
- the GP on MiniMol + xTB + the Tanimoto kernel: its posterior variance (one factor fitted on
  val) from ``gp_mx/random``, and the local variance from ``gp_mx_local/random`` (the same
  models: random picks do not depend on the uncertainty):

    python -m regal_torch.run --multirun experiment=qm9_gap_features loop.local_neighbours=0.05 \\
        'hydra.sweep.subdir=gp_mx_local/${hydra:runtime.choices.strategy}/seed${seed}' \\
        strategy=random,uncertainty,covariance

For each: Spearman(|error|, std) and its ceiling (the mean Spearman over 20 draws of errors
e ~ N(0, s^2) with s the std itself: what a perfectly right std of that spread would reach;
from ``history.csv`` where the run records it, else from the run's saved model), the
recalibrated test NLL against a constant std's, the miscalibration area, the 90% conformal
interval's coverage and mean width against the constant-width interval's (the intervals use
the std a run chose: the local one where ``loop.local_neighbours`` is set), and the seconds a
round spends training and predicting test and val.

    python scripts/bench_qm9_uncertainty.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf

from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import PredictionRequest
from regal_torch.outputs.model_file import load_model
from regal_torch.report.runs import find_runs, read_run
from regal_torch.run import quiet_trainer
from regal_torch.uncertainty.calibration import spearman_ceiling
from regal_torch.uncertainty.local_calibration import NeighbourCalibration

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "multirun" / "qm9_gap_features"
OUT = ROOT / "benchmarks" / "qm9_gap_uncertainty"
POINTS = (200, 1000, 2200)
COLUMNS = ("mae", "rmse", "spearman", "nll", "nll_const", "miscal", "test_coverage",
           "test_interval_width", "test_interval_width_const", "seconds")  # fmt: skip
# name -> (what, runs folder, which std: "own" or "local")
SOURCES = {
    "mc_dropout": ("GINE MC-dropout (10 passes)", ROOT / "benchmarks/qm9_gap_full/runs", "own"),
    "mc_dropout_minimol": ("GINE + MiniMol, MC-dropout", SWEEP / "gine_m", "own"),
}
NETWORKS = {  # the networks on MiniMol + xTB (Delta): name -> (what, own std's folder, local's)
    "mc_dropout_mx": ("MC-dropout (10 passes)", "gine_mx_delta", "mc_dropout_mx_delta"),
    "ensemble_mx": ("deep ensemble (5 members)", "ens_mx_delta", "ens_mx_delta"),
    "mean_variance_mx": (
        "mean-variance head (beta-NLL, beta 0.5)",
        "mean_variance_mx_delta_own",
        "mean_variance_mx_delta",
    ),
    "laplace_mx": (
        "last-layer Laplace (evidence-fitted precisions)",
        "laplace_mx_delta",
        "laplace_mx_delta",
    ),
    "evidential_mx": (
        "deep evidential regression (lambda 0.01)",
        "evidential_mx_delta_own",
        "evidential_mx_delta",
    ),
    "dkl_mx": ("deep-kernel GP", "dkl_mx_delta", "dkl_mx_delta"),
}
for _name, (_what, _own, _local) in NETWORKS.items():
    _what = f"GINE + MiniMol + xTB (Delta), {_what}"
    SOURCES[_name] = (_what, SWEEP / _own, "own")
    SOURCES[f"{_name}_local"] = (f"{_what}: local variance", SWEEP / _local, "local")
SOURCES["gp"] = ("GP posterior variance (MiniMol + xTB + Tanimoto)", SWEEP / "gp_mx/random", "own")
SOURCES["gp_local"] = (
    "validation-neighbour variance on the GP (k = 5% of val)",
    SWEEP / "gp_mx_local/random",
    "local",
)


def rows(name: str) -> pd.DataFrame:
    what, folder, std = SOURCES[name]
    paths = (
        [p for p in find_runs([folder]) if read_run(p).strategy == "random"]
        if folder.exists()
        else []
    )
    frames = []
    for path in paths:
        h = read_run(path).history
        chose_local = OmegaConf.load(path / ".hydra" / "config.yaml").loop.local_neighbours
        if std == "local" and chose_local is None:
            continue
        local = "_local" if std == "local" else ""
        frame = pd.DataFrame(
            {
                "n_labeled": h["n_labeled"],
                "mae": h["test_mae"],
                "rmse": h["test_rmse"],
                "spearman": h[f"test_spearman{local}"],
                "nll": h["test_nll_local" if local else "test_nll_recal"],
                "nll_const": h["test_nll_const"],
                "miscal": h["test_miscal_local" if local else "test_miscal_recal"],
                "seconds": h["seconds_train"] + h["seconds_test"],
            }
        )
        ceiling_column = f"test_spearman_ceiling{local}"
        frame["ceiling"] = h[ceiling_column] if ceiling_column in h else np.nan
        # a run's intervals use the std it chose
        intervals = (chose_local is not None) == (std == "local")
        for column in ("test_coverage", "test_interval_width", "test_interval_width_const"):
            frame[column] = h[column] if intervals and column in h else np.nan
        frame["path"] = str(path)
        frames.append(frame)
    return pd.concat(frames) if frames else pd.DataFrame()


def final_ceilings(paths: list[str], local: bool) -> float:
    """The mean Spearman ceiling at the runs' final round, from their saved models."""
    found = []
    for path in paths:
        if not (Path(path) / "model.ckpt").is_file():
            continue
        cfg = OmegaConf.load(Path(path) / ".hydra" / "config.yaml")
        model, extras = load_model(Path(path) / "model.ckpt")
        dataset = instantiate(cfg.data.dataset)
        dm = instantiate(cfg.data.datamodule, dataset=dataset)
        request = PredictionRequest(frozenset(("mean", "var", "embedding")))
        test = predict(quiet_trainer(1), model, dm.loader(dm.test), request)
        calibration = extras["calibration"]
        if local:
            var = NeighbourCalibration.from_state(calibration.local).variance(test)
        else:
            var = test.var
        found.append(spearman_ceiling(var))
    return float(np.mean(found)) if found else float("nan")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    table = []
    for name, (what, _, std) in SOURCES.items():
        frame = rows(name)
        if frame.empty:
            continue
        for n in POINTS:
            at = frame[frame["n_labeled"] == n]
            if at.empty:
                continue
            record = {"uncertainty": name, "what": what, "n_labeled": n, "seeds": len(at)}
            for column in (*COLUMNS, "ceiling"):
                record[column] = at[column].mean()
            if np.isnan(record["ceiling"]) and n == 2200:  # runs before the column: the model's
                record["ceiling"] = final_ceilings(at["path"].tolist(), std == "local")
            table.append(record)
    summary = pd.DataFrame(table)
    summary.to_csv(OUT / "summary.csv", index=False)
    lines = [
        "### Which uncertainty has signal on all of QM9 gap (random labels, 3 seeds)",
        "",
        "Test set of 10,000, validation 1,000 (`experiment=qm9_gap_full`'s splits); NLL after"
        " one factor fitted on val (the local variance: its own), next to a constant std's;"
        " intervals: split-conformal at 90% on val, mean width against the constant-width"
        " interval's (empty where the runs predate the intervals); seconds: training plus test"
        " and val prediction per round, with other studies on the same 2 cores (load 3-5), so"
        " compare them only roughly. Report:"
        " [benchmarks/qm9_gap_uncertainty/](benchmarks/qm9_gap_uncertainty/summary.csv).",
        "",
        "| uncertainty | labels | seeds | MAE / RMSE | Spearman (ceiling) | NLL (const) |"
        " miscal. area | 90% coverage | width (const) | s per round |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, r in summary.iterrows():
        ceil = "" if np.isnan(r["ceiling"]) else f" ({r['ceiling']:.2f})"
        cover = "" if np.isnan(r["test_coverage"]) else f"{100 * r['test_coverage']:.1f}%"
        width = (
            ""
            if np.isnan(r["test_interval_width"])
            else f"{r['test_interval_width']:.3f} ({r['test_interval_width_const']:.3f})"
        )
        lines.append(
            f"| {r['what']} | {r['n_labeled']:,} | {r['seeds']} | "
            f"{r['mae']:.3f} / {r['rmse']:.3f} | {r['spearman']:.3f}{ceil} | "
            f"{r['nll']:.3f} ({r['nll_const']:.3f}) | {r['miscal']:.3f} | {cover} | {width} | "
            f"{r['seconds']:.0f} |"
        )
    lines += ["", "Reproduce: the commands in `scripts/bench_qm9_uncertainty.py`, then the script."]
    write_section("qm9-uncertainty", "\n".join(lines))


if __name__ == "__main__":
    main()
