"""Molecule features: fixed-length vectors per molecule that every model can read.

- :mod:`regal_torch.features.featurizer`: what a featurizer is;
- :mod:`regal_torch.features.minimol`: the pretrained MiniMol fingerprint (``minimol`` extra);
- :mod:`regal_torch.features.xtb`: GFN2-xTB values on RDKit's geometry (``xtb`` extra);
- :mod:`regal_torch.features.store`: the on-disk cache of one featurizer over a dataset;
- :mod:`regal_torch.features.molecule_features`: a dataset's features, failures filled.

``data.features=[minimol, xtb]`` names them (``configs/data/featurizers/default.yaml``).
Nothing is imported here: importing the package has no side effects.
"""
