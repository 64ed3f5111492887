"""A featurizer for the feature-cache tests: two cheap columns from the SMILES.

``length`` is the SMILES' length and ``carbons`` its count of ``C``; a SMILES holding ``X``
fails (with a reason), one holding ``KILL`` ends its process (as a crash in compiled code
would). Each call of :meth:`compute` appends its molecule count to the file named by
``FAKE_FEATURIZER_LOG`` (when set), so a test can count what was computed; with
``FAKE_FEATURIZER_STOP_AFTER=k`` the k-th call raises KeyboardInterrupt (a killed build).
"""

from __future__ import annotations

import os

import numpy as np

from regal_torch.features.featurizer import Featurizer


class CountingFeaturizer(Featurizer):
    name = "fake"
    version = 1
    columns = ("length", "carbons")
    extra = "dev"

    def packages(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def compute(self, smiles):
        log = os.environ.get("FAKE_FEATURIZER_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{len(smiles)}\n")
            calls = len(open(log).read().split())
            if calls == int(os.environ.get("FAKE_FEATURIZER_STOP_AFTER", "0")):
                raise KeyboardInterrupt
        values = np.full((len(smiles), 2), np.nan, dtype=np.float32)
        reasons = [None] * len(smiles)
        for i, s in enumerate(smiles):
            if "KILL" in s:
                os._exit(3)
            if "X" in s:
                reasons[i] = "ValueError: no X here"
                continue
            values[i] = [len(s), s.count("C")]
        return values, reasons
