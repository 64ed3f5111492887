"""A million-molecule pool, measured on the MOSES library of drug-like molecules.

The MOSES set ships inside the ``molsets`` wheel (``moses/dataset/data/train.csv.gz``,
1,584,663 SMILES from ZINC); it is read from the wheel as a zip file, never imported, and is
no dependency of regal_torch. Each measurement is a subcommand:

    pip download --no-deps molsets==0.3.1 -d /tmp/molsets
    python scripts/bench_scale.py data                  # labelled files, once (Crippen logP)
    python scripts/bench_scale.py cache                 # section scale-cache of BENCHMARKS.md
    python scripts/bench_scale.py round                 # section scale-round of BENCHMARKS.md
    python scripts/bench_scale.py predict               # section scale-predict of BENCHMARKS.md

``data`` writes ``moses_logp_N.csv.gz`` (columns ``smiles,logp``; the first N molecules of
the training set, labelled with RDKit's Crippen logP so that benchmark mode runs end to end)
for every size. ``cache`` featurises each file into a fresh cache (``data=molecules``'
``MoleculeDataset``) in one fresh process, then loads the cache in another and reads
random items; it records times, the cache's size, every process's peak RSS and the machine's
load (``os.getloadavg``), since other work on the machine slows the timings. ``round`` runs
one full active-learning round on each file with the command users run (``python -m
regal_torch.run data=molecules ... strategy=lcmd loop.rounds=1``, the cache built
beforehand), once in one process and, at the smallest size, again under ``trainer=ddp`` with
2 CPU processes; it records the round's train / test / predict / select seconds from
``history.csv``, the command's wall time and its peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from multiprocessing import Pool
from pathlib import Path

from benchmarks_file import write_section

SIZES = (100_000, 300_000, 1_000_000)
MOSES_MEMBER = "moses/dataset/data/train.csv.gz"
WORK = Path(tempfile.gettempdir()) / "regal_torch_bench_scale"


def moses_smiles(wheel: Path) -> Iterator[str]:
    """The SMILES of the MOSES training set, streamed from the molsets wheel."""
    with zipfile.ZipFile(wheel) as z, z.open(MOSES_MEMBER) as raw:
        lines = io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8")
        header = next(lines).strip()
        assert header == "SMILES", header
        for line in lines:
            yield line.strip()


def _logp(smiles: list[str]) -> list[str]:
    from rdkit import Chem, rdBase
    from rdkit.Chem import Crippen

    _block = rdBase.BlockLogs()  # noqa: F841
    out = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        out.append("" if mol is None else f"{Crippen.MolLogP(mol):.4f}")
    return out


def labelled_path(n: int) -> Path:
    return WORK / f"moses_logp_{n}.csv.gz"


def make_data(wheel: Path, sizes: tuple[int, ...]) -> None:
    """Writes ``moses_logp_N.csv.gz`` for every size (the first N molecules, with logP)."""
    WORK.mkdir(parents=True, exist_ok=True)
    n_max = max(sizes)
    smiles = []
    for s in moses_smiles(wheel):
        smiles.append(s)
        if len(smiles) == n_max:
            break
    start = time.perf_counter()
    step = 10_000
    with Pool(os.cpu_count()) as pool:
        parts = pool.map(_logp, [smiles[i : i + step] for i in range(0, n_max, step)])
    labels = [v for part in parts for v in part]
    print(f"logP of {n_max} molecules: {time.perf_counter() - start:.0f} s", flush=True)
    for n in sizes:
        with gzip.open(labelled_path(n), "wt", encoding="utf-8", compresslevel=6) as f:
            f.write("smiles,logp\n")
            f.writelines(f"{s},{v}\n" for s, v in zip(smiles[:n], labels[:n], strict=True))
        print(f"wrote {labelled_path(n)}", flush=True)


_CHILD = """
import json, random, resource, sys, time
from regal_torch.data.molecules import MoleculeDataset
path, cache, items = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
ds = MoleculeDataset(path, target_column="logp", cache_dir=cache)
seconds = time.perf_counter() - start
picks = random.Random(0).sample(range(len(ds)), min(items, len(ds)))
start = time.perf_counter()
atoms = sum(ds[i].x.shape[0] for i in picks)
item_us = 1e6 * (time.perf_counter() - start) / max(len(picks), 1)
own, kids = (resource.getrusage(r) for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({
    "molecules": len(ds), "seconds": seconds, "item_us": item_us,
    "cpu_main_s": own.ru_utime + own.ru_stime, "cpu_workers_s": kids.ru_utime + kids.ru_stime,
    "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    "worker_rss_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20,
}))
"""


def _child(path: Path, cache: Path, items: int) -> dict:
    load = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(cache), str(items)],
        capture_output=True,
        text=True,
        check=True,
    )
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load": load}


def measure_cache(n: int) -> dict:
    """Build (fresh cache) and load of ``moses_logp_N.csv.gz``, each in a fresh process."""
    path = labelled_path(n)
    cache = WORK / f"cache_{n}"
    shutil.rmtree(cache, ignore_errors=True)
    build = _child(path, cache, 0)
    size_gb = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**30
    load = _child(path, cache, 20_000)
    shutil.rmtree(cache, ignore_errors=True)
    row = {"n": n, "build": build, "load": load, "cache_gb": size_gb, "load_after": os.getloadavg()}
    print(json.dumps(row), flush=True)
    return row


def idle_estimate(build: dict) -> float:
    """Seconds the build would take on two idle cores: its CPU time spread over both, but at
    least the main process's own."""
    return max(build["cpu_main_s"], (build["cpu_main_s"] + build["cpu_workers_s"]) / 2)


