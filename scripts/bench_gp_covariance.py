"""Time ``strategy=covariance`` on a GP posterior (DKL's): cached factors vs per-pick solves.

The covariance strategy asks the GP for one covariance column over the whole pool per pick.
The provider (``FeatureCovariance``) whitens the pool once per selection; before, every column
solved the pool against the labeled set's Cholesky factor again. Both paths run here, in one
process, on the same posterior: an RBF-ARD GP (DKL's kernel) on 16-dimensional tanh features
(DKL's default ``feature_dim``), random hyperparameters, a pool of 20,000 (the QM9 study's),
k = 200 picks (its batch) and L labeled molecules, exact posterior (L <= DKL's exact_max) and
the sparse one (1,000 inducing points). The per-pick path is timed on its first ``PICKS_OLD``
picks and scaled to k (each of its picks costs the same two solves). Picks of the two paths
are compared over those first picks.

    python scripts/bench_gp_covariance.py
"""

from __future__ import annotations

import os
import platform
import time

import gpytorch
import torch
from benchmarks_file import write_section

from regal_torch.models.exact_gp import ExactPosterior
from regal_torch.models.gp_prior import ExactGPModel
from regal_torch.models.posterior_regressor import FeatureCovariance
from regal_torch.models.sparse_gp import SparsePosterior
from regal_torch.models.target_scaling import TargetScaler
from regal_torch.strategies.covariance import greedy_max_det

POOL, DIM, K, PICKS_OLD, NOISE = 20_000, 16, 200, 10, 1e-2
LABELED = (1_000, 2_200)


def posterior(labeled: int, sparse: bool) -> tuple[ExactPosterior | SparsePosterior, torch.Tensor]:
    """A posterior on ``labeled`` random features, and the pool's features ``[POOL, DIM]``."""
    g = torch.Generator().manual_seed(labeled)
    x = torch.tanh(torch.randn(labeled + POOL, DIM, generator=g))
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=DIM))
    kernel.base_kernel.lengthscale = 0.5 + torch.rand(DIM, generator=g)
    gp = ExactGPModel(kernel, gpytorch.likelihoods.GaussianLikelihood())
    gp.likelihood.noise = 0.05
    train_x, y = x[:labeled], torch.randn(labeled, generator=g)
    if sparse:
        return SparsePosterior(gp, train_x, y, TargetScaler(), inducing=train_x[:1000]), x[labeled:]
    return ExactPosterior(gp, train_x, y, TargetScaler()), x[labeled:]


def select(provider, diag: torch.Tensor, k: int) -> tuple[float, list[int]]:
    """Seconds and picks of greedy MaxDet over ``provider``'s columns."""
    everyone = torch.arange(len(diag))

    def column(row: int) -> torch.Tensor:
        return provider(everyone, torch.tensor([row]))[:, 0].to(diag.dtype)

    start = time.perf_counter()
    picks = greedy_max_det(diag, column, NOISE * diag.mean().item(), k)
    return time.perf_counter() - start, picks.tolist()


def per_pick(post, features):
    """The provider before the cache: both blocks' solves on every request."""

    def provider(rows, cols):
        same = (rows[:, None] == cols[None, :]).to(features.dtype)
        return post.covariance(features[rows], features[cols], same)

    return provider


def main() -> None:
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    rows = []
    for labeled in LABELED:
        for sparse in (False, True):
            post, features = posterior(labeled, sparse)
            _, diag = post.mean_var(features)
            new_s, new_picks = select(FeatureCovariance(post, features), diag, K)
            old_s, old_picks = select(per_pick(post, features), diag, PICKS_OLD)
            old_s *= K / PICKS_OLD
            same = new_picks[:PICKS_OLD] == old_picks
            kind = "sparse (1,000 inducing)" if sparse else "exact"
            rows.append((labeled, kind, old_s, new_s, old_s / new_s, same))
            print(rows[-1], flush=True)
    table = [
        "| labeled | posterior | per-pick solves (s) | cached (s) | speed-up | same picks |",
        "|---:|---|---:|---:|---:|---|",
    ]
    table += [
        f"| {n:,} | {kind} | {old:.1f} | {new:.2f} | {ratio:.0f}x | {'yes' if same else 'NO'} |"
        for n, kind, old, new, ratio, same in rows
    ]
    body = "\n".join(
        [
            "## GP covariance provider: one whitening per selection",
            "",
            f"`python scripts/bench_gp_covariance.py`: one `strategy=covariance` selection of {K}"
            f" from a pool of {POOL:,} on a GP posterior (RBF-ARD on {DIM}-d features, DKL's"
            " kernel), 1 thread. 'cached' is the provider now; 'per-pick solves' the one before"
            f" the cache (timed over its first {PICKS_OLD} picks, scaled to {K}); 'same picks'"
            " compares those picks.",
            f"Machine: {platform.processor() or platform.machine()}, load average"
            f" {load:.1f} at the start (other jobs were running: compare within the table).",
            "",
            *table,
        ]
    )
    write_section("gp-covariance", body)


if __name__ == "__main__":
    main()
