"""Deep-kernel GP: a GINE encoder feeding an exact GPyTorch GP, trained end to end."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gpytorch
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.parsing import AttributeDict
from torch import Tensor
from torch_geometric.data import Batch

from regal_torch.models.feature_kernels import feature_kernels, sum_kernel
from regal_torch.models.gp_prior import ExactGPModel
from regal_torch.models.posterior_regressor import PosteriorRegressor
from regal_torch.models.readout import encoder_readout, pooled
from regal_torch.models.regressor import NetworkRegressor
from regal_torch.option_rules import choice, integer, number


class DeepKernelGP(PosteriorRegressor, NetworkRegressor):
    r"""Deep kernel learning (Wilson et al., AISTATS 2016) on molecular graphs.

    .. math::
        z(G) = \tanh\big(W\,\mathrm{pool}(\mathrm{GINE}(G))\big) \in [-1, 1]^{d}, \qquad
        y = c + f(z(G)) + \varepsilon, \quad f \sim \mathcal{GP}(0, s\,k_\theta), \quad
        \varepsilon \sim N(0, \sigma^2)

    with :math:`k_\theta` an RBF or Matérn-5/2 kernel with one lengthscale per feature
    (ARD); ``tanh`` bounds the features so the lengthscales stay meaningful. On a table
    (``edge_dim=None``) the encoder is an MLP on the standardised rows in place of GINE and
    pooling (:func:`regal_torch.models.readout.encoder_readout`).

    With molecule features (``data.features``, ``feature_groups``), the GP inputs are
    :math:`z(G)` then the standardised features, and the kernel is the sum of
    :math:`s\,k_\theta` on :math:`z` and one RBF kernel per feature group
    (:mod:`regal_torch.models.feature_kernels`).

    Training is end to end (encoder and GP hyperparameters together; no separate pretraining
    stage, so one ``Trainer.fit`` is the whole fit): each training batch is treated as a
    GP data set of its own and the loss is its exact negative marginal log likelihood per
    molecule (minibatch deep kernel learning), so training costs the same at any labeled-set
    size L. When training ends, the GP is conditioned on the whole training set: exactly
    (one Cholesky factor, O(L^3)) up to ``exact_max`` molecules, above it with the optimal
    variational posterior at ``inducing_points`` inducing inputs (Titsias 2009,
    :class:`regal_torch.models.sparse_gp.SparsePosterior`, O(L M^2)). Prediction gives mean,
    predictive variance, the GP features as ``embedding`` and the block posterior
    covariance (:class:`PosteriorRegressor`). Trains on standardised targets.

    There is no validation during training: the model has no posterior until training
    ends (and a validation pass would draw from the global random state, so later epochs
    would see other batches than in earlier versions of this model).

    Args:
        network: The encoder's arguments, positional (``node_dim``, ``edge_dim``,
            ``hidden_dim``, ...; :class:`regal_torch.models.regressor.NetworkRegressor`);
            ``lr`` and ``weight_decay`` are the encoder's, ``dropout`` is in training only.
        feature_dim: Dimension d of the GP inputs (default 16).
        kernel: ``"rbf"`` or ``"matern"`` (Matérn 5/2; default ``"rbf"``).
        gp_lr: Adam learning rate of the GP hyperparameters (default 1e-2).
        exact_max: Largest labeled set conditioned on exactly (default 3000; None: always).
        inducing_points: Inducing inputs of the variational posterior above ``exact_max``
            (default 1000).
        options: The encoder's arguments by name (as ``network``).

    Shapes:
        batch: a PyG ``Batch`` of B graphs; ``features`` -> ``[B, feature_dim]``;
        ``forward`` -> ``[B]``.
    """

    # Lightning's own (absent) validation step: no validation loop (see above)
    validation_step = pl.LightningModule.validation_step
    capabilities = replace(PosteriorRegressor.capabilities, validates=False)

    option_rules = {
        "feature_dim": integer(1),
        "kernel": choice("rbf", "matern"),
        "gp_lr": number(0, low_open=True),
    }

    def __init__(
        self,
        *network: Any,
        feature_dim: int = 16,
        kernel: str = "rbf",
        gp_lr: float = 1e-2,
        exact_max: int | None = 3000,
        inducing_points: int = 1000,
        **options: Any,
    ) -> None:
        super().__init__(*network, exact_max=exact_max, inducing_points=inducing_points, **options)
        if kernel not in ("rbf", "matern"):
            raise ValueError(f"model.kernel must be rbf or matern; got {kernel!r}")
        groups = self.hparams.feature_groups or {}
        graph_only = {**self.hparams, "feature_groups": None}  # features go to the kernel
        self.encoder, self.pool, self.project = encoder_readout(
            AttributeDict(graph_only), feature_dim
        )
        dims = {"active_dims": torch.arange(feature_dim)} if groups else {}
        base = (
            gpytorch.kernels.RBFKernel(ard_num_dims=feature_dim, **dims)
            if kernel == "rbf"
            else gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=feature_dim, **dims)
        )
        kernels = [gpytorch.kernels.ScaleKernel(base), *feature_kernels(groups, feature_dim)]
        self.gp = ExactGPModel(sum_kernel(kernels), gpytorch.likelihoods.GaussianLikelihood())

    def features(self, batch: Batch) -> Tensor:
        h = pooled(self, batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs)
        z = torch.tanh(self.project(h))
        features = self.molecule_features(batch)
        if features is None:
            return z
        scaler = self.feature_scaler
        return torch.cat([z, features if scaler is None else scaler(features)], dim=1)

    def loss(self, batch: Batch, target: Tensor) -> Tensor:
        """Negative exact marginal log likelihood of the batch as a GP data set, per molecule."""
        z = self.features(batch)
        self.gp.set_train_data(z, target, strict=False)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(self.gp.likelihood, self.gp)
        return -mll(self.gp(z), target)

    def on_train_end(self) -> None:
        self.gp.set_train_data(None, None, strict=False)
        self.condition(*self.training_set(self.training_loader()))

    def optimizer_groups(self) -> list[dict]:
        """The encoder at ``lr`` (with weight decay), the GP hyperparameters at ``gp_lr``."""
        gp_params = set(self.gp.parameters())
        encoder = [p for p in self.parameters() if p not in gp_params]
        return [
            {"params": encoder, "lr": self.hparams.lr},
            {"params": list(gp_params), "lr": self.hparams.gp_lr, "weight_decay": 0.0},
        ]