def cache_section(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        b, ld = r["build"], r["load"]
        lines.append(
            f"| {r['n']:,} | {b['seconds']:.0f} s ({b['molecules'] / b['seconds']:,.0f}/s) "
            f"| {b['cpu_main_s']:.0f} + {b['cpu_workers_s']:.0f} s | {idle_estimate(b):.0f} s "
            f"| {r['cache_gb'] * 1024:,.0f} MB | {b['rss_gb']:.2f} / {b['worker_rss_gb']:.2f} GB "
            f"| {ld['seconds']:.2f} s | {ld['item_us']:.0f} us | {ld['rss_gb']:.2f} GB "
            f"| {b['load']:.1f} / {ld['load']:.1f} |"
        )
    table = "\n".join(lines)
    header = (
        "| molecules | build (rate) | build CPU main + workers | build on 2 idle cores (est.) "
        "| cache | build RSS main / worker | load | item | load RSS | load avg |"
    )
    big = max(rows, key=lambda r: r["n"])
    b, workers = big["build"], os.cpu_count()
    total_rss = b["rss_gb"] + workers * b["worker_rss_gb"]
    verdict = (
        f"At {big['n']:,} molecules the build took {b['seconds']:.0f} s on the shared machine "
        f"(load average {b['load']:.1f} on {workers} cores); its CPU time means about "
        f"{idle_estimate(b):.0f} s on {workers} idle cores (goal: 180 s). Peak RSS: "
        f"{b['rss_gb']:.2f} GB in the main process and at most {b['worker_rss_gb']:.2f} GB in "
        f"each worker, at most {total_rss:.2f} GB together (goal: 4 GB); loading the cache "
        f"takes {big['load']['seconds']:.2f} s and {big['load']['rss_gb']:.2f} GB."
    )
    return f"""
## A million-molecule pool: the featurisation cache

The first N molecules of the MOSES training set (drug-like, from ZINC; 21 heavy atoms on
average), labelled with Crippen logP, as `data.path=moses_logp_N.csv.gz`
(`data.target_column=logp`). Build: `MoleculeDataset` on a fresh cache folder, in a fresh
process, streaming the gzip file and featurising with `data.num_workers` = all cores. Load:
the same constructor in another fresh process (hash the file, map the cache), then 20,000
random items read (`dataset[i]`). Build CPU: CPU seconds of the main process (including its
imports) and of all featurising workers together; on two idle cores the build would take
about the larger of the main's and half the total (est.). RSS: peak resident memory of
the main process / of the largest featurising worker (a forked worker's RSS counts the pages
it shares with the main process). Load avg: the machine's 1-minute load average at the start
of the build / of the load; other jobs ran on the machine, so the times are those of a
shared machine. Goal (large pools, 2 cores): 1,000,000 molecules into the cache in at most 3
minutes, peak RSS at most 4 GB.

Machine: {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}.

{header}
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{table}

{verdict}
"""


ROUND_OPTIONS = (
    "data=molecules",
    "model=mc_dropout",  # the GINE network on the graph alone: features are measured apart
    "data.features=[]",
    "loop.local_neighbours=null",
    "data.target_column=logp",
    "data.datamodule.test_size=2000",
    "data.datamodule.val_size=1000",
    "data.datamodule.predict_batch_size=500",
    "strategy=lcmd",
    "loop.candidates=null",  # score the whole pool
    "loop.initial_size=1000",
    "loop.batch_size=200",
    "loop.rounds=1",
    "progress=false",
)
PREDICT_OPTIONS = (  # a run whose round 0 predicts the whole pool's mean and std
    *(
        o
        for o in ROUND_OPTIONS
        if not o.startswith(("strategy=", "loop.local_neighbours=", "model="))
    ),
    "strategy=uncertainty",
    "trainer.max_epochs=20",  # the model's accuracy is not what is measured
)
PREDICT_MODELS = {  # --model -> what its pool prediction computes
    "mc_dropout": "the mean and variance of 20 dropout passes, and the embedding",
    "laplace": "one deterministic pass: mean, Laplace variance and embedding",
}
PREDICT_ROWS = Path(__file__).resolve().parent.parent / "benchmarks" / "scale_predict.json"


# Runs the command given as arguments and prints the peak RSS (GB) of its largest process
# (Linux: ru_maxrss in KiB over the waited-for descendants), its only line on stdout.
_PEAK_RSS = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20)
sys.exit(code)
"""


def _measured(command: list[str], what: str) -> tuple[float, float, float]:
    """Runs ``command``; returns the load average at its start, its wall seconds and the peak
    RSS (GB) of its largest process; exits with its stderr's end if it fails."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *command], capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{what} failed:\n{out.stderr[-3000:]}")
    return load, wall, float(out.stdout.strip().splitlines()[-1])


