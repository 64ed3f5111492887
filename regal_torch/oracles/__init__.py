"""Computed labels for learn mode (``oracle=function``, ``oracle=command``) and a real oracle.

- :mod:`regal_torch.oracles.function`: a Python callable per molecule, in worker processes;
- :mod:`regal_torch.oracles.command`: an external program per round (a script, a SLURM job);
- :mod:`regal_torch.oracles.xtb`: the GFN2-xTB HOMO-LUMO gap (needs the ``xtb`` extra).

Nothing is imported here: importing the package has no side effects.
"""
