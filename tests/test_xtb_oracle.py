"""The GFN2-xTB HOMO-LUMO gap oracle (needs tblite: the ``xtb`` and ``dev`` extras).

The gaps are computed through oracle=function's worker processes, which run tblite on one
thread each (in the test process, whose OpenMP runtime torch has started with every core, a
calculation on a busy machine takes seconds instead of milliseconds).
"""

import pytest
import torch

pytest.importorskip("tblite")

from regal_torch.oracles.function import FunctionOracle  # noqa: E402
from regal_torch.oracles.xtb import homo_lumo_gap  # noqa: E402

# Computed once with tblite 0.8.0 and RDKit 2026.9.1 (ETKDGv3 seed 42, MMFF94), in eV.
REFERENCE = {
    "C": 16.85123,
    "O": 14.1597,
    "CCO": 12.52592,
    "c1ccccc1": 4.82588,
    "CC#N": 5.91072,
}


def test_gaps_match_the_stored_reference_values_and_bad_smiles_fail(tmp_path):
    smiles = [*REFERENCE, "C1CC"]
    oracle = FunctionOracle(
        tmp_path,
        [f"m{i}" for i in range(len(smiles))],
        smiles,
        function="regal_torch.oracles.xtb:homo_lumo_gap",
        workers=2,
        timeout=60,
        progress=False,
    )
    positions = torch.arange(len(smiles))
    oracle.ask(1, positions, torch.zeros(len(smiles)), torch.ones(len(smiles)))
    answers = oracle.answers(1, positions)
    assert answers.positions.tolist() == list(range(len(REFERENCE)))
    assert answers.values.tolist() == pytest.approx(list(REFERENCE.values()), abs=1e-3)
    assert answers.failed.tolist() == [len(REFERENCE)]
    assert answers.reasons == ["ValueError: RDKit cannot read SMILES 'C1CC'"]


def test_a_molecule_without_a_geometry_fails_before_any_calculation():
    with pytest.raises(ValueError, match="RDKit cannot read SMILES 'C1CC'"):
        homo_lumo_gap("bad", "C1CC")