def measure_round(n: int, ddp: bool = False) -> dict:
    """One round (train on 1,000 labels, test, predict the whole pool, pick 200 with LCMD,
    label and write them) on ``moses_logp_N.csv.gz``, through the command, its cache built
    first; ``ddp``: under ``trainer=ddp`` with 2 CPU processes."""
    path, cache = labelled_path(n), WORK / "cache_round"
    _child(path, cache, 0)  # build the cache (or find it), outside the measured command
    run_dir = WORK / f"round_{n}{'_ddp' if ddp else ''}"
    shutil.rmtree(run_dir, ignore_errors=True)
    options = [*ROUND_OPTIONS, f"data.path={path}", f"data.cache_dir={cache}"]
    if ddp:
        options += ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    command = [sys.executable, "-m", "regal_torch.run", *options, f"hydra.run.dir={run_dir}"]
    load, wall, rss = _measured(command, f"the round at {n:,} molecules")
    import pandas as pd

    first = pd.read_csv(run_dir / "history.csv").iloc[0]
    row = {
        "n": n,
        "ddp": ddp,
        "wall_s": wall,
        "rss_gb": rss,
        "load": load,
        **{k: float(first[f"seconds_{k}"]) for k in ("train", "test", "predict", "select")},
    }
    print(json.dumps(row), flush=True)
    return row


