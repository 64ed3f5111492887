"""What every acquisition strategy shares: its inputs and the checks on its output."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from regal_torch.errors import RegalError
from regal_torch.models.prediction import Prediction, PredictionRequest


@dataclass(frozen=True)
class SelectionContext:
    """What a strategy may know besides the pool's prediction.

    Attributes:
        pool: Dataset positions of the pool, aligned with the prediction's rows.
        labeled: Dataset positions of the labeled set.
        generator: Seeded CPU generator; the only source of randomness a strategy may use.
        labeled_prediction: The model's prediction over the labeled set, aligned with
            ``labeled`` (given when the strategy sets ``needs_labeled_prediction``).
        labeled_targets: The labels of the labeled set, aligned with ``labeled``.

    Shapes:
        pool: ``[N]``; labeled: ``[L]``; labeled_targets: ``[L]``.
    """

    pool: Tensor
    labeled: Tensor
    generator: torch.Generator
    labeled_prediction: Prediction | None = None
    labeled_targets: Tensor | None = None


class Strategy(ABC):
    """Picks ``k`` pool molecules from a :class:`Prediction` over the pool.

    Subclasses implement :meth:`_select_rows`; :meth:`select` checks inputs and output.
    ``requires`` names the :class:`Prediction` fields a strategy needs, so a model that lacks
    one is reported by name rather than failing deep inside the method, and so that the
    caller asks the model for no more (:meth:`request`): a strategy that requires nothing
    (random) is given no prediction at all. A strategy that sets
    ``needs_labeled_prediction`` (distances to the labeled set, ...) gets the model's
    prediction over the labeled set in its context; the others do not pay for it. One that
    sets ``half_features`` asks for its features stored as float16
    (:attr:`PredictionRequest.half_features`).
    """

    requires: tuple[str, ...] = ()
    needs_labeled_prediction: bool = False
    half_features: bool = False

    def request(self) -> PredictionRequest | None:
        """What the pool prediction must hold for this strategy; None: no prediction."""
        if not self.requires:
            return None
        return PredictionRequest(frozenset(self.requires), half_features=self.half_features)

    def select(self, prediction: Prediction | None, k: int, context: SelectionContext) -> Tensor:
        """Dataset positions of the ``k`` picked pool molecules, ``[k]``, in pick order.

        ``prediction`` may be None for a strategy that requires nothing.
        """
        n = len(context.pool)
        if prediction is not None and len(prediction) != n:
            raise ValueError(f"prediction has {len(prediction)} rows but the pool has {n}")
        if not 0 < k <= n:
            raise RegalError(f"loop.batch_size={k} must be between 1 and the pool size ({n})")
        if self.requires and prediction is None:
            raise ValueError(f"{type(self).__name__} needs a prediction; None was given")
        for name in self.requires:
            if getattr(prediction, name) is None:
                raise RegalError(
                    f"strategy {type(self).__name__} needs Prediction.{name}, "
                    "which this model does not provide"
                )
        rows = self._select_rows(prediction, k, context)
        if rows.shape != (k,) or rows.unique().numel() != k:
            raise RuntimeError(f"{type(self).__name__} returned {rows.tolist()} for k={k}")
        return context.pool[rows.to(context.pool.device)]

    @abstractmethod
    def _select_rows(
        self, prediction: Prediction | None, k: int, context: SelectionContext
    ) -> Tensor:
        """Rows of the prediction (``[k]``, distinct) to pick."""
