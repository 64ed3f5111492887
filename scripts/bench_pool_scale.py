"""Every strategy on a pool of a million molecules: seconds and peak memory; and what streamed
pool prediction holds. Writes the ``pool-scale`` section of BENCHMARKS.md.

Each measurement runs in a fresh process (peak resident memory, ``VmHWM``, is per process and
never goes down), on one thread, three at a time. A strategy gets the pool prediction it asks
for (:meth:`Strategy.request`), made up: ``--pool`` rows (default 1,000,000) of 128 features
(embedding, or gradients for ``kernel=grad``) drawn as a Gaussian mixture on a low-rank
subspace (as in ``scripts/bench_strategies.py``), 20 MC samples where it asks for uncertainty,
float32, or float16 features with ``strategy.half_features=true``; the labeled set's
prediction over 1,000 rows, and ``k = 200`` (20 for the 512-dimensional rows). The peak is that
of the whole process: imports, the prediction and the selection.

Streamed prediction: :func:`regal_torch.models.predict_rows.predict` with a stand-in model whose
``predict_step`` computes 128 features from each row's index (cheap, so the cost measured is
that of keeping rows), against what it did before (``trainer.predict``'s list of every batch,
then a concatenation).

    python scripts/bench_pool_scale.py [--pool N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

DIM, LABELED, K, SAMPLES = 128, 1_000, 200, 20
# One thread per process, three processes at a time: on 2 busy cores, OpenMP threads that wait
# for each other slow a selection down 5-10x.
THREADS, CONCURRENT = 1, 3
PREDICTIONS = ("before", "float32", "half")
# (row name, strategy config, overrides, feature dimension, k). Peak memory does not depend on
# k (the per-pick temporaries are [N] vectors), so the 512-dimensional rows pick fewer.
RUNS = [
    (stem, stem, [], DIM, K)
    for stem in sorted(p.stem for p in (Path(__file__).parents[1] / "configs/strategy").iterdir())
] + [
    ("covariance, source=embedding", "covariance", ["strategy.source=embedding"], DIM, K),
    ("lcmd, half_features", "lcmd", ["strategy.half_features=true"], DIM, K),
    ("lcmd_grad, sketch 512", "lcmd_grad", [], 512, 20),
    ("lcmd_grad, sketch 512, half_features", "lcmd_grad", ["strategy.half_features=true"], 512, 20),
]


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (``VmHWM``), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def features(n: int, dim: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """``[n, dim]`` mixture features (module docstring), made in blocks (no full-size
    temporary)."""
    g = torch.Generator().manual_seed(seed)
    centres = 2 * torch.randn(20, dim, generator=g)
    basis = torch.randn(16, dim, generator=g) / 4
    out = torch.empty(n, dim, dtype=dtype)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        block = centres[torch.randint(20, (m,), generator=g)]
        block += torch.randn(m, 16, generator=g) @ basis
        block += 0.1 * torch.randn(m, dim, generator=g)
        out[start : start + m] = block
    return out


def made_up_prediction(request, n: int, dim: int, seed: int):
    """The prediction an MC-dropout model gives for ``request``, over ``n`` made-up rows."""
    from regal_torch.models.prediction import Prediction

    g = torch.Generator().manual_seed(seed)
    dtype = torch.float16 if request.half_features else torch.float32
    parts = {"mean": torch.randn(n, generator=g)}
    if request.uncertainty:
        samples = parts["mean"] + 0.1 * torch.randn(SAMPLES, n, generator=g)
        parts["var"] = samples.var(0)
        if request.wants("samples") or request.wants("covariance"):
            parts["samples"] = samples
    for name in ("embedding", "gradients"):
        if request.wants(name):
            parts[name] = features(n, dim, seed + 1, dtype)
    return Prediction(**parts)


def one_strategy(config: str, overrides: list[str], pool: int, dim: int, k: int) -> dict:
    """Seconds and peak memory of one selection (run in its own process)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from regal_torch.run import CONFIG_DIR
    from regal_torch.strategies.base import SelectionContext

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"strategy={config}", *overrides])
    strategy = instantiate(cfg.strategy)
    request = strategy.request()
    base = peak_rss_mb()
    on_pool = on_labeled = None
    if request is not None:
        on_pool = made_up_prediction(request, pool, dim, 0)
        on_labeled = made_up_prediction(request, LABELED, dim, 1)
    context = SelectionContext(
        pool=torch.arange(pool),
        labeled=torch.arange(pool, pool + LABELED),
        generator=torch.Generator().manual_seed(0),
        labeled_prediction=on_labeled,
        labeled_targets=torch.randn(LABELED, generator=torch.Generator().manual_seed(2)),
    )
    data = peak_rss_mb()
    start = time.perf_counter()
    strategy.select(on_pool, k, context)
    return {
        "seconds": time.perf_counter() - start,
        "imports_mb": base,
        "data_mb": data,
        "peak_mb": peak_rss_mb(),
    }


