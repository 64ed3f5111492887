"""The active-learning loop: train -> predict pool -> select -> label -> record -> checkpoint.

Model protocol: each round builds ``instantiate(cfg.model)(**dm.model_inputs(),
target_scaling=...)`` (with ``loop.warm_start``, loads the previous round's weights into it),
trains it with ``trainer.fit(model, datamodule=dm)`` (:mod:`regal_torch.loop.sigterm`),
scores it on the test and validation molecules (:mod:`regal_torch.loop.scoring`) and picks
the next batch (:mod:`regal_torch.loop.acquisition`), predicting with
:func:`regal_torch.models.predict_rows.predict` (``trainer.predict`` streamed batch by batch
into per-field buffers of only the fields asked for, then the model's optional
``complete_prediction`` hook, where GPs attach their block covariance). With
``loop.recalibrate``, the pool prediction that the strategy sees has its variance multiplied
by the factor fitted on the validation set (:mod:`regal_torch.uncertainty.calibration`), or with
``loop.local_neighbours`` replaced by the local variance from the validation errors nearest
in the embedding (:mod:`regal_torch.uncertainty.local_calibration`).

Under a Trainer of several processes (DDP), every process runs the loop in step and only the
first selects and writes (:mod:`regal_torch.loop.processes`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.molecule_graphs import FEATURIZER_VERSION
from regal_torch.errors import RegalError
from regal_torch.files import RUN_HINT, write_csv
from regal_torch.loop.acquisition import acquire as acquire_batch
from regal_torch.loop.checks import check_budget, check_capabilities, check_config
from regal_torch.loop.cold_start import initial_picks
from regal_torch.loop.labelling import Labelling
from regal_torch.loop.loggers import RunLoggers
from regal_torch.loop.processes import check_processes, process_rank
from regal_torch.loop.progress import RoundProgress, round_line
from regal_torch.loop.round_setup import round_model, round_trainer
from regal_torch.loop.scoring import score_round
from regal_torch.loop.seeds import INITIAL, round_seed
from regal_torch.loop.sigterm import fit, stop_if_terminated
from regal_torch.loop.state import RunState, option_effects
from regal_torch.models.capabilities import capabilities_of
from regal_torch.neutral_keys import fingerprint
from regal_torch.outputs.data_card import DataCard
from regal_torch.outputs.model_file import Calibration
from regal_torch.outputs.run_outputs import write_run_outputs
from regal_torch.quiet import show_progress
from regal_torch.uncertainty.local_calibration import NeighbourCalibration, recalibration


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

    With ``loop.warm_start``, the trained weights go into ``state.pt`` with the round (so a
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
        effects = option_effects(len(self.dm.pool))  # nothing labeled yet: the whole pool
        state = RunState.load(self.state_path, self.fingerprint, effects)
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

    def _round(self, r: int, acquire: bool) -> dict[str, Any]:
        """Train, score and (with ``acquire``) pick and label round ``r``; returns its row of
        ``history.csv`` (metrics and timings). Nothing is written to the run folder."""
        features = getattr(self.dataset, "molecule_features", None)
        featurised = (0, 0.0) if features is None else (features.computed, features.seconds)
        model = round_model(self.cfg, self.dm, r, self.weights)
        trainer = round_trainer(
            self.cfg, self.run_dir, self.loggers.for_round(r), self.show_progress
        )
        start = time.perf_counter()
        declared = capabilities_of(type(model))
        fit(trainer, model, self.dm, r, validates=declared is None or declared.validates)
        row: dict[str, Any] = {"round": r, "n_labeled": len(self.dm.labeled)}
        row["seconds_train"] = time.perf_counter() - start
        start = time.perf_counter()
        metrics, local = score_round(self.cfg, self.dm, trainer, model, r)
        recalibrate = recalibration(self.cfg.loop.recalibrate, metrics["var_scale"], local)
        row.update(metrics)
        row["seconds_test"] = time.perf_counter() - start
        outputs = self.cfg.predict.get("outputs", True)
        if outputs and (not acquire or self.cfg.predict.every_round):  # before the state
            self._write_outputs(r, trainer, model, metrics, local)
        row["seconds_predict"], row["seconds_select"] = (
            acquire_batch(
                r, trainer, model, recalibrate, self.cfg, self.strategy, self.dm, self.labels,
                self.main,
            )
            if acquire
            else (math.nan, math.nan)
        )  # fmt: skip
        if self.cfg.loop.warm_start:
            self.weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if features is not None:  # molecules whose features this round computed (all phases)
            row["n_featurised"] = features.computed - featurised[0]
            row["seconds_features"] = features.seconds - featurised[1]
        return row

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
        card = DataCard.of_run(
            self.cfg.data, self.dataset, self.dm.target, self.unit, FEATURIZER_VERSION
        )
        write_run_outputs(
            self.run_dir, name, trainer, model, self.dm, self.labels.failed,
            Calibration.of_round(metrics, local), local, card, self.cfg.predict.chunk_rows,
            self.main, lambda: stop_if_terminated(trainer, r),
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
