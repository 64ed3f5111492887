"""Are the molecule features tuned to QM9 gap? The GP on MiniMol + GFN2-xTB against the
GINE at 1,000 random labels on two other QM9 targets and on a non-QM9 set, into
benchmarks/feature_targets/ and the ``feature-targets`` section of BENCHMARKS.md.

- QM9 ``mu`` (dipole moment, D) and ``cv`` (heat capacity, cal/(mol K)): neither is among
  MiniMol's pretraining tasks (its DFT labels are PCQM4M's HOMO-LUMO gaps); all of QM9 with the
  splits of experiment=qm9_gap_full;
- 5,000 drug-like molecules of the MOSES test set (the ``molsets`` 0.3.1 wheel), labelled with
  RDKit's Crippen logP (a property with no DFT in it), 1,000 test and 500 val molecules.

    pip download --no-deps molsets==0.3.1 -d /tmp/molsets
    python scripts/bench_feature_targets.py data          # writes /tmp/moses5k.csv
    # then the four sweeps (one process per core, OMP_NUM_THREADS=1):
    python -m regal_torch.run --multirun experiment=qm9_gap_features data.target=mu,cv \\
        loop.rounds=0 loop.initial_size=1000 predict.outputs=false \\
        hydra.sweep.dir=multirun/feature_targets 'hydra.sweep.subdir=gp/${data.target}/seed${seed}'
    python -m regal_torch.run --multirun experiment=qm9_gap_features data.target=mu,cv \\
        loop.rounds=0 loop.initial_size=1000 predict.outputs=false model=mc_dropout \\
        model.mc_samples=10 'data.features=[]' hydra.sweep.dir=multirun/feature_targets \\
        'hydra.sweep.subdir=gine/${data.target}/seed${seed}'
    M="data=molecules data.path=/tmp/moses5k.csv data.target_column=logp \\
       data.datamodule.test_size=1000 data.datamodule.val_size=500 loop.rounds=0 \\
       loop.initial_size=1000 trainer.max_epochs=60 seed=0,1,2 predict.outputs=false \\
       hydra.sweep.dir=multirun/feature_targets"
    python -m regal_torch.run --multirun $M model=gp 'data.features=[minimol,xtb]' \\
        'hydra.sweep.subdir=gp/moses_logp/seed${seed}'
    python -m regal_torch.run --multirun $M model=mc_dropout model.mc_samples=10 \\
        'data.features=[]' 'hydra.sweep.subdir=gine/moses_logp/seed${seed}'
    python scripts/bench_feature_targets.py report
"""

from __future__ import annotations

import gzip
import random
import sys
import zipfile
from pathlib import Path

import pandas as pd

from regal_torch.report.runs import find_runs, read_run

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "multirun" / "feature_targets"
OUT = ROOT / "benchmarks" / "feature_targets"
TARGETS = {"mu": "QM9 mu (D)", "cv": "QM9 cv (cal/(mol K))", "moses_logp": "MOSES Crippen logP"}
MODELS = {"gine": "GINE MC-dropout", "gp": "GP on MiniMol + xTB + Tanimoto"}


def make_data(wheel_dir: Path = Path("/tmp/molsets"), out: Path = Path("/tmp/moses5k.csv")) -> None:
    """5,000 molecules drawn (seed 0) from the MOSES test set, with Crippen logP."""
    from rdkit import Chem
    from rdkit.Chem import Crippen

    wheel = next(wheel_dir.glob("molsets-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith("dataset/data/test.csv.gz"))
        lines = gzip.decompress(z.read(name)).decode().splitlines()[1:]
    random.seed(0)
    with open(out, "w") as f:
        f.write("smiles,logp\n")
        for line in random.sample(lines, 5000):
            smiles = line.split(",")[0]
            f.write(f"{smiles},{Crippen.MolLogP(Chem.MolFromSmiles(smiles)):.4f}\n")


def report() -> None:
    records = []
    for model in MODELS:
        for target in TARGETS:
            folder = SWEEP / model / target
            for path in find_runs([folder]) if folder.exists() else []:
                h = read_run(path).history.iloc[-1]
                records.append({"model": model, "target": target, "mae": h["test_mae"],
                                "rmse": h["test_rmse"], "n_labeled": h["n_labeled"]})  # fmt: skip
    frame = pd.DataFrame(records)
    OUT.mkdir(parents=True, exist_ok=True)
    summary = frame.groupby(["target", "model"]).agg(
        seeds=("mae", "size"), mae=("mae", "mean"), mae_std=("mae", "std"),
        rmse=("rmse", "mean"), rmse_std=("rmse", "std"),
    ).reset_index()  # fmt: skip
    summary.to_csv(OUT / "summary.csv", index=False)
    lines = [
        "### Other targets: are the features tuned to QM9 gap?",
        "",
        "1,000 random labels, one fit per seed; QM9: all of it with `experiment=qm9_gap_full`'s"
        " splits (10,000 test); MOSES: 5,000 drug-like molecules, 1,000 test, 500 val. Test"
        " MAE and RMSE in the target's unit, mean ± std over seeds; the GP's MAE relative to"
        " the GINE's. Report:"
        " [benchmarks/feature_targets/](benchmarks/feature_targets/summary.csv).",
        "",
        "| target | model | seeds | MAE | RMSE | MAE vs GINE |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for target in TARGETS:
        part = summary[summary["target"] == target].set_index("model")
        for model in MODELS:
            if model not in part.index:
                continue
            r = part.loc[model]
            ratio = ""
            if model == "gp" and "gine" in part.index:
                ratio = f"{100 * (r['mae'] / part.loc['gine', 'mae'] - 1):+.0f}%"
            lines.append(
                f"| {TARGETS[target]} | {MODELS[model]} | {r['seeds']} | "
                f"{r['mae']:.4f} ± {r['mae_std']:.4f} | {r['rmse']:.4f} ± {r['rmse_std']:.4f} |"
                f" {ratio} |"
            )
    lines += ["", "Reproduce: the commands in `scripts/bench_feature_targets.py`."]
    write_section("feature-targets", "\n".join(lines))


if __name__ == "__main__":
    make_data() if sys.argv[1:2] == ["data"] else report()
