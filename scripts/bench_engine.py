"""``engine=ray`` against ``engine=local`` on one machine: each featurizer's throughput.

``python scripts/bench_engine.py [--molecules minimol=10000 xtb=4000] [--cpus 2]`` computes the
features of the first QM9 molecules into a fresh store with each engine, in the order local,
ray, ray, local (so a drift of the machine's load falls on both), and prints per featurizer
the molecules per second of each engine and their ratio, with Ray's start-up time apart and
the load average, as Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from regal_torch.data.qm9 import QM9Dataset
from regal_torch.engine.local import LocalEngine
from regal_torch.engine.ray_engine import RayEngine
from regal_torch.features.molecule_features import molecule_features
from regal_torch.overrides import CONFIG_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", nargs="+", default=["minimol=10000", "xtb=4000"])
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    configs = OmegaConf.load(f"{CONFIG_DIR}/data/featurizers/default.yaml")
    root = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    largest = max(int(spec.split("=")[1]) for spec in args.molecules)
    smiles = list(QM9Dataset(str(root / "qm9"), subset=largest, log=False).smiles)
    start = time.perf_counter()
    ray = RayEngine(num_cpus=args.cpus)
    ray.describe(1)  # starts Ray
    ray_start = time.perf_counter() - start
    engines = {"local": LocalEngine(args.cpus), "ray": ray}
    rows = []
    for spec in args.molecules:
        name, n = spec.split("=")
        featurizer = {name: instantiate(configs[name])}
        seconds: dict[str, list[float]] = {"local": [], "ray": []}
        for i, engine in enumerate(["local", "ray", "ray", "local"]):
            folder = root / f"{name}-{i}"
            features = molecule_features([name], featurizer, smiles[: int(n)], folder,
                                         engines[engine])  # fmt: skip
            begin = time.perf_counter()
            features.ensure(np.arange(int(n)))
            seconds[engine].append(time.perf_counter() - begin)
        local, on_ray = (int(n) / np.mean(seconds[e]) for e in ("local", "ray"))
        rows.append((name, int(n), local, on_ray))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
          f"{os.cpu_count()} cores, {args.cpus} processes or Ray CPUs; Ray started in "
          f"{ray_start:.1f} s (not counted below)")  # fmt: skip
    print("| featurizer | molecules | local mol/s | ray mol/s | ray / local |")
    print("| --- | --- | --- | --- | --- |")
    for name, n, local, on_ray in rows:
        print(f"| {name} | {n:,} | {local:.1f} | {on_ray:.1f} | {on_ray / local:.2f} |")


if __name__ == "__main__":
    main()
