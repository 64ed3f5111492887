"""The per-molecule feature store: a larger QM9 subset after a smaller one computes only the
new molecules (issue goal: ``data.subset=12000`` after ``data.subset=10000`` computes 2,000).

``python scripts/bench_feature_store.py [--small 10000] [--large 12000] [--features minimol xtb]``
builds both subsets in a fresh folder, reads every molecule's features (as a run that writes
predictions of every molecule does) and prints, per subset, the molecules computed and the
seconds, with the load average, as a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from regal_torch.data.qm9 import QM9Dataset
from regal_torch.overrides import CONFIG_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10000)
    parser.add_argument("--large", type=int, default=12000)
    parser.add_argument("--features", nargs="+", default=["minimol", "xtb"])
    args = parser.parse_args()
    configs = OmegaConf.load(f"{CONFIG_DIR}/data/featurizers/default.yaml")
    featurizers = {name: instantiate(configs[name]) for name in args.features}
    root = tempfile.mkdtemp(prefix="feature_store_")
    rows = []
    for n in (args.small, args.large):
        dataset = QM9Dataset(f"{root}/qm9", subset=n, features=args.features,
                             featurizers=featurizers, log=False)  # fmt: skip
        start = time.perf_counter()
        computed = dataset.molecule_features.ensure(np.arange(n))
        rows.append((n, computed, time.perf_counter() - start))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
          f"{os.cpu_count()} cores, features {args.features}")  # fmt: skip
    print("| data.subset | molecules computed | seconds |\n| --- | --- | --- |")
    for n, computed, seconds in rows:
        print(f"| {n:,} | {computed:,} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
