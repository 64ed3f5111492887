"""bmdal-reg's LCMD and scikit-activeml's GSy as regal_torch strategies, run through their own
libraries on our model's features, for the side-by-side runs of the QM9 study (BENCHMARKS.md).

Not part of the package: they need the ``bench`` extra (``pip install -e ".[bench]"``). Use:

    PYTHONPATH=scripts/peers python -m regal_torch.run --multirun \\
        experiment=qm9_gap_benchmark hydra.searchpath=[file://scripts/peers] \\
        strategy=bmdal_lcmd,skactiveml_gsy seed=0

- ``bmdal_lcmd``: ``bmdal_reg.bmdal.algorithms.select_batch(selection_method="lcmd")``, TP-mode
  (``sel_with_train=True``), linear kernel on the model's embedding (the last-layer kernel),
  no transforms: the paper's LCMD-TP on last-layer features.
- ``skactiveml_gsy``: ``skactiveml.pool.GreedySamplingTarget(method="GSy")``; its regressor is
  not refitted (``fit_reg=False``) but returns our model's predicted means. The candidate
  features are the embedding with the predicted mean appended as the last column (GSy itself
  measures distances on the outputs only; the regressor reads that column).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from regal_torch.models.prediction import Prediction
from regal_torch.strategies.base import SelectionContext, Strategy
from regal_torch.strategies.features import labeled_embedding, labeled_targets

np.Inf = np.inf  # bmdal-reg 3.0.2 still uses the alias NumPy 2 removed
from bmdal_reg.bmdal.algorithms import select_batch  # noqa: E402
from bmdal_reg.bmdal.feature_data import TensorFeatureData  # noqa: E402
from skactiveml.base import SkactivemlRegressor  # noqa: E402
from skactiveml.pool import GreedySamplingTarget  # noqa: E402


def bmdal_linear_select(
    train: Tensor, pool: Tensor, k: int, method: str, kernel_transforms=(), **config
) -> Tensor:
    """Pool rows that bmdal-reg's ``select_batch`` picks with ``method`` on the linear kernel
    of the given features (``config``: its further options, e.g. ``sel_with_train``)."""
    idx, _ = select_batch(
        batch_size=k,
        models=[torch.nn.Identity()],
        data={"train": TensorFeatureData(train), "pool": TensorFeatureData(pool)},
        y_train=None,
        base_kernel="linear",
        kernel_transforms=list(kernel_transforms),
        selection_method=method,
        verbosity=0,
        **config,
    )
    return idx


class BmdalLCMD(Strategy):
    """bmdal-reg's LCMD-TP on the linear kernel of the embedding."""

    requires = ("embedding",)
    needs_labeled_prediction = True

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        pool = prediction.embedding.float()
        labeled = labeled_embedding("bmdal_lcmd", prediction, context).float()
        torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=context.generator)))
        idx = bmdal_linear_select(labeled, pool, k, "lcmd", sel_with_train=True)
        return idx.cpu().long()


class _LastColumn(SkactivemlRegressor):
    """A 'fitted' regressor whose prediction is the last feature column (our model's mean)."""

    def fit(self, X, y, sample_weight=None):
        return self

    def predict(self, X):
        return np.asarray(X)[:, -1]


class SkactivemlGSy(Strategy):
    """scikit-activeml's GreedySamplingTarget, GSy, with our model's means as predictions."""

    requires = ("mean", "embedding")
    needs_labeled_prediction = True

    def _select_rows(self, prediction: Prediction, k: int, context: SelectionContext) -> Tensor:
        targets = labeled_targets("skactiveml_gsy", prediction, context).double().cpu().numpy()
        labeled = context.labeled_prediction
        x_lab = torch.cat([labeled.embedding, labeled.mean[:, None]], 1).double().cpu().numpy()
        x_pool = torch.cat([prediction.embedding, prediction.mean[:, None]], 1)
        x_pool = x_pool.double().cpu().numpy()
        x = np.concatenate([x_lab, x_pool])
        y = np.concatenate([targets, np.full(len(x_pool), np.nan)])
        seed = int(torch.randint(2**31 - 1, (1,), generator=context.generator))
        strategy = GreedySamplingTarget(method="GSy", random_state=seed)
        idx = strategy.query(x, y, _LastColumn(), fit_reg=False, batch_size=k)
        return torch.as_tensor(np.asarray(idx) - len(x_lab), dtype=torch.long)
