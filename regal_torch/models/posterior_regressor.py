"""Shared prediction of the GP regressors: a posterior over the whole training set."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from regal_torch.models.capabilities import Capabilities
from regal_torch.models.exact_gp import ExactPosterior
from regal_torch.models.gp_posterior import GPPosterior
from regal_torch.models.gp_prior import ExactGPModel
from regal_torch.models.prediction import Prediction
from regal_torch.models.regressor import Regressor
from regal_torch.models.sparse_gp import SparsePosterior
from regal_torch.option_rules import integer


class PosteriorRegressor(Regressor):
    """Base of the GP regressors (``model=gp``, ``model=dkl``).

    A subclass defines ``gp`` (an :class:`ExactGPModel` on standardised targets) and
    :meth:`features` (the GP inputs of a batch) and, once its hyperparameters are trained,
    calls :meth:`condition` on the :meth:`training_set` of :meth:`training_loader`. Then
    ``forward`` is the posterior mean, :meth:`predict_step` gives mean and variance per
    batch, with the GP inputs as ``embedding``, and :meth:`complete_prediction` (called by
    :func:`regal_torch.models.predict_rows.predict` after concatenation) attaches the block
    covariance provider over all predicted rows. A fit starts by dropping the previous
    fit's posterior; validation (``val/mae``) needs the posterior, so it is skipped before
    there is one (Lightning's sanity check).

    Args:
        bases: The next base class's arguments, positional and by name (``target_scaling``,
            ``feature_scaling`` of :class:`regal_torch.models.regressor.Regressor`, or a deep
            kernel's encoder arguments, :class:`regal_torch.models.regressor.NetworkRegressor`).
        exact_max: Largest training set conditioned on exactly (None: always exact); above
            it, the variational sparse posterior with ``inducing_points`` inducing inputs.
        inducing_points: Number of inducing inputs of the sparse posterior.

    Shapes:
        ``features``: batch of B graphs -> ``[B, D]``; ``forward`` -> ``[B]``.
    """

    gp: ExactGPModel
    # a posterior exists only once conditioned on labels, on the whole labeled set at once
    capabilities = Capabilities(
        frozenset(("mean", "var", "embedding", "covariance")),
        predicts_untrained=False,
        multi_process=False,
    )

    option_rules = {"exact_max": integer(0, null=True), "inducing_points": integer(1)}

    def __init__(
        self,
        *bases: Any,
        exact_max: int | None = None,
        inducing_points: int = 1000,
        **base_options: Any,
    ) -> None:
        super().__init__(*bases, **base_options)
        if inducing_points < 1:
            raise ValueError(f"model.inducing_points must be >= 1; got {inducing_points}")
        self.exact_max, self.inducing_points = exact_max, inducing_points
        self.posterior: GPPosterior | None = None

    def features(self, batch: Batch) -> Tensor:
        raise NotImplementedError

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.posterior = None  # a previous fit's posterior is stale from the first step on

    def forward(self, batch: Batch) -> Tensor:
        """Posterior mean in original target units, ``[B]``."""
        mean = self._posterior().mean_var(self.features(batch))[0]
        return mean + self.target_scaler.baseline(self.baseline_features(batch))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if self.posterior is not None:
            super().validation_step(batch, batch_idx)

    @torch.no_grad()
    def training_set(self, loader: Iterable[Batch]) -> tuple[Tensor, Tensor]:
        """GP inputs ``[L, D]`` and standardised targets ``[L]`` of every batch of ``loader``."""
        was_training = self.training
        self.eval()
        xs, ys = [], []
        for batch in loader:
            batch = batch.to(self.device)
            xs.append(self.features(batch))
            ys.append(
                self.target_scaler.standardise(batch.y.view(-1), self.baseline_features(batch))
            )
        self.train(was_training)
        return torch.cat(xs), torch.cat(ys)

    def training_loader(self) -> DataLoader:
        """Every training molecule once, unshuffled: the Trainer's training loader's dataset.

        (The training loader itself may shuffle and drop a last batch of one graph.)
        """
        loader = self.trainer.train_dataloader
        return DataLoader(loader.dataset, batch_size=loader.batch_size or 64)

    def condition(self, train_x: Tensor, train_y: Tensor) -> None:
        """Condition the GP on GP inputs ``[L, D]`` and standardised targets ``[L]``.

        Exact if ``exact_max`` is None or ``L <= exact_max``; else the variational sparse
        posterior (:class:`SparsePosterior`) at ``inducing_points`` training inputs drawn at
        random (fixed seed 0, so the same data give the same inducing points).
        """
        if self.exact_max is None or len(train_x) <= self.exact_max:
            self.posterior = ExactPosterior(self.gp, train_x, train_y, self.target_scaler)
            return
        generator = torch.Generator().manual_seed(0)
        picks = torch.randperm(len(train_x), generator=generator)[: self.inducing_points]
        inducing = train_x[picks.to(train_x.device)]
        self.posterior = SparsePosterior(
            self.gp, train_x, train_y, self.target_scaler, inducing=inducing
        )

    def checkpoint_extras(self) -> dict[str, Any]:
        """The GP inputs and standardised targets it is conditioned on (``posterior``)."""
        posterior = self._posterior()
        inputs, targets = posterior.train_inputs.cpu(), posterior.train_targets.cpu()
        return {"posterior": {"train_x": inputs, "train_y": targets}}

    def restore_extras(self, extras: dict[str, Any]) -> None:
        """Condition the GP again on the saved training inputs and targets (deterministic: the
        same posterior as the saved model's)."""
        self.condition(extras["posterior"]["train_x"], extras["posterior"]["train_y"])

    def _posterior(self) -> GPPosterior:
        if self.posterior is None:
            raise RuntimeError(
                f"{type(self).__name__} has no posterior yet: fit it (Trainer.fit) first"
            )
        return self.posterior

    @torch.no_grad()
    def predict_step(self, batch: Batch, batch_idx: int = 0) -> Prediction:
        """Posterior mean and predictive variance of one batch, in original target units."""
        posterior = self._posterior()
        x = self.features(batch)
        mean, var = posterior.mean_var(x)
        mean = mean + self.target_scaler.baseline(self.baseline_features(batch))
        return Prediction(mean=mean, var=var, embedding=x)

    def complete_prediction(self, prediction: Prediction) -> Prediction:
        """``prediction`` with the posterior covariance provider over all of its rows."""
        prediction.covariance = FeatureCovariance(self._posterior(), prediction.embedding)
        return prediction


class FeatureCovariance:
    """Covariance provider over the rows of a prediction, from their GP inputs.

    The posterior's per-input factors (``posterior.whiten``) of all N rows are computed on
    the first request and kept, so later blocks cost kernel entries and dot products only: a
    greedy strategy asking for one column per pick pays the triangular solves once per
    selection, not once per pick. Memory: ``[L, N]`` floats for the exact posterior (L
    training molecules), two ``[M, N]`` doubles for the sparse one (M inducing points).

    Shapes:
        features: ``[N, D]``; ``(rows [R], cols [C])`` -> ``[R, C]``.
    """

    def __init__(self, posterior: GPPosterior, features: Tensor) -> None:
        self.posterior, self.features = posterior, features
        self._whitened: tuple[Tensor, ...] | None = None

    def __call__(self, rows: Tensor, cols: Tensor) -> Tensor:
        rows, cols = rows.to(self.features.device), cols.to(self.features.device)
        if self._whitened is None:
            self._whitened = self.posterior.whiten(self.features)
        same = (rows[:, None] == cols[None, :]).to(self.features.dtype)
        return self.posterior.covariance_whitened(
            self.features[rows],
            self.features[cols],
            tuple(_columns(w, rows) for w in self._whitened),
            tuple(_columns(w, cols) for w in self._whitened),
            same,
        )


def _columns(matrix: Tensor, index: Tensor) -> Tensor:
    """``matrix[:, index]``, without copying when ``index`` is every column in order (a
    greedy strategy's ``[L, N]`` request for the whole pool, at every pick)."""
    everyone = len(index) == matrix.shape[1] and torch.equal(
        index, torch.arange(len(index), device=index.device)
    )
    return matrix if everyone else matrix[:, index]
