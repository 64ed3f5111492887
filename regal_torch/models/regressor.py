"""The skeleton every regal_torch model shares: target scaling, steps, optimiser."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from regal_torch.models.feature_scaling import FeatureScaler
from regal_torch.models.readout import POOLINGS
from regal_torch.models.target_scaling import TargetScaler
from regal_torch.option_rules import choice, integer, number, switch

MIN_VAR = 1e-12
"""Floor of a variance computed from samples (members or dropout passes that agree)."""

# state_dict names of the target scaling before it was a module of its own
_LEGACY_SCALING_KEYS = {"target_mean": "target_scaler.mean", "target_std": "target_scaler.std"}


class Regressor(pl.LightningModule):
    r"""Base of the regressors: a LightningModule trained on standardised targets.

    .. math::
        \hat y(G) = \mu_y + \sigma_y \, f(G), \qquad
        \mathrm{loss} = \ell\big(f, (y - \mu_y) / \sigma_y\big)

    A subclass builds its network, defines :meth:`loss` (on standardised targets) and
    ``forward`` (original units), and gets:

    - ``target_scaler``, a :class:`TargetScaler` applied to the output. Handed in as
      ``target_scaling``, it is used as given. Without it, the scaling is read at fit start
      from a datamodule that has ``target_scaling()`` (the loop's
      :class:`regal_torch.data.datamodule.ActiveDataModule`: the labeled set's mean and std),
      or set with :meth:`set_target_scaling`;
    - ``training_step`` (:meth:`loss`, logged as ``train/loss``) and ``validation_step``
      (mean absolute error in original units, logged as ``val/mae``);
    - ``configure_optimizers``: AdamW over :meth:`optimizer_groups` with ``hparams.lr`` and
      ``hparams.weight_decay``, learning rate cosine-annealed over ``trainer.max_epochs``;
    - ``feature_scaler``, the :class:`FeatureScaler` applied first to a table's rows or to
      the molecule features (handed in as ``feature_scaling``; None: the features as they
      are);
    - with ``baseline``, a Delta target: ``target_scaler`` adds a line in that feature column
      to every output (:class:`TargetScaler`), :meth:`to_target` and the training loss read
      the batch's features for it.

    Args:
        target_scaling: The scaling to use, or None to read it from the datamodule at fit
            start (identity until then).
        feature_scaling: The item features' standardisation (the loop hands in the one fitted
            on the labeled rows; :meth:`regal_torch.data.datamodule.ActiveDataModule.model_inputs`);
            None: none.
        baseline: The feature column of a Delta target (``model.baseline``, e.g.
            ``xtb_gap``); ``target_scaling`` then has it (the loop's
            :meth:`regal_torch.data.datamodule.ActiveDataModule.target_scaler`). None: none.

    Shapes:
        batch: a PyG ``Batch`` of B graphs with ``y`` of shape ``[B]`` or ``[B, 1]`` when
        labeled; :meth:`loss` target: ``[B]`` -> scalar; ``forward`` -> ``[B]``.
    """

    def __init__(
        self,
        target_scaling: TargetScaler | None = None,
        feature_scaling: FeatureScaler | None = None,
        baseline: str | None = None,
    ) -> None:
        super().__init__()
        if target_scaling is not None and target_scaling.has_baseline != (baseline is not None):
            raise ValueError(
                f"model.baseline={baseline!r} but the target_scaling handed in has "
                f"{'a' if target_scaling.has_baseline else 'no'} baseline: build it with "
                "datamodule.target_scaler(baseline)"
            )
        self.scaling_from_datamodule = target_scaling is None
        self.target_scaler = TargetScaler() if target_scaling is None else target_scaling
        self.feature_scaler = feature_scaling
        self.baseline_name = baseline
        self.register_load_state_dict_pre_hook(_rename_legacy_scaling)

    @property
    def target_mean(self) -> Tensor:
        """:math:`\\mu_y`, original units (0-dim)."""
        return self.target_scaler.mean

    @property
    def target_std(self) -> Tensor:
        """:math:`\\sigma_y`, original units (0-dim)."""
        return self.target_scaler.std

    def set_target_scaling(self, mean: float, std: float) -> None:
        """Set the standardisation of the target (original units)."""
        self.target_scaler.set(mean, std)

    def load_weights(self, weights: dict[str, Tensor]) -> None:
        """Load another fit's ``state_dict`` (warm start) but keep this model's target and
        feature scaling (the scaler modules may be shared with the caller, so they are
        copied before the load and put back after it)."""
        own = {
            key: value.clone()
            for key, value in self.state_dict().items()
            if key.startswith(("target_scaler.", "feature_scaler."))
        }
        self.load_state_dict(weights)
        self.load_state_dict(own, strict=False)

    def checkpoint_extras(self) -> dict[str, Any]:
        """What a saved model needs besides its ``state_dict`` and hparams to predict as this
        one does (:mod:`regal_torch.outputs.model_file`); nothing for a network."""
        return {}

    def restore_extras(self, extras: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint_extras` gave (a loaded model)."""

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if not self.scaling_from_datamodule:
            return
        if hasattr(datamodule, "target_scaler"):
            self.target_scaler = datamodule.target_scaler(self.baseline_name).to(self.device)
        elif hasattr(datamodule, "target_scaling"):
            self.set_target_scaling(*datamodule.target_scaling())

    def baseline_features(self, batch: Batch) -> Tensor | None:
        """What a Delta target's baseline reads of ``batch`` (None without a baseline): the
        unscaled molecule features, or a table's rows, ``[B, F]``."""
        if not self.target_scaler.has_baseline:
            return None
        features = getattr(batch, "features", None)
        if features is None:
            return batch.x
        scaler = self.feature_scaler  # a failed feature: the training molecules' mean
        return features if scaler is None else torch.where(features.isnan(), scaler.mean, features)

    def to_target(self, standardised: Tensor, batch: Batch) -> Tensor:
        """Standardised outputs ``[..., B]`` of ``batch`` in the target's units."""
        return self.target_scaler(standardised, self.baseline_features(batch))

    def loss(self, batch: Batch, target: Tensor) -> Tensor:
        """Training loss of a batch given its standardised targets ``[B]``."""
        raise NotImplementedError

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        target = self.target_scaler.standardise(batch.y.view(-1), self.baseline_features(batch))
        loss = self.loss(batch, target)
        self.log_loss(loss, batch.num_graphs)
        return loss

    def log_loss(self, loss: Tensor, molecules: int) -> None:
        """Log ``train/loss`` (progress bar too) for a step over ``molecules`` molecules."""
        self.log("train/loss", loss, batch_size=molecules, prog_bar=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        mae = (self(batch) - batch.y.view(-1)).abs().mean()
        # sync_dist: under DDP the epoch's value is over every process's shard of val
        self.log("val/mae", mae, batch_size=batch.num_graphs, prog_bar=True, sync_dist=True)

    def optimizer_groups(self) -> Iterable[nn.Parameter] | list[dict[str, Any]]:
        """What AdamW optimises: every parameter (a subclass may return parameter groups)."""
        return self.parameters()

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(
            self.optimizer_groups(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


class NetworkRegressor(Regressor):
    """Base of the regressors with a trained encoder (GINE message passing on molecules, an
    MLP on a table): the encoder's and the optimiser's arguments, documented here once.

    Every argument, and every argument of the subclasses' constructors, is saved in
    ``hparams`` (the scalings as modules instead); a subclass builds its encoder from them
    with :func:`regal_torch.models.readout.encoder_readout`.

    Args:
        node_dim: Number of atom features (a table: of feature columns).
        edge_dim: Number of bond features; None for a table (MLP encoder).
        hidden_dim: Width of the encoder (default 128).
        num_layers: Message passing (a table: MLP) layers (default 3).
        dropout: Dropout probability (default 0.0).
        pooling: Readout, ``"mean"``, ``"sum"`` or ``"max"`` (default ``"mean"``; unused on a
            table).
        lr: AdamW learning rate (default 1e-3), cosine-annealed over ``trainer.max_epochs``.
        weight_decay: AdamW weight decay (default 0).
        target_scaling: The target's scaling; None (default): the datamodule's at fit start.
        feature_scaling: The item features' standardisation (see :class:`Regressor`).
        feature_groups: The molecule features' groups and widths
            (:meth:`regal_torch.data.datamodule.ActiveDataModule.model_inputs`), concatenated
            to the pooled embedding; None: no molecule features.
        graph: False: an MLP on the molecule features alone, no graph network (default True).
        baseline: A Delta target's feature column (see :class:`Regressor`).
    """

    option_rules = {
        "hidden_dim": integer(1),
        "num_layers": integer(1),
        "dropout": number(0, low_open=False, high=1),
        "pooling": choice(*POOLINGS),
        "lr": number(0, low_open=True),
        "weight_decay": number(0, low_open=False),
        "graph": switch,
    }

    def __init__(
        self,
        node_dim: int,
        edge_dim: int | None,
        hidden_dim: int = 128,
        num_layers: int = 3,
        dropout: float = 0.0,
        pooling: str = "mean",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        target_scaling: TargetScaler | None = None,
        feature_scaling: FeatureScaler | None = None,
        feature_groups: dict[str, int] | None = None,
        graph: bool = True,
        baseline: str | None = None,
    ) -> None:
        super().__init__(target_scaling, feature_scaling, baseline)
        self.save_hyperparameters(ignore=["target_scaling", "feature_scaling"])

    def molecule_features(self, batch: Batch) -> Tensor | None:
        """The batch's molecule features, ``[B, F]``, if the model reads them (else None)."""
        return batch.features if self.hparams.feature_groups else None


def sample_statistics(samples: Tensor) -> dict[str, Tensor]:
    """``mean``, ``var`` (floored at :data:`MIN_VAR`) and ``samples`` of stochastic
    predictions, as :class:`regal_torch.models.prediction.Prediction` fields.

    Shapes:
        samples: ``[S, B]`` (S >= 2) -> mean ``[B]``, var ``[B]``, samples ``[S, B]``.
    """
    return {"mean": samples.mean(0), "var": samples.var(0).clamp_min(MIN_VAR), "samples": samples}


def _rename_legacy_scaling(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Load ``state_dict``\\ s saved before :class:`TargetScaler` (keys ``target_mean``,
    ``target_std``; e.g. warm-start weights in an older run's ``state.pt``)."""
    for old, new in _LEGACY_SCALING_KEYS.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)
