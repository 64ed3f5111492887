"""Which uncertainty ranks the study model's errors? (the 20,000-pool study; BENCHMARKS.md)

The study's model (``experiment=qm9_gap_benchmark``: GINE MC-dropout, 60 epochs, 10 samples)
trained on random labeled sets of 2,200 pool molecules (permutation seeds 0 and 1). Its mean
prediction is scored on the 5,000 test molecules with several per-molecule uncertainties,
all from the same trained network:

- ``MC-dropout std``: the spread of the 10 dropout passes (what the study's strategies use);
- ``last-layer posterior std``: Bayesian linear regression on the embedding (the input of the
  last linear layer) given the labeled molecules, noise 1% of the mean ``k(x, x)``
  (``strategy=covariance source=embedding``'s variance);
- ``distance to labeled``: Euclidean distance in the embedding to the nearest labeled
  molecule (what farthest-first and LCMD spread over);
- ``val-neighbour error``: root mean squared error of the model on the 20 validation molecules
  nearest in the embedding (leave-one-out on the validation set itself), a local error model.

Each is reported as Spearman(|error|, score) on the test set and as NLL after one scale factor
fitted on the validation molecules (the loop's recalibration), next to a constant std equal
to the validation RMSE. 'Ceiling' is the Spearman the score would reach if it were exactly
right: errors drawn as N(0, score^2) (mean over 20 draws, seed 0). It bounds what any score
with the same spread of values can reach on Gaussian errors. Writes the
``qm9-study-uncertainty`` section of BENCHMARKS.md.

    python scripts/bench_qm9_study_uncertainty.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate

from regal_torch.models.predict_rows import predict
from regal_torch.quiet import quiet_libraries
from regal_torch.strategies.features import (
    nearest_sq_distances,
    noise_variance,
    posterior_features,
)
from regal_torch.uncertainty.calibration import error_std_spearman, fit_variance_scale, gaussian_nll
from regal_torch.uncertainty.local_calibration import neighbour_variance

sys.path.insert(0, str(Path(__file__).parent))
from benchmarks_file import write_section  # noqa: E402
from study_setup import fit_on, random_pool_order, study_config  # noqa: E402

LABELS, ORDER_SEEDS, NEIGHBOURS = 2200, (0, 1), 20
SCORES = (
    "MC-dropout std",
    "last-layer posterior std",
    "distance to labeled",
    "val-neighbour error",
)


def scores(model_preds: dict, truth: dict) -> dict[str, dict[str, torch.Tensor]]:
    """Every score as a std-like quantity on ``val`` and ``test``, name -> split -> ``[N]``."""
    labeled = model_preds["labeled"].embedding
    sigma2 = noise_variance(labeled, 1e-2)
    val_sq_err = (model_preds["val"].mean - truth["val"]).square()
    out: dict[str, dict[str, torch.Tensor]] = {name: {} for name in SCORES}
    for split in ("val", "test"):
        pred = model_preds[split]
        post, _ = posterior_features(pred.embedding, labeled, sigma2)
        out["MC-dropout std"][split] = pred.std
        out["last-layer posterior std"][split] = post.square().sum(1).sqrt()
        out["distance to labeled"][split] = nearest_sq_distances(pred.embedding, labeled)[0].sqrt()
        out["val-neighbour error"][split] = neighbour_variance(
            pred.embedding, model_preds["val"].embedding, val_sq_err, NEIGHBOURS, split == "val"
        ).sqrt()
    return out


def ceiling(std: torch.Tensor, draws: int = 20) -> float:
    """Mean Spearman(|e|, std) for errors drawn exactly from N(0, std^2), ``std``: ``[N]``."""
    g = torch.Generator().manual_seed(0)
    rhos = [
        error_std_spearman(
            torch.zeros_like(std), std.square(), std * torch.randn(len(std), generator=g)
        )
        for _ in range(draws)
    ]
    return sum(rhos) / draws


def evaluate(preds: dict, truth: dict) -> dict[str, tuple[float, float, float]]:
    """Score name -> (test Spearman, its ceiling, test NLL after the val-fitted scale); plus
    'constant'."""
    val, test = preds["val"], preds["test"]
    results = {}
    for name, split in scores(preds, truth).items():
        val_var, test_var = split["val"].square() + 1e-12, split["test"].square() + 1e-12
        scale = fit_variance_scale(val.mean, val_var, truth["val"])
        results[name] = (
            error_std_spearman(test.mean, test_var, truth["test"]),
            ceiling(test_var.sqrt()),
            gaussian_nll(test.mean, scale * test_var, truth["test"]),
        )
    val_rmse = (val.mean - truth["val"]).square().mean()
    const = torch.full_like(test.mean, val_rmse.item())
    nan = float("nan")
    results["constant (val RMSE)"] = (nan, nan, gaussian_nll(test.mean, const, truth["test"]))
    return results


def main() -> None:
    quiet_libraries()
    torch.set_num_threads(1)
    cfg = study_config()
    dataset = instantiate(cfg.data.dataset)
    per_seed = []
    for seed in ORDER_SEEDS:
        dm = instantiate(cfg.data.datamodule, dataset=dataset)
        picks = random_pool_order(dm, seed)[:LABELS]
        dm, model, trainer, _ = fit_on(cfg, dataset, picks, seed)
        preds = {
            "labeled": predict(trainer, model, dm.loader(dm.labeled)),
            "val": predict(trainer, model, dm.loader(dm.val)),
            "test": predict(trainer, model, dm.loader(dm.test)),
        }
        truth = {"val": dm.truth[dm.val], "test": dm.truth[dm.test]}
        per_seed.append(evaluate(preds, truth))
        print(f"order seed {seed}: {per_seed[-1]}", flush=True)
    lines = [
        "## QM9 study: which uncertainty ranks the errors (2,200 random labels)",
        "",
        "The study's model trained on 2,200 random pool molecules (permutation and training",
        f"seeds {', '.join(map(str, ORDER_SEEDS))}), its mean scored on the 5,000 test molecules"
        " with uncertainties from the same network (definitions: the script's docstring).",
        "Spearman(|error|, score) on the test set; NLL (nats) after one variance factor fitted",
        "on the 1,000 validation molecules; 'constant': a std equal to the validation RMSE;",
        "ceiling: the Spearman the score would reach if it were exactly right (errors drawn",
        "from N(0, score^2)), the most a score with that spread of values can reach.",
        f"1 thread; 1-minute load average when done: {os.getloadavg()[0]:.1f}.",
        "",
        "| uncertainty | "
        + " | ".join(f"Spearman (seed {s}) | ceiling | NLL" for s in ORDER_SEEDS)
        + " |",
        "| --- |" + " ---: | ---: | ---: |" * len(ORDER_SEEDS),
    ]
    for name in per_seed[0]:
        cells = []
        for results in per_seed:
            rho, top, nll = results[name]
            cells += ["n/a" if rho != rho else f"{rho:.2f}", "n/a" if top != top else f"{top:.2f}"]
            cells.append(f"{nll:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    write_section(
        "qm9-study-uncertainty",
        "\n".join(lines),
        reproduce="python scripts/bench_qm9_study_uncertainty.py",
    )


if __name__ == "__main__":
    main()