def one_prediction(mode: str, pool: int) -> dict:
    """Seconds and peak memory of one pool prediction (run in its own process)."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from regal_torch.models.predict_rows import predict
    from regal_torch.models.prediction import Prediction, PredictionRequest
    from regal_torch.run import quiet_trainer

    class IndexFeatures(pl.LightningModule):
        """Stand-in model: mean and 128 features computed from each row's index."""

        prediction_request = PredictionRequest()

        def predict_step(self, batch, batch_idx: int = 0) -> Prediction:
            x = torch.sin(batch[0][:, None].float() * torch.linspace(0.001, 1, DIM))
            return Prediction(mean=x.sum(1), embedding=x)

    loader = DataLoader(TensorDataset(torch.arange(pool)), batch_size=4096)
    trainer, model = quiet_trainer(1), IndexFeatures()
    base = peak_rss_mb()
    start = time.perf_counter()
    if mode == "before":
        parts = trainer.predict(model, loader)
        Prediction(
            mean=torch.cat([p.mean for p in parts]),
            embedding=torch.cat([p.embedding for p in parts]),
        )
    else:
        request = PredictionRequest(frozenset({"embedding"}), half_features=mode == "half")
        predict(trainer, model, loader, request)
    return {"seconds": time.perf_counter() - start, "imports_mb": base, "peak_mb": peak_rss_mb()}


def measure(args: list[str]) -> dict:
    """Run this script with ``args`` in a fresh process; its JSON answer."""
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    ).stdout
    print(*args, out.strip().splitlines()[-1], flush=True)
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)  # CONFIG DIM K OVERRIDES...
    parser.add_argument("--predict", help=argparse.SUPPRESS)  # before | float32 | half
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    if args.one:
        config, dim, k, *overrides = args.one
        print(json.dumps(one_strategy(config, overrides, args.pool, int(dim), int(k))))
        return
    if args.predict:
        print(json.dumps(one_prediction(args.predict, args.pool)))
        return
    load = [os.getloadavg()[0]]
    pool = ["--pool", str(args.pool)]
    jobs = [[*pool, "--one", config, str(dim), str(k), *more] for _, config, more, dim, k in RUNS]
    jobs += [[*pool, "--predict", mode] for mode in PREDICTIONS]
    with ThreadPoolExecutor(CONCURRENT) as executor:
        results = list(executor.map(measure, jobs))
    load.append(os.getloadavg()[0])
    strategies = list(zip(RUNS, results, strict=False))
    predictions = list(zip(PREDICTIONS, results[len(RUNS) :], strict=True))
    sys.path.insert(0, str(Path(__file__).parent))
    from benchmarks_file import write_section

    write_section(
        "pool-scale",
        report(args.pool, strategies, predictions, load),
        reproduce="python scripts/bench_pool_scale.py",
    )


def report(pool: int, strategies: list, predictions: list, load: list[float]) -> str:
    lines = [
        "## A million-molecule pool: every strategy, and streamed pool prediction",
        "",
        f"Pool of {pool:,} made-up predictions ({DIM} features unless named, float32 unless "
        f"`half_features`), {LABELED:,} labeled; one fresh process per row, "
        f"{THREADS} thread each, {CONCURRENT} at a time; torch {torch.__version__}. 1-minute "
        f"load average {load[0]:.1f} at the start and {load[1]:.1f} at the end on 2 cores "
        "(other jobs running), so times are slower than on an idle machine. Peak: the "
        "process's peak resident memory (`VmHWM`), imports included; prediction: what making "
        "the made-up pool and labeled predictions added (their own temporaries included); "
        "selection: what the strategy adds on top. Goal: peak at most 4,096 MB.",
        "",
        "| strategy | k | seconds | peak (MB) | imports (MB) | prediction (MB) | selection (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (name, *_, k), r in strategies:
        lines.append(
            f"| {name} | {k} | {r['seconds']:.1f} | {r['peak_mb']:,.0f} | {r['imports_mb']:,.0f} | "
            f"{r['data_mb'] - r['imports_mb']:,.0f} | {r['peak_mb'] - r['data_mb']:,.0f} |"
        )
    (top, *_), worst = max(strategies, key=lambda row: row[1]["peak_mb"])
    over = [name for (name, *_), r in strategies if r["peak_mb"] > 4096]
    lines += [
        "",
        f"Largest peak: {worst['peak_mb']:,.0f} MB ({top}); "
        + (f"over the goal: {', '.join(over)}." if over else "every strategy is within the goal."),
    ]
    names = {
        "before": "before: `trainer.predict`'s list, then concatenated",
        "float32": "`predict`, streamed into buffers",
        "half": "`predict`, streamed, `half_features`",
    }
    lines += [
        "",
        f"Pool prediction of {pool:,} rows (mean and {DIM} features, batches of 4,096) by a "
        "stand-in model that computes its features from the row index, so only the cost of "
        "keeping rows is measured:",
        "",
        "| how | seconds | peak (MB) | above imports (MB) |",
        "| --- | --- | --- | --- |",
    ]
    for mode, r in predictions:
        lines.append(
            f"| {names[mode]} | {r['seconds']:.1f} | {r['peak_mb']:,.0f} | "
            f"{r['peak_mb'] - r['imports_mb']:,.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
