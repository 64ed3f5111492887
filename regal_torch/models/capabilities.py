"""What a model class declares it can do, so that a run is checked before anything trains.

Each regressor class sets ``capabilities``: the :class:`regal_torch.models.prediction.Prediction`
fields it fills in (when asked), whether it predicts before any training (a cold start on the
untrained model's embedding, ``loop.initial_features=model``) and whether it trains and
predicts in several processes (DDP). :mod:`regal_torch.loop.checks` compares them with what the
strategies require, from the config alone.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Capabilities", "capabilities_of"]


@dataclass(frozen=True)
class Capabilities:
    """A model class's declaration.

    Attributes:
        provides: Names of the ``Prediction`` fields the model gives when asked
            (:data:`regal_torch.models.prediction.FIELDS`).
        predicts_untrained: It predicts (mean, embedding) before any fit.
        multi_process: It trains and predicts under a Trainer of several processes.
        validates: It has a validation step (``val/mae`` per epoch); a model without one
            is fitted on the training loader alone.
    """

    provides: frozenset[str]
    predicts_untrained: bool
    multi_process: bool
    validates: bool = True

    def describe(self) -> str:
        """``mean, var, embedding`` (the fields, in :data:`FIELDS` order)."""
        from regal_torch.models.prediction import FIELDS

        return ", ".join(f for f in FIELDS if f in self.provides)


def capabilities_of(model_class: type) -> Capabilities | None:
    """The declaration of ``model_class``, or None for a class that makes none (a user's
    own model: nothing is checked for it before it runs)."""
    declared = getattr(model_class, "capabilities", None)
    return declared if isinstance(declared, Capabilities) else None
