"""Report the 20,000-pool QM9 gap study into benchmarks/qm9_gap/ and BENCHMARKS.md.

The study itself is one command (2 CPU cores: about 8 minutes per run, 36 runs; re-running it
resumes unfinished runs):

    python -m regal_torch.run --multirun experiment=qm9_gap_benchmark

the same with the deep-kernel GP for a few strategies (the ``dkl`` study):

    python -m regal_torch.run --multirun experiment=qm9_gap_benchmark model=dkl \\
        "~model.mc_samples" strategy=random,covariance,uncertainty,lcmd,bait seed=0 \\
        hydra.sweep.dir=multirun/qm9_gap_dkl

(sweep folders ``qm9_gap_dkl``, ``_b``, ``_c``, ``_d`` hold its strategy and seed batches), the
DKL study with batches of 100 (``dkl_b100``):

    python -m regal_torch.run --multirun experiment=qm9_gap_benchmark model=dkl \\
        "~model.mc_samples" loop.batch_size=100 loop.rounds=20 strategy=random,lcmd seed=0,1 \\
        hydra.sweep.dir=multirun/qm9_gap_dkl_b100

the variance-driven strategies on the local variance (``local``; random from the main study):

    python -m regal_torch.run --multirun experiment=qm9_gap_benchmark loop.local_neighbours=20 \\
        strategy=uncertainty,covariance seed=0,1 hydra.sweep.dir=multirun/qm9_gap_local

and the side-by-side runs of bmdal-reg's LCMD and scikit-activeml's GSy (``bench`` extra):

    PYTHONPATH=scripts/peers python -m regal_torch.run --multirun experiment=qm9_gap_benchmark \\
        "hydra.searchpath=[file://scripts/peers]" strategy=bmdal_lcmd,skactiveml_gsy seed=0

This script runs ``regal_torch.report`` over the sweep's finished runs into
``benchmarks/qm9_gap/`` (plots, ``summary.csv``, ``summary.md``) and copies the summary
tables, with the runs per strategy, into the ``qm9-study`` section of BENCHMARKS.md.

    python scripts/bench_qm9_study.py [main|dkl|dkl_b100|local|full|levers]

The full-scale study (``full``) is one command too (about 15-25 minutes per run on
one core; 21 runs):

    python -m regal_torch.run --multirun experiment=qm9_gap_full

The levers on all of QM9 (``levers``) are LCMD runs of that experiment with one
option changed, in their own sweep folder, for example:

    python -m regal_torch.run --multirun experiment=qm9_gap_full strategy=lcmd seed=0,1,2 \
        loop.candidates=5000 hydra.sweep.dir=multirun/qm9_full_levers \
        'hydra.sweep.subdir=candidates5000_seed${seed}'

The run folders of both, less Lightning's logs, are kept in the repository under
``benchmarks/qm9_gap_full/runs/`` and ``benchmarks/qm9_full_levers/runs/`` so that the
studies resume on another machine: copy them to their sweep folder (``multirun/qm9_gap_full/``,
``multirun/qm9_full_levers/``) and re-run the commands (``--save-runs`` copies them back).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd

from regal_torch.report.cli import report
from regal_torch.report.runs import find_runs, read_run
from regal_torch.report.table import summary_markdown

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DKL = "deep-kernel GP (GINE encoder + exact GP), 60 epochs (`model=dkl`)"
SMALL = (
    "`python -m regal_torch.run --multirun experiment=qm9_gap_benchmark` (26,000 QM9 molecules: "
    "20,000 pool, 5,000 test, 1,000 val"
)
FULL = (
    "`python -m regal_torch.run --multirun experiment=qm9_gap_full` (all 130,831 QM9 "
    "molecules: 119,831 pool, 10,000 test, 1,000 val"
)
# name -> (sweep folders, output folder, BENCHMARKS.md section, setting described)
STUDIES = {
    "full": (
        ["multirun/qm9_gap_full"],
        "benchmarks/qm9_gap_full",
        "qm9-study-full",
        "10 rounds of 200; GINE MC-dropout, 60 epochs, 10 samples; `_grad`: the strategy on "
        "the gradient kernel of all layers, sketched to 512 dimensions",
    ),
    "levers": (
        ["multirun/qm9_full_levers"],
        "benchmarks/qm9_full_levers",
        "qm9-study-levers",
        "10 rounds of 200; GINE MC-dropout, 60 epochs, 10 samples; LCMD with each lever "
        "(`loop.candidates`, `loop/initial_strategy=kmeanspp loop.initial_features=fingerprint`);"
        " random: the full-scale study's runs (LCMD on the whole pool: its table above)",
    ),
    "main": (
        ["multirun/qm9_gap_benchmark"],
        "benchmarks/qm9_gap",
        "qm9-study",
        "10 rounds of 200; GINE MC-dropout, 60 epochs, 10 samples",
    ),
    "dkl": (
        [f"multirun/qm9_gap_dkl{suffix}" for suffix in ("", "_b", "_c", "_d")],
        "benchmarks/qm9_gap_dkl",
        "qm9-study-dkl",
        f"10 rounds of 200; {DKL}",
    ),
    "dkl_b100": (
        ["multirun/qm9_gap_dkl_b100"],
        "benchmarks/qm9_gap_dkl_b100",
        "qm9-study-dkl-b100",
        f"20 rounds of 100 (`loop.batch_size=100 loop.rounds=20`); {DKL}",
    ),
    "local": (
        ["multirun/qm9_gap_local"],
        "benchmarks/qm9_gap_local",
        "qm9-study-local",
        "10 rounds of 200; GINE MC-dropout, 60 epochs, 10 samples; strategies see the local"
        " variance (`loop.local_neighbours=20`); random: the main study's runs",
    ),
}
# Runs of other sweeps a study reports too: name -> (sweep folder, strategies).
BORROWED = {
    "local": ("multirun/qm9_gap_benchmark", ("random",)),
    "levers": ("multirun/qm9_gap_full", ("random",)),
}


def save_runs(sweep: Path, out: Path) -> None:
    """Copy every run folder of ``sweep`` (state, tables, ``.hydra/``; no ``logs/``, no lock)
    to ``out/runs/``, so the study can be resumed elsewhere."""
    for run in find_runs([sweep]):
        target = out / "runs" / run.name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(run, target, ignore=shutil.ignore_patterns("logs", ".lock", "*.tmp"))


def main(study: str) -> None:
    sweeps, out_name, section, setting = STUDIES[study]
    command = FULL if study in ("full", "levers") else SMALL
    out = ROOT / out_name
    paths = find_runs([ROOT / sweep for sweep in sweeps if (ROOT / sweep).exists()])
    if study in BORROWED:
        sweep, strategies = BORROWED[study]
        paths += [p for p in find_runs([ROOT / sweep]) if read_run(p).strategy in strategies]
    rounds = {path: len(read_run(path).history) for path in paths}
    full = max(rounds.values())
    finished = [path for path in paths if rounds[path] == full]
    report(finished, out)  # unfinished runs would cut their group's curve short
    unfinished = sorted(
        f"{path.name.split('experiment=')[-1].split(',', 1)[-1]} ({rounds[path]} rounds)"
        for path in paths
        if rounds[path] < full
    )
    done = pd.DataFrame({"strategy": [read_run(p).strategy for p in finished]})
    status = done.groupby("strategy").size()
    table = pd.read_csv(out / "summary.csv")
    lines = [
        f"## QM9 gap active-learning study ({study}): the measured tables",
        "",
        f"{command}; 200 random labels, then",
        f"{setting}; one run per strategy and seed on one",
        f"pinned CPU core; sweep folders {', '.join(sweeps)}), reported by",
        f"`python -m regal_torch.report` into [{out_name}/]({out_name}/): "
        f"[learning curves]({out_name}/learning_curves.png), "
        f"[calibration]({out_name}/calibration.png), "
        f"[summary.csv]({out_name}/summary.csv).",
        "",
        f"Finished runs ({full} rounds) reported, per strategy: "
        + ", ".join(f"{s} {n}" for s, n in status.items())
        + f". Still running or queued when this was written: {', '.join(unfinished) or 'none'}.",
        "",
        summary_markdown(table, "eV"),
        f"![learning curves]({out_name}/learning_curves.png)",
        "",
        f"Reproduce: the commands above, then `python scripts/bench_qm9_study.py {study}`.",
    ]
    write_section(section, "\n".join(lines))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--save-runs"]
    name = args[0] if args else "main"
    if "--save-runs" in sys.argv:
        sweeps, out_name, *_ = STUDIES[name]
        for sweep in sweeps:
            save_runs(ROOT / sweep, ROOT / out_name)
    main(name)
