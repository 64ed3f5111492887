"""Exact GP on fixed descriptors: RDKit fingerprints with a Tanimoto kernel on molecules, a
table's standardised features with an RBF kernel (one length scale per feature) on tables."""

from __future__ import annotations

import gpytorch
import torch
from torch import Tensor
from torch_geometric.data import Batch

from regal_torch.errors import RegalError
from regal_torch.models.feature_kernels import feature_kernels, sum_kernel
from regal_torch.models.feature_scaling import FeatureScaler
from regal_torch.models.gp_prior import ExactGPModel
from regal_torch.models.posterior_regressor import PosteriorRegressor
from regal_torch.models.tanimoto import TanimotoKernel, morgan_fingerprints
from regal_torch.models.target_scaling import TargetScaler
from regal_torch.option_rules import integer, number, switch


class FingerprintGP(PosteriorRegressor):
    r"""Exact GP regression on Morgan fingerprints: :math:`y = c + f(x) + \varepsilon`,
    :math:`f \sim \mathcal{GP}(0, s\,k_\mathrm{Tanimoto})`, :math:`\varepsilon \sim N(0, \sigma^2)`.

    The descriptors are fixed, so the model has only three hyperparameters (``c``, ``s``,
    ``sigma^2``) on standardised targets, fitted full-batch: the whole fit is the first
    training step of ``Trainer.fit`` (Lightning's manual optimisation, with the Adam
    optimiser of :meth:`configure_optimizers`). It computes the fingerprints of the whole
    training set from the batches' ``smiles``, takes ``fit_iters`` Adam steps on the exact
    marginal likelihood (Cholesky, no CG), conditions the GP on the whole training set and
    asks the Trainer to stop, which then validates (``val/mae``) and ends; so
    ``trainer.max_epochs`` does not matter. Prediction gives mean, variance (with noise),
    the fingerprints as ``embedding`` and, through ``complete_prediction``, the block
    posterior covariance (see :class:`PosteriorRegressor`).

    The Tanimoto kernel on binary fingerprints is the standard similarity of molecules and
    needs no feature scaling or lengthscales; fingerprints are exact and fast to compute
    (thousands of molecules per second).

    On a table (``edge_dim=None``) the descriptors are the rows' ``node_dim`` features,
    standardised (``feature_scaling``), and the kernel is RBF with one length scale per feature
    (ARD, regAL's default), :math:`k(a, b) = \exp(-\frac12 \sum_j (a_j - b_j)^2 / \ell_j^2)`;
    the length scales are fitted with the other hyperparameters.

    With molecule features (``data.features``, handed in as ``feature_groups``), the GP
    inputs are the fingerprint then the standardised features, and the kernel is the sum of
    the Tanimoto kernel and one RBF kernel per feature group
    (:mod:`regal_torch.models.feature_kernels`); ``fingerprint=False`` leaves the Tanimoto
    kernel out (a GP on the features alone).

    Args:
        node_dim: Ignored on molecules; a table's number of features.
        edge_dim: Ignored on molecules; None for a table.
        radius: Morgan radius (default 2, i.e. ECFP4).
        fp_size: Fingerprint bits (default 2048).
        fit_iters: Adam steps on the marginal likelihood per fit (default 100).
        lr: Adam learning rate of the hyperparameters (default 0.1).
        fingerprint: Use the Morgan fingerprint's Tanimoto kernel (default True; False needs
            molecule features).
        target_scaling: The target's scaling; None (default): the datamodule's at fit start.
        feature_scaling: The item features' standardisation (see
            :class:`regal_torch.models.regressor.Regressor`).
        feature_groups: The molecule features' groups and widths; None: none.
        baseline: A Delta target's feature column (see
            :class:`regal_torch.models.regressor.Regressor`).

    Shapes:
        batch: a PyG ``Batch`` of B graphs with ``smiles`` (B strings), or of B table rows
        ``x`` ``[B, node_dim]``; ``features`` -> ``[B, fp_size]`` (``[B, node_dim]``);
        ``forward`` -> ``[B]``.
    """

    option_rules = {
        "radius": integer(0),
        "fp_size": integer(1),
        "fit_iters": integer(1),
        "lr": number(0, low_open=True),
        "fingerprint": switch,
    }

    def __init__(
        self,
        node_dim: int = 0,
        edge_dim: int | None = 0,
        radius: int = 2,
        fp_size: int = 2048,
        fit_iters: int = 100,
        lr: float = 0.1,
        fingerprint: bool = True,
        target_scaling: TargetScaler | None = None,
        feature_scaling: FeatureScaler | None = None,
        feature_groups: dict[str, int] | None = None,
        baseline: str | None = None,
    ) -> None:
        super().__init__(
            target_scaling=target_scaling, feature_scaling=feature_scaling, baseline=baseline
        )
        self.save_hyperparameters(ignore=["target_scaling", "feature_scaling"])
        self.automatic_optimization = False
        self.table = edge_dim is None
        if self.table:
            kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=node_dim))
        else:
            if not fingerprint and not feature_groups:
                raise RegalError(
                    "model.fingerprint=false leaves the GP the molecule features alone, and "
                    "this data has none: add data.features=[...] (e.g. [minimol])"
                )
            dims = torch.arange(fp_size) if feature_groups else None
            kernels = [gpytorch.kernels.ScaleKernel(TanimotoKernel(active_dims=dims))]
            kernels = kernels if fingerprint else []
            kernels += feature_kernels(feature_groups or {}, fp_size if fingerprint else 0)
            kernel = sum_kernel(kernels)
        self.gp = ExactGPModel(kernel, gpytorch.likelihoods.GaussianLikelihood())

    def features(self, batch: Batch) -> Tensor:
        scaler = self.feature_scaler
        if self.table:
            return batch.x if scaler is None else scaler(batch.x)
        parts = []
        if self.hparams.fingerprint:
            smiles = getattr(batch, "smiles", None)
            if smiles is None:
                raise RegalError(
                    "model=gp needs the molecules' SMILES in each batch (batch.smiles)"
                )
            fps = morgan_fingerprints(smiles, self.hparams.radius, self.hparams.fp_size)
            parts.append(fps.to(self.device))
        if self.hparams.feature_groups:
            parts.append(batch.features if scaler is None else scaler(batch.features))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.gp.parameters(), lr=self.hparams.lr)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        """The whole fit, on every training molecule (not only ``batch``), then stop.

        Later calls (a Trainer made to go on, e.g. by ``min_epochs``) do nothing.
        """
        if self.posterior is not None:
            return
        train_x, train_y = self.training_set(self.training_loader())
        self.gp.train()
        self.gp.set_train_data(train_x, train_y, strict=False)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(self.gp.likelihood, self.gp)
        optimizer = self.optimizers()
        with gpytorch.settings.max_cholesky_size(10**6):
            for _ in range(self.hparams.fit_iters):
                optimizer.zero_grad()
                loss = -mll(self.gp(train_x), train_y)
                self.manual_backward(loss)
                optimizer.step()
                self.log_loss(loss.detach(), len(train_y))
        self.gp.set_train_data(None, None, strict=False)
        self.condition(train_x, train_y)
        self.trainer.should_stop = True
