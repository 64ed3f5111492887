"""The base of the strategies on features and kernels of the pool and the labeled set
(:mod:`regal_torch.strategies.features` holds the kernels and distances they share)."""

from __future__ import annotations

from torch import Tensor

from regal_torch.errors import RegalError
from regal_torch.models.prediction import Prediction, PredictionRequest
from regal_torch.strategies.base import SelectionContext, Strategy
from regal_torch.strategies.features import KERNELS, check_kernel, kernel_features, scale_rows


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
    r"""A strategy on a kernel of the pool and the labeled set (see the module docstring).

    With ``weighted``, the kernel is weighted by the uncertainty the strategy sees (the
    recalibrated or validation-neighbour std of :attr:`Prediction.var`):

    .. math::
        k_w(x, x') = w(x)\, k(x, x')\, w(x'), \qquad
        w(x) = \sigma(x) / \overline{\sigma}_\mathrm{pool},

    i.e. every feature row is multiplied by its std over the pool's mean std, so that of two
    molecules as far from the labeled set the one the model is less sure of counts as
    farther (the bmdal-reg paper's ``scale`` idea, with the model's own std).

    Args:
        sketch_dim: Sketch dimension of the features (``None``: none for ``ll``, 512 for
            ``grad``).
        kernel: ``ll`` (last-layer features) or ``grad`` (gradient features of all layers).
        half_features: See :class:`FeatureStrategy`.
        weighted: Weight the kernel by the std (default False).
    """

    def __init__(
        self,
        sketch_dim: int | None = None,
        kernel: str = "ll",
        half_features: bool = False,
        weighted: bool = False,
    ) -> None:
        super().__init__(half_features)
        if not isinstance(weighted, bool):
            raise RegalError(f"strategy.weighted={weighted!r} must be true or false")
        self.sketch_dim = check_kernel(kernel, sketch_dim)
        self.kernel = kernel
        self.weighted = weighted
        self.requires = (KERNELS[kernel], "var") if weighted else (KERNELS[kernel],)

    def request(self) -> PredictionRequest:
        return PredictionRequest(
            frozenset(self.requires), sketch_dim=self.sketch_dim, half_features=self.half_features
        )

    def features(self, prediction: Prediction, context: SelectionContext) -> tuple[Tensor, Tensor]:
        """Pool ``[N, D']`` and labeled ``[L, D']`` features (:func:`kernel_features`), each
        row times its weight with ``weighted``."""
        pool, labeled = kernel_features(
            type(self).__name__, prediction, context, self.sketch_dim, self.kernel
        )
        if not self.weighted:
            return pool, labeled
        scale = prediction.var.sqrt().mean()
        pool = scale_rows(pool, prediction.var.sqrt() / scale)
        if len(labeled):
            labeled_var = context.labeled_prediction.var
            if labeled_var is None:
                raise RegalError(
                    f"strategy {type(self).__name__} with weighted=true needs Prediction.var "
                    "of the labeled set, which this model does not provide"
                )
            labeled = scale_rows(labeled, labeled_var.to(pool.device).sqrt() / scale)
        return pool, labeled