def measure_predict(n: int, model: str) -> dict:
    """The loop's pool prediction against ``python -m regal_torch.predict`` on the same file:
    a run of rounds 0 and 1 (strategy uncertainty, so round 0 predicts the mean and std of the
    whole pool as the predictions do; std: the default local variance, one deterministic pass
    with the embedding; round 1 saves the model), then the command with that model on
    ``moses_logp_N.csv.gz``, the cache built first: its wall time and peak RSS. ``model``: a
    key of :data:`PREDICT_MODELS`."""
    path, cache = labelled_path(n), WORK / "cache_round"
    _child(path, cache, 0)
    run_dir = WORK / f"predict_{model}_{n}"
    shutil.rmtree(run_dir, ignore_errors=True)
    options = [*PREDICT_OPTIONS, f"model={model}", f"data.path={path}", f"data.cache_dir={cache}"]
    command = [sys.executable, "-m", "regal_torch.run", *options, f"hydra.run.dir={run_dir}"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    import pandas as pd

    first = pd.read_csv(run_dir / "history.csv").iloc[0]
    out_file = run_dir / "predicted.csv"
    command = [
        sys.executable, "-m", "regal_torch.predict", str(run_dir), f"data.path={path}",
        f"data.cache_dir={cache}", f"out={out_file}",
    ]  # fmt: skip
    load, wall, rss = _measured(command, f"regal_torch.predict at {n:,} molecules")
    row = {
        "model": model,
        "n": n,
        "pool": n - 4000,
        "loop_predict_s": float(first["seconds_predict"]),
        "predict_wall_s": wall,
        "rss_gb": rss,
        "load": load,
    }
    print(json.dumps(row), flush=True)
    return row


def predict_section(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        loop_rate = r["pool"] / r["loop_predict_s"]
        cli_rate = r["n"] / r["predict_wall_s"]
        lines.append(
            f"| `{r.get('model', 'mc_dropout')}` | {r['n']:,} "
            f"| {r['loop_predict_s']:.0f} s ({loop_rate:,.0f}/s) "
            f"| {r['predict_wall_s']:.0f} s ({cli_rate:,.0f}/s) | {loop_rate / cli_rate:.2f}x "
            f"| {r['rss_gb']:.2f} GB | {r['load']:.1f} |"
        )
    table = "\n".join(lines)
    models = "; ".join(f"`{k}`: {v}" for k, v in PREDICT_MODELS.items())
    return f"""
## New molecules: `regal_torch.predict` against the loop's pool prediction

A run on the first N MOSES molecules (the files of the cache section), a GNN without
molecule features (`model=MODEL`) and the default local variance as its std
(`OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")}`):

```
python -m regal_torch.run {" ".join(PREDICT_OPTIONS)} model=MODEL data.path=moses_logp_N.csv.gz
```

Loop: round 0's seconds predicting the pool (N - 4,000 molecules; {models}; from
`history.csv`).
`regal_torch.predict`: the wall time of `python -m regal_torch.predict RUN
data.path=moses_logp_N.csv.gz out=FILE` on all N molecules (start-up, model load, the
cache found, prediction, the local std, intervals, the CSV written) and its peak RSS. Goal:
the command within 2x the loop's time per molecule, in at most 4 GB.

Machine: {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}.

| model | molecules | loop: predict pool | `regal_torch.predict` | slower by | peak RSS \
| load avg |
| --- | --- | --- | --- | --- | --- | --- |
{table}
"""


def round_section(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        round_s = r["train"] + r["test"] + r["predict"] + r["select"]
        lines.append(
            f"| {r['n']:,} | {'2 (DDP, gloo)' if r['ddp'] else '1'} | {r['train']:.0f} s "
            f"| {r['test']:.0f} s | {r['predict']:.0f} s | {r['select']:.1f} s "
            f"| {round_s:.0f} s | {r['wall_s']:.0f} s | {r['rss_gb']:.2f} GB | {r['load']:.1f} |"
        )
    table = "\n".join(lines)
    header = (
        "| molecules | processes | train | test | predict pool | select | round | command wall "
        "| peak RSS | load avg |"
    )
    return f"""
## A million-molecule pool: one active-learning round

One round of `python -m regal_torch.run` on the first N MOSES molecules (Crippen logP, the
files of the cache section), as users run it, with the MC-dropout GNN (no molecule
features) and the CPU trainer
(`OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")}`), the cache built beforehand:

```
python -m regal_torch.run {" ".join(ROUND_OPTIONS)} data.path=moses_logp_N.csv.gz
```

Round 0 trains on 1,000 labels, predicts test (2,000) and validation (1,000) with 10 MC
samples, predicts the whole pool (N - 4,000 molecules) in one deterministic pass (LCMD uses
the last-layer embedding) and picks 200. Columns: round 0's seconds of each phase from
`history.csv`, their sum (the round), the command's wall time (start-up, cache load, round
0, then round 1's training and test, and writing), the peak RSS of its largest process, and
the machine's load average at the start. Goal (large pools, 2 cores): the round in at most 5
minutes and peak RSS at most 4 GB at 1,000,000 molecules.

Machine: {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}.

{header}
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{table}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="write the labelled MOSES files")
    data.add_argument("--wheel", type=Path, default=None, help="the molsets 0.3.1 wheel")
    cache = sub.add_parser("cache", help="cache build and load at every size")
    predict = sub.add_parser("predict", help="regal_torch.predict against the loop")
    predict.add_argument("--model", choices=list(PREDICT_MODELS), default="mc_dropout")
    round_ = sub.add_parser("round", help="one active-learning round at every size")
    round_.add_argument(
        "--ddp",
        type=int,
        nargs="*",
        default=[SIZES[0]],
        help="sizes also run under DDP with 2 processes",
    )
    for p in (data, cache, predict, round_):
        p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    if args.command == "round":
        reproduce = "python scripts/bench_scale.py data && python scripts/bench_scale.py round"
        rows = []
        for n, ddp in [(n, False) for n in args.sizes] + [(n, True) for n in args.ddp]:
            rows.append(measure_round(n, ddp))
            write_section("scale-round", round_section(rows), reproduce=reproduce)
        return
    if args.command == "predict":
        reproduce = (
            "python scripts/bench_scale.py data && "
            "python scripts/bench_scale.py predict --model MODEL --sizes N"
        )
        # every (model, size) measured so far, so that one measured now replaces only its own
        rows = json.loads(PREDICT_ROWS.read_text()) if PREDICT_ROWS.is_file() else []
        for n in args.sizes:
            row = measure_predict(n, args.model)
            rows = [r for r in rows if (r.get("model", "mc_dropout"), r["n"]) != (args.model, n)]
            rows = sorted([*rows, row], key=lambda r: (r.get("model", "mc_dropout"), r["n"]))
            PREDICT_ROWS.write_text(json.dumps(rows, indent=1) + "\n")
            write_section("scale-predict", predict_section(rows), reproduce=reproduce)
        return
    if args.command == "data":
        wheel = args.wheel or next(Path(tempfile.gettempdir(), "molsets").glob("*.whl"), None)
        if wheel is None or not wheel.is_file():
            sys.exit("no molsets wheel: pip download --no-deps molsets==0.3.1 -d /tmp/molsets")
        make_data(wheel, tuple(args.sizes))
    else:
        reproduce = "python scripts/bench_scale.py data && python scripts/bench_scale.py cache"
        rows = []
        for n in args.sizes:  # the section is rewritten after every size
            rows.append(measure_cache(n))
            write_section("scale-cache", cache_section(rows), reproduce=reproduce)


if __name__ == "__main__":
    main()
