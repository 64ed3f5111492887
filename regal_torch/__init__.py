"""regal_torch: active learning for regression on molecules.

Importing the package has no side effects: no data is read, no device is touched.
"""

__version__ = "0.1.0"
