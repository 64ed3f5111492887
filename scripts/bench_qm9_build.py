"""Time building the full QM9 cache from qm9pack, then loading it; record in BENCHMARKS.md.

Builds into a fresh temporary root (so nothing cached is reused), times the constructor,
then times loading the cache in a fresh Python process (import time excluded) and by
re-instantiation in this process, and writes the ``qm9-build`` section of BENCHMARKS.md.

    python scripts/bench_qm9_build.py
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks_file import write_section

from regal_torch.cores import available_cpus
from regal_torch.data.qm9 import QM9Dataset

_LOAD = """
import json, sys, time
from regal_torch.data.qm9 import QM9Dataset
start = time.perf_counter()
ds = QM9Dataset(sys.argv[1], log=False)
seconds = time.perf_counter() - start
item = ds[len(ds) // 2]
print(json.dumps({"seconds": seconds, "molecules": len(ds)}))
"""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="qm9_bench_") as root:
        start = time.perf_counter()
        built = QM9Dataset(root)
        build_s = time.perf_counter() - start
        info = built.build_info
        assert info is not None, "the cache was not built"
        del built
        workers_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        out = subprocess.run(
            [sys.executable, "-c", _LOAD, root], capture_output=True, text=True, check=True
        )
        fresh = json.loads(out.stdout.strip().splitlines()[-1])
        start = time.perf_counter()
        again = QM9Dataset(root, log=False)
        reload_s = time.perf_counter() - start
        assert again.build_info is None and len(again) == info["molecules"]
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    cpus = available_cpus()
    body = f"""
## QM9 build

Full QM9 cache from qm9pack's tables (`QM9Dataset(root)`, nothing cached beforehand), then
loading the cache. Machine: {cpus} CPU cores, no GPU, Python {platform.python_version()}.

| measure | value |
| --- | --- |
| molecules | {info["molecules"]:,} |
| build, wall (constructor; {cpus} worker processes) | {build_s:.1f} s |
| load, fresh process (constructor, imports excluded) | {fresh["seconds"]:.2f} s |
| load, re-instantiation in the same process | {reload_s:.2f} s |
| atom order needed a non-identity SMILES -> XYZ mapping | {len(info["remapped"])} (QM9 {", ".join(map(str, info["remapped"]))}) |
| identity mapping, but SMILES bonds stretched past covalent radii + 0.45 A | {len(info["stretched"])} (QM9 {", ".join(map(str, info["stretched"]))}) |
| peak RSS, building process / largest worker | {rss_gb:.2f} GB / {workers_gb:.2f} GB |

Reproduce: `python scripts/bench_qm9_build.py`
"""  # noqa: E501
    write_section("qm9-build", body)
    print(body)


if __name__ == "__main__":
    main()
