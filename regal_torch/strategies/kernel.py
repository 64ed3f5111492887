"""The base of the strategies on features and kernels of the pool and the labeled set
(:mod:`regal_torch.strategies.features` holds the kernels and distances they share)."""

from __future__ import annotations

from torch import Tensor

from regal_torch.models.prediction import Prediction, PredictionRequest
from regal_torch.strategies.base import SelectionContext, Strategy
from regal_torch.strategies.features import KERNELS, check_kernel, kernel_features


class FeatureStrategy(Strategy):
    """A strategy on the pool's and the labeled set's embedding (or other features).

    Args:
        half_features: Ask for the features stored as float16: half their memory, computed
            in float32 by blocks of rows (the picks are those of the rounded features).
    """

    requires = ("embedding",)
    needs_labeled_prediction = True

    def __init__(self, half_features: bool = False) -> None:
        self.half_features = half_features


class KernelStrategy(FeatureStrategy):
    """A strategy on a kernel of the pool and the labeled set (see the module docstring).

    Args:
        sketch_dim: Sketch dimension of the features (``None``: none for ``ll``, 512 for
            ``grad``).
        kernel: ``ll`` (last-layer features) or ``grad`` (gradient features of all layers).
        half_features: See :class:`FeatureStrategy`.
    """

    def __init__(
        self, sketch_dim: int | None = None, kernel: str = "ll", half_features: bool = False
    ) -> None:
        super().__init__(half_features)
        self.sketch_dim = check_kernel(kernel, sketch_dim)
        self.kernel = kernel
        self.requires = (KERNELS[kernel],)

    def request(self) -> PredictionRequest:
        return PredictionRequest(
            frozenset(self.requires), sketch_dim=self.sketch_dim, half_features=self.half_features
        )

    def features(self, prediction: Prediction, context: SelectionContext) -> tuple[Tensor, Tensor]:
        """Pool ``[N, D']`` and labeled ``[L, D']`` features (:func:`kernel_features`)."""
        return kernel_features(
            type(self).__name__, prediction, context, self.sketch_dim, self.kernel
        )
