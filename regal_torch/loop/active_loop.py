"""The active-learning loop: train -> predict pool -> select -> label -> record -> checkpoint.

Model protocol: each round builds ``instantiate(cfg.model)(**dm.model_inputs(),
target_scaling=...)`` (with ``loop.warm_start``, loads the previous round's weights into it),
trains it with ``trainer.fit(model, datamodule=dm)`` and predicts test, val and pool with
:func:`regal_torch.models.predict_rows.predict` (``trainer.predict`` streamed batch by batch
into per-field buffers of only the fields asked for, then the model's optional
``complete_prediction`` hook, where GPs attach their block covariance). With
``loop.recalibrate``, the pool prediction that the strategy sees has its variance multiplied
by the factor fitted on the validation set (:mod:`regal_torch.calibration`), or with
``loop.local_neighbours`` replaced by the local variance from the validation errors nearest
in the embedding (:mod:`regal_torch.local_calibration`).

Under a Trainer of several processes (DDP), every process runs the loop in step and only the
first selects and writes (:mod:`regal_torch.loop.processes`).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException

from regal_torch.calibration import calibration_metrics
from regal_torch.conformal import interval_metrics
from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.featurize import FEATURIZER_VERSION
from regal_torch.errors import RegalError
from regal_torch.files import RUN_HINT, write_csv
from regal_torch.local_calibration import (
    NeighbourCalibration,
    Recalibration,
    local_calibration_metrics,
    neighbour_count,
    recalibration,
)
from regal_torch.loop.checks import check_budget, check_capabilities, check_config
from regal_torch.loop.cold_start import initial_picks
from regal_torch.loop.labelling import Labelling
from regal_torch.loop.loggers import RunLoggers
from regal_torch.loop.processes import check_processes, process_rank
from regal_torch.loop.progress import RoundProgress, round_line
from regal_torch.loop.seeds import CANDIDATES, INITIAL, SELECT, SKETCH, TRAIN, round_seed
from regal_torch.loop.state import RunState
from regal_torch.metrics import regression_metrics
from regal_torch.models.capabilities import capabilities_of
from regal_torch.models.predict_rows import predict
from regal_torch.models.prediction import Prediction, PredictionRequest
from regal_torch.neutral_keys import fingerprint
from regal_torch.outputs.data_card import DataCard
from regal_torch.outputs.model_file import Calibration
from regal_torch.outputs.run_outputs import write_run_outputs
from regal_torch.quiet import show_progress
from regal_torch.strategies.base import SelectionContext


class ActiveLoop:
    """Active learning over one run directory.

    ``ActiveLoop(cfg, run_dir)`` checks the options and what the model provides against what
    the strategies need, then builds the dataset, datamodule and strategy; it touches nothing
    in ``run_dir``. :meth:`open` opens the run folder: it resumes from ``state.pt`` (a
    :class:`RunState` checked against the config) or labels the initial set, and in learn mode
    takes the labels given for pending picks. :meth:`run` (which opens first if needed) runs
    the remaining rounds.

    Round ``r`` (0 to ``loop.rounds``) trains a fresh model on the labeled set, scores it on
    the test set and, unless it is the last round, predicts the pool, selects
    ``loop.batch_size`` molecules and labels them (:meth:`_round` returns its result; nothing
    is written until the round is done). Then the round is recorded: its row of
    ``history.csv`` (a redone round's row replaces the old one), ``state.pt`` (atomically),
    ``history.csv`` and ``selected.csv``.

    Each round also predicts the validation set, fits one variance scale factor on it and
    records raw and recalibrated uncertainty metrics (:func:`calibration_metrics`). With
    ``loop.warm_start``, the trained weights go into ``state.pt`` with the round (so a
    resumed run continues from exactly the weights an uninterrupted one would). Where labels
    come from (benchmark, query files, a closed loop's oracle) is
    :class:`regal_torch.loop.labelling.Labelling`'s.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        check_config(cfg)
        if cfg.mode not in ("benchmark", "learn"):
            raise RegalError(f"mode={cfg.mode!r}: use mode=benchmark or mode=learn")
        self.strategy = instantiate(cfg.strategy)
        self.initial_strategy = instantiate(cfg.loop.initial_strategy)
        check_capabilities(cfg, self.strategy, self.initial_strategy)
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.learn = cfg.mode == "learn"
        self.state_path = self.run_dir / "state.pt"
        oracle_factory = instantiate(cfg.oracle)
        closed = oracle_factory.func.computes  # every label from a calculation
        self.dataset = instantiate(cfg.data.dataset)
        self.dm: ActiveDataModule = instantiate(
            cfg.data.datamodule,
            dataset=self.dataset,
            holdout_from_labeled=self.learn and not closed,
        )
        self.main = process_rank() == 0  # the process that selects and writes (DDP: rank 0)
        self.labels = Labelling(
            oracle_factory, self.dataset, self.dm, run_dir, self.learn, cfg.labels, self.main
        )
        probe = instantiate(cfg.trainer)(logger=False, enable_progress_bar=False)
        check_processes(probe, get_class(cfg.model._target_), closed)
        self.unit = self.dataset.target_units.get(self.dm.target, "")
        check_budget(cfg, self.dm, self.learn and not closed)
        self.loggers = RunLoggers(cfg, run_dir, active=self.main)
        self.show_progress = self.main and show_progress(cfg.get("progress", "auto"))
        self.fingerprint = {**fingerprint(cfg), "n_molecules": len(self.dataset)}
        if closed:  # the oracle options are neutral, but not a switch to or from this
            self.fingerprint["oracle_computes"] = True
        self.history: list[dict[str, Any]] = []
        self.weights: dict[str, torch.Tensor] | None = None
        self.next_round: int | None = None  # set by open()
        self.progress: RoundProgress | None = None  # made by open()

    @property
    def pending(self) -> torch.Tensor | None:
        """Learn mode: the picks awaiting their labels, or None."""
        return self.labels.pending

    @property
    def pending_query(self) -> Path | None:
        """The query file written for :attr:`pending`."""
        return self.labels.pending_query

    def open(self) -> ActiveLoop:
        """Open the run folder: resume from its state or label the initial set (learn mode:
        take the labels given for pending picks). Does nothing if already open.

        Raises:
            RegalError: a state that is corrupt or of another config, labels that cannot be
                read, a learn-mode folder holding labels but no state, ...
        """
        if self.next_round is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        n_pool = len(self.dm.pool)  # nothing labeled yet: the pool's size before round 0

        def candidates(m: int | None) -> int | None:  # m >= the pool: every round sees it all
            return None if m is None or m >= n_pool else m

        state = RunState.load(self.state_path, self.fingerprint, {"loop.candidates": candidates})
        self.labels.open(state)
        if state is None:
            picks = None
            if self.labels.picks_initial:
                seed = round_seed(self.cfg.seed, 0, INITIAL)
                picks = initial_picks(self.cfg, self.initial_strategy, self.dataset, self.dm, seed)
            self.labels.label_initial(picks)
            self.next_round = 0
        else:
            self.history, self.weights = state.history, state.weights
            # A last round that picked nothing is redone only if loop.rounds grew since.
            done = state.acquired or state.round >= self.cfg.loop.rounds
            if self.pending is not None:
                if not self.labels.closed:  # a closed loop computes its pending labels in run()
                    self._ingest(state.round)
                done = True
            self.next_round = state.round + 1 if done else state.round
        self.progress = RoundProgress(self.next_round, self.cfg.loop.rounds, self.show_progress)
        return self

    def _ingest(self, r: int) -> None:
        """Learn mode: take the labels for round ``r``'s picks, then record them."""
        self.labels.ingest(r)
        self._save(r, acquired=True)
        self._write_tables()

    def _compute_pending(self) -> None:
        """A closed loop's pending labels: the start set of a new run (asked, and the state
        saved first, so that a run killed while computing resumes there), or the picks of the
        round a killed run was computing."""
        if not self.state_path.exists():
            self.labels.ask_start_set()
            self._save(-1, acquired=False)
        self._ingest(self.next_round - 1)

    def run(self) -> list[dict[str, Any]]:
        """Open the run folder if needed and run the remaining rounds; returns the history
        (one dict per round)."""
        self.open()
        if self.labels.closed and self.pending is not None:
            self._compute_pending()
        rounds = self.cfg.loop.rounds
        self._write_tables()  # the tables may lag the state if a run died between the two
        if self.next_round > rounds:
            if self.main:
                print(f"{self.run_dir}: all {rounds} rounds already done", flush=True)
            self.progress.close()
            return self.history
        self.loggers.start(self.history[: self.next_round])
        try:
            for r in range(self.next_round, rounds + 1):
                self._record(r, self._round(r, acquire=r < rounds))
                if self.pending is not None and not self.labels.closed:
                    break  # for the user's labels
                if self.pending is not None:
                    self._ingest(r)
        finally:
            self.progress.close()
            self.loggers.close()
        return self.history

    def _trainer(self, r: int) -> pl.Trainer:
        """Round ``r``'s Trainer: the ``trainer`` config plus this run's folder, logger and bars.

        ``trainer.enable_progress_bar: null`` (the presets) shows Lightning's per-epoch bar
        exactly when the round bar is shown, one line below it.
        """
        partial = instantiate(self.cfg.trainer)
        kwargs: dict[str, Any] = {
            "default_root_dir": self.run_dir,
            "logger": self.loggers.for_round(r),
        }
        epoch_bar = partial.keywords.get("enable_progress_bar")
        kwargs["enable_progress_bar"] = self.show_progress if epoch_bar is None else epoch_bar
        if kwargs["enable_progress_bar"] and self.show_progress:
            callbacks = list(partial.keywords.get("callbacks") or [])
            kwargs["callbacks"] = [*callbacks, TQDMProgressBar(process_position=1, leave=False)]
        return partial(**kwargs)

    def _model(self, r: int) -> pl.LightningModule:
        """Round ``r``'s model: fresh (seeded), or the previous round's weights with
        ``loop.warm_start``; built for the data's inputs (``dm.model_inputs()``: sizes and, on
        a table, the labeled rows' feature scaling) and trained on the labeled set's target
        scaling, either way."""
        pl.seed_everything(round_seed(self.cfg.seed, r, TRAIN), verbose=False)
        scaling = self.dm.target_scaler(self.cfg.model.get("baseline"))
        model = instantiate(self.cfg.model)(**self.dm.model_inputs(), target_scaling=scaling)
        if self.cfg.loop.warm_start and self.weights is not None:
            model.load_weights(self.weights)  # keeps this round's scaling
        return model

    def _round(self, r: int, acquire: bool) -> dict[str, Any]:
        """Train, score and (with ``acquire``) pick and label round ``r``; returns its row of
        ``history.csv`` (metrics and timings). Nothing is written to the run folder."""
        features = getattr(self.dataset, "molecule_features", None)
        featurised = (0, 0.0) if features is None else (features.computed, features.seconds)
        model = self._model(r)
        trainer = self._trainer(r)
        start = time.perf_counter()
        declared = capabilities_of(type(model))
        try:
            if declared is None or declared.validates:
                trainer.fit(model, datamodule=self.dm)
            else:  # no validation step: no val loader to skip (and warn about)
                trainer.fit(model, train_dataloaders=self.dm.train_dataloader())
        except SIGTERMException:  # Lightning ends fit with this (a SystemExit of status 0)
            raise _terminated(r) from None
        self._stop_if_terminated(trainer, r)  # e.g. during on_train_end, after the last batch
        row: dict[str, Any] = {"round": r, "n_labeled": len(self.dm.labeled)}
        row["seconds_train"] = time.perf_counter() - start
        start = time.perf_counter()
        metrics, local = self._score(r, trainer, model)
        recalibrate = recalibration(self.cfg.loop.recalibrate, metrics["var_scale"], local)
        row.update(metrics)
        row["seconds_test"] = time.perf_counter() - start
        outputs = self.cfg.predict.get("outputs", True)
        if outputs and (not acquire or self.cfg.predict.every_round):  # before the state
            self._write_outputs(r, trainer, model, metrics, local)
        row["seconds_predict"], row["seconds_select"] = (
            self._acquire(r, trainer, model, recalibrate) if acquire else (math.nan, math.nan)
        )
        if self.cfg.loop.warm_start:
            self.weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if features is not None:  # molecules whose features this round computed (all phases)
            row["n_featurised"] = features.computed - featurised[0]
            row["seconds_features"] = features.seconds - featurised[1]
        return row

    def _score(
        self, r: int, trainer: pl.Trainer, model: pl.LightningModule
    ) -> tuple[dict[str, float], NeighbourCalibration | None]:
        """Test metrics of round ``r``'s model (accuracy, raw and recalibrated uncertainty,
        local variance, conformal intervals on the std the run uses), and the local
        calibration (``loop.local_neighbours``; None without it)."""
        truth, test_set, val_set = self.dm.truth, self.dm.test, self.dm.val
        test = self._predict(r, trainer, model, test_set)
        val = self._predict(r, trainer, model, val_set)
        metrics = regression_metrics(test, truth[test_set], "test")
        metrics.update(calibration_metrics(test, truth[test_set], val, truth[val_set]))
        local = None
        k = neighbour_count(self.cfg.loop.get("local_neighbours"), len(val_set))
        if k is not None:
            local = NeighbourCalibration(val, truth[val_set], k)
            metrics.update(local_calibration_metrics(local, test, truth[test_set]))
            test_var, val_var = local.variance(test), local.validation_variance()
        else:
            test_var, val_var = test.var * metrics["var_scale"], val.var * metrics["var_scale"]
        metrics.update(
            interval_metrics(
                test.mean, test_var.sqrt(), truth[test_set], val.mean, val_var.sqrt(),
                truth[val_set], self.cfg.predict.interval,
            )
        )  # fmt: skip
        return metrics, local

    def _record(self, r: int, row: dict[str, Any]) -> None:
        """Record finished round ``r``: its row (replacing a redone round's), then the state,
        the tables, the logger and the progress line."""
        if r < len(self.history):
            self.history[r] = row
        else:
            self.history.append(row)
        self._save(r, acquired=r < self.cfg.loop.rounds and self.pending is None)
        self._write_tables()
        self.loggers.log_round(row)
        self._report(row)

    def _save(self, r: int, acquired: bool) -> None:
        """Write ``state.pt`` after round ``r`` (-1: a closed loop's start set); only the first
        process of a multi-process run writes."""
        if not self.main:
            return
        state = RunState(
            fingerprint=self.fingerprint,
            round=r,
            acquired=acquired,
            history=self.history,
            weights=self.weights,
            **self.labels.state_fields(),
        )
        state.save(self.state_path)

    def _pool_request(self, r: int) -> PredictionRequest | None:
        """What round ``r``'s pool (and labeled) prediction must hold: what the strategy
        uses, plus mean and variance for learn mode's query file and the embedding for the
        local variance; None when nothing is needed (``strategy=random`` in benchmark mode).
        Gradient sketches are drawn from the round's own seed."""
        request = self.strategy.request()
        extra = {"mean", "var"} if self.learn else set()
        if request is None and not extra:
            return None
        request = request or PredictionRequest(frozenset())
        fields = set(request.fields) | extra
        if self.cfg.loop.get("local_neighbours") is not None and request.uncertainty:
            fields.add("embedding")
        seed = round_seed(self.cfg.seed, r, SKETCH)
        return replace(request, fields=frozenset(fields), sketch_seed=seed)

    def _acquire(
        self, r: int, trainer: pl.Trainer, model: pl.LightningModule, recalibrate: Recalibration
    ) -> tuple[float, float]:
        """Predict the candidates (only what the strategy uses), select a batch and label it
        (learn mode: ask for the labels); returns the seconds of the prediction and of the
        selection.

        The predictions the strategy sees go through ``recalibrate`` first.
        """
        labeled, candidates = self.dm.labeled, self._candidates(r)
        start = time.perf_counter()
        request = self._pool_request(r)
        pool = on_labeled = None
        if request is not None:
            pool = recalibrate(self._predict(r, trainer, model, candidates, request))
            if self.strategy.needs_labeled_prediction:
                on_labeled = recalibrate(self._predict(r, trainer, model, labeled, request))
        seconds_predict = time.perf_counter() - start
        start = time.perf_counter()
        context = SelectionContext(
            pool=candidates,
            labeled=labeled,
            generator=torch.Generator().manual_seed(round_seed(self.cfg.seed, r, SELECT)),
            labeled_prediction=on_labeled,
            labeled_targets=self.dm.labels[labeled],
        )
        # Under DDP the first process selects and the others take its picks.
        picks = self.strategy.select(pool, self.cfg.loop.batch_size, context) if self.main else None
        picks = trainer.strategy.broadcast(picks, src=0)
        seconds_select = time.perf_counter() - start
        mean = std = None
        if self.learn and self.main:  # the query file shows the picks' predictions
            row_of = {p: i for i, p in enumerate(candidates.tolist())}
            chosen = pool.index_select(torch.tensor([row_of[p] for p in picks.tolist()]))
            mean, std = chosen.mean, chosen.std
        self.labels.ask(r, picks, mean, std)
        return seconds_predict, seconds_select

    def _candidates(self, r: int) -> torch.Tensor:
        """Round ``r``'s candidates: the pool, or with ``loop.candidates=m`` a random subset of
        ``m`` pool molecules (in pool order, drawn from the round's seed), ``[m]``."""
        pool, m = self.dm.pool, self.cfg.loop.get("candidates")
        if m is None or m >= len(pool):
            return pool
        generator = torch.Generator().manual_seed(round_seed(self.cfg.seed, r, CANDIDATES))
        return pool[torch.randperm(len(pool), generator=generator)[:m].sort().values]

    def _predict(
        self,
        r: int,
        trainer: pl.Trainer,
        model: pl.LightningModule,
        positions: torch.Tensor,
        request: PredictionRequest | None = None,
    ) -> Prediction:
        """Round ``r``'s prediction over ``positions``, stopped by a SIGTERM received during it
        by any process (Lightning lets predict run on to its end)."""
        prediction = predict(trainer, model, self.dm.loader(positions), request)
        self._stop_if_terminated(trainer, r)
        return prediction

    @staticmethod
    def _stop_if_terminated(trainer: pl.Trainer, r: int) -> None:
        """Stop round ``r`` if any process received SIGTERM (SLURM preemption, ``kill``):
        Lightning lets ``predict`` and the end of ``fit`` run on after it."""
        if trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False):
            raise _terminated(r)

    def _write_outputs(
        self,
        r: int,
        trainer: pl.Trainer,
        model: pl.LightningModule,
        metrics: dict[str, float],
        local: NeighbourCalibration | None,
    ) -> None:
        """Round ``r``'s predictions for every molecule and its model
        (:mod:`regal_torch.outputs.run_outputs`)."""
        name = "predictions.csv" if r == self.cfg.loop.rounds else f"predictions_round_{r:03d}.csv"
        calibration = Calibration(
            var_scale=metrics["var_scale"],
            conformal_q=metrics["conformal_q"],
            interval=metrics["interval"],
            local=None if local is None else local.state(),
        )
        card = DataCard.of_run(
            self.cfg.data, self.dataset, self.dm.target, self.unit, FEATURIZER_VERSION
        )
        stop = lambda: self._stop_if_terminated(trainer, r)  # noqa: E731
        write_run_outputs(
            self.run_dir, name, trainer, model, self.dm, self.labels.failed, calibration, local,
            card, self.cfg.predict.chunk_rows, self.main, stop,
        )  # fmt: skip

    def _write_tables(self) -> None:
        if not self.main:
            return
        tables = self.labels.tables()
        if self.history:  # no history.csv before the first round is done
            # the target's unit goes with the numbers (empty where the dataset has none)
            tables.append(("history.csv", pd.DataFrame(self.history).assign(unit=self.unit)))
        for name, frame in tables:
            write_csv(self.run_dir / name, frame, RUN_HINT)

    def _report(self, row: dict[str, Any]) -> None:
        if self.main:
            line = round_line(row, self.cfg.loop.rounds, self.unit)
            unit = f" {self.unit}" if self.unit else ""
            self.progress.round_done(line, row["n_labeled"], row["test_mae"], unit)


def _terminated(r: int) -> RegalError:
    """The error that stops a run on SIGTERM (SLURM preemption, ``kill``) during round ``r``.

    Lightning catches SIGTERM inside ``fit`` and ``predict``; the round under way is dropped
    (never recorded half-trained) and the run exits with an error, not with status 0.
    """
    return RegalError(
        f"stopped by SIGTERM during round {r}; the finished rounds are kept: "
        "run the same command again to resume"
    )
