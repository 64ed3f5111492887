"""The active-learning loop: train -> predict pool -> select -> label -> record -> checkpoint.

Model protocol: each round builds ``instantiate(cfg.model)(**dm.model_inputs(),
target_scaling=...)`` (with ``loop.warm_start``, loads the previous round's weights into it),
trains it with ``trainer.fit(model, datamodule=dm)`` and predicts test, val and pool with
:func:`regal_torch.models.prediction.predict` (``trainer.predict`` streamed batch by batch
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

import io
import math
import time
from collections.abc import Callable
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

from regal_torch.calibration import calibration_metrics, scale_variance
from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.errors import RegalError
from regal_torch.local_calibration import NeighbourCalibration, local_calibration_metrics
from regal_torch.loop.checks import check_budget, check_capabilities, check_config
from regal_torch.loop.cold_start import initial_picks
from regal_torch.loop.loggers import RunLoggers
from regal_torch.loop.neutral_keys import fingerprint
from regal_torch.loop.oracle import BenchmarkOracle
from regal_torch.loop.processes import check_processes, process_rank
from regal_torch.loop.progress import RoundProgress, show_progress
from regal_torch.loop.queries import Answers, QueryOracle
from regal_torch.loop.seeds import CANDIDATES, INITIAL, SELECT, SKETCH, TRAIN, round_seed
from regal_torch.loop.state import atomic_write_bytes, load_state, save_state
from regal_torch.metrics import regression_metrics
from regal_torch.models.prediction import Prediction, PredictionRequest, predict
from regal_torch.strategies.base import SelectionContext

Recalibration = Callable[[Prediction], Prediction]


class ActiveLoop:
    """Active learning over one run directory.

    ``ActiveLoop(cfg, run_dir)`` checks the options and builds the dataset, datamodule and
    strategy; it touches nothing in ``run_dir``. :meth:`open` opens the run folder: it resumes
    from ``state.pt`` (checked against the config) or labels the initial set, and in learn
    mode takes the labels given for pending picks. :meth:`run` (which opens first if needed)
    runs the remaining rounds.

    Round ``r`` (0 to ``loop.rounds``) trains a fresh model on the labeled set, scores it on
    the test set and, unless it is the last round, predicts the pool, selects
    ``loop.batch_size`` molecules and labels them (:meth:`_round` returns its result; nothing
    is written until the round is done). Then the round is recorded: its row of
    ``history.csv`` (a redone round's row replaces the old one), ``state.pt`` (atomically),
    ``history.csv`` and ``selected.csv``.

    Each round also predicts the validation set, fits one variance scale factor on it and
    records raw and recalibrated uncertainty metrics (:func:`calibration_metrics`). With
    ``loop.warm_start``, the trained weights go into ``state.pt`` with the round (so a
    resumed run continues from exactly the weights an uninterrupted one would).

    Learn mode with an oracle that computes labels (``oracle=function``, ``oracle=command``;
    a closed loop) labels everything through it, the data's own labels unused: first the
    validation and test molecules (drawn from all molecules) and ``loop.initial_size``
    molecules picked by ``loop/initial_strategy`` (the start set, query file ``round_000``),
    then each round's picks, without stopping. Picks whose calculation failed are recorded
    (``failed.csv``, ``state.pt``) and leave the pool (or val and test) for good.
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
        self.oracle_factory = instantiate(cfg.oracle)
        self.closed = self.oracle_factory.func.computes  # every label from a calculation
        if self.closed and not self.learn:
            raise RegalError(
                f"oracle {self.oracle_factory.func.__name__} computes labels in mode=learn; "
                "add mode=learn (mode=benchmark reveals the labels the data holds)"
            )
        self.dataset = instantiate(cfg.data.dataset)
        self.dm: ActiveDataModule = instantiate(
            cfg.data.datamodule,
            dataset=self.dataset,
            holdout_from_labeled=self.learn and not self.closed,
        )
        if self.closed:  # val and test are labeled by the oracle too
            self.dm.truth = torch.full_like(self.dm.truth, float("nan"))
        self.main = process_rank() == 0  # the process that selects and writes (DDP: rank 0)
        probe = instantiate(cfg.trainer)(logger=False, enable_progress_bar=False)
        check_processes(probe, get_class(cfg.model._target_), self.closed)
        self.unit = getattr(self.dataset, "target_units", {}).get(self.dm.target, "")
        check_budget(cfg, self.dm, self.learn and not self.closed)
        self.loggers = RunLoggers(cfg, run_dir, active=self.main)
        self.show_progress = self.main and show_progress(cfg.get("progress", "auto"))
        self.fingerprint = {**fingerprint(cfg), "n_molecules": len(self.dataset)}
        if self.closed:  # the oracle options are neutral, but not a switch to or from this
            self.fingerprint["oracle_computes"] = True
        self.history: list[dict[str, Any]] = []
        self.weights: dict[str, torch.Tensor] | None = None
        self.label_rounds = torch.empty(0, dtype=torch.long)  # round each labeled one came in
        self.pending: torch.Tensor | None = None  # learn mode: picks awaiting the user's labels
        self.pending_query: Path | None = None  # and the query file written for them
        self.oracle: BenchmarkOracle | QueryOracle | None = None
        # learn mode: picks whose calculation failed, the round they were picked in, and why
        self.failed = torch.empty(0, dtype=torch.long)
        self.failed_rounds = torch.empty(0, dtype=torch.long)
        self.failed_reasons: list[str] = []
        self.next_round: int | None = None  # set by open()

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

        state = load_state(self.state_path, self.fingerprint, {"loop.candidates": candidates})
        self.oracle = self._oracle()
        if state is None:
            self._label_initial()
            self.next_round = 0
            return self
        if self.closed:
            self.dm.val, self.dm.test, self.dm.truth = state["val"], state["test"], state["truth"]
        self.dm.label(state["labeled"], state["labels"])
        self.label_rounds = state["label_rounds"]
        if "failed" in state:
            self._fail(state["failed"], state["failed_reasons"], state["failed_rounds"])
        self.history = state["history"]
        self.weights = state.get("weights")
        self.pending = state.get("pending")
        # A last round that picked nothing is redone only if loop.rounds grew since.
        done = state["acquired"] or state["round"] >= self.cfg.loop.rounds
        if self.pending is not None:
            if not self.closed:  # a closed loop computes its pending labels in run()
                self._ingest(state["round"])
            done = True
        self.next_round = state["round"] + 1 if done else state["round"]
        return self

    def _oracle(self) -> BenchmarkOracle | QueryOracle:
        if not self.learn:
            return BenchmarkOracle(self.dm.truth, getattr(self.dataset, "where", None))
        if self.closed and self.cfg.labels is not None:
            raise RegalError(
                f"labels={self.cfg.labels} gives labels for oracle=file's query files; this "
                "run's oracle computes them: leave labels= out"
            )
        ids = getattr(self.dataset, "ids", None) or [str(int(i)) for i in self.dm.mol_ids]
        return self.oracle_factory(
            run_dir=self.run_dir, ids=list(ids), smiles=list(self.dataset.smiles)
        )

    def _add_labels(self, positions: torch.Tensor, values: torch.Tensor, round_: int) -> None:
        self.dm.label(positions, values)
        rounds = torch.full((len(positions),), round_, dtype=torch.long)
        self.label_rounds = torch.cat([self.label_rounds, rounds])

    def _fail(self, positions: torch.Tensor, reasons: list[str], rounds: torch.Tensor) -> None:
        """Record failed calculations; those molecules leave the pool, val and test for good."""
        self.failed = torch.cat([self.failed, positions])
        self.failed_rounds = torch.cat([self.failed_rounds, rounds])
        self.failed_reasons = [*self.failed_reasons, *reasons]
        for name in ("pool", "val", "test"):
            kept = getattr(self.dm, name)
            setattr(self.dm, name, kept[~torch.isin(kept, positions)])

    def _ingest(self, r: int) -> None:
        """Learn mode: take the labels given (or computed) for round ``r``'s picks (``r`` -1:
        the start set of a closed loop); unfilled picks stay in the pool, failed ones leave it."""
        answers = self.oracle.answers(r + 1, self.pending)
        labeled, failed = len(answers.positions), len(answers.failed)
        self._fail(answers.failed, answers.reasons, torch.full((failed,), r + 1))
        if r < 0:
            answers = self._label_holdout(answers)
        self._add_labels(answers.positions, answers.values, r + 1)
        back = len(self.pending) - labeled - failed
        what = "start-set (validation, test, initial)" if r < 0 else "queried"
        if self.main:
            print(
                f"{labeled} of {len(self.pending)} {what} molecules labeled"
                + (f"; {back} back in the pool" if not self.closed else "")
                + (f"; {failed} failed, not offered again (failed.csv)" if failed else ""),
                flush=True,
            )
        self.pending = None
        self._save(r, acquired=True)
        self._write_tables()

    def _label_holdout(self, answers: Answers) -> Answers:
        """Give the validation and test molecules of a closed loop's start set their computed
        labels; returns the answers for the rest (the initial set).

        Raises:
            RegalError: fewer than 2 validation or test molecules got a label.
        """
        held = torch.isin(answers.positions, torch.cat([self.dm.val, self.dm.test]))
        self.dm.truth[answers.positions[held]] = answers.values[held]
        for name in ("val", "test"):
            if len(getattr(self.dm, name)) < 2:
                raise RegalError(
                    f"only {len(getattr(self.dm, name))} {name} molecules got a label from the "
                    f"oracle (failed.csv); the loop needs at least 2: raise "
                    f"data.datamodule.{name}_size"
                )
        return Answers(answers.positions[~held], answers.values[~held])

    def _label_initial(self) -> None:
        """Benchmark: ``loop.initial_size`` pool molecules picked by ``loop/initial_strategy``
        (:mod:`regal_torch.loop.cold_start`); learn: those with a label; a closed loop: the
        start set (validation, test and the initial picks) becomes pending, for :meth:`run`
        to compute."""
        pool = self.dm.pool
        if self.learn and not self.closed:
            picks = pool[torch.isfinite(self.dm.truth[pool])]
            self._add_labels(picks, self.dm.truth[picks], 0)
            return
        seed = round_seed(self.cfg.seed, 0, INITIAL)
        picks = initial_picks(self.cfg, self.initial_strategy, self.dataset, self.dm, seed)
        if not self.closed:
            self._add_labels(picks, self.oracle.query(picks), 0)
            return
        self.pending = torch.cat([self.dm.val, self.dm.test, picks])

    def _compute_pending(self) -> None:
        """A closed loop's pending labels: the start set of a new run (asked, and the state
        saved first, so that a run killed while computing resumes there), or the picks of the
        round a killed run was computing."""
        if not self.state_path.exists():
            nan = torch.full((len(self.pending),), float("nan"))
            self.pending_query = self.oracle.ask(0, self.pending, nan, nan)
            self._save(-1, acquired=False)
        self._ingest(self.next_round - 1)

    def run(self) -> list[dict[str, Any]]:
        """Open the run folder if needed and run the remaining rounds; returns the history
        (one dict per round)."""
        self.open()
        if self.closed and self.pending is not None:
            self._compute_pending()
        rounds = self.cfg.loop.rounds
        self._write_tables()  # the tables may lag the state if a run died between the two
        if self.next_round > rounds:
            if self.main:
                print(f"{self.run_dir}: all {rounds} rounds already done", flush=True)
            return self.history
        self.loggers.start(self.history[: self.next_round])
        self.progress = RoundProgress(self.next_round, rounds, self.show_progress)
        try:
            for r in range(self.next_round, rounds + 1):
                self._record(r, self._round(r, acquire=r < rounds))
                if self.pending is not None and not self.closed:
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
        model = self._model(r)
        trainer = self._trainer(r)
        start = time.perf_counter()
        try:
            trainer.fit(model, datamodule=self.dm)
        except SIGTERMException:  # Lightning ends fit with this (a SystemExit of status 0)
            raise _terminated(r) from None
        # e.g. during on_train_end, after the last batch; under DDP, on any process
        if trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False):
            raise _terminated(r)
        row: dict[str, Any] = {"round": r, "n_labeled": len(self.dm.labeled)}
        row["seconds_train"] = time.perf_counter() - start
        start = time.perf_counter()
        metrics, recalibrate = self._score(r, trainer, model)
        row.update(metrics)
        row["seconds_test"] = time.perf_counter() - start
        row["seconds_predict"] = row["seconds_select"] = float("nan")
        if acquire:
            row.update(self._acquire(r, trainer, model, recalibrate))
        if self.cfg.loop.warm_start:
            self.weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        return row

    def _score(
        self, r: int, trainer: pl.Trainer, model: pl.LightningModule
    ) -> tuple[dict[str, float], Recalibration]:
        """Test metrics of round ``r``'s model (accuracy, raw and recalibrated uncertainty,
        local variance), and the recalibration its pool predictions go through."""
        truth, test_set, val_set = self.dm.truth, self.dm.test, self.dm.val
        test = self._predict(r, trainer, model, test_set)
        val = self._predict(r, trainer, model, val_set)
        metrics = regression_metrics(test, truth[test_set], "test")
        metrics.update(calibration_metrics(test, truth[test_set], val, truth[val_set]))
        local = None
        if self.cfg.loop.get("local_neighbours") is not None:
            local = NeighbourCalibration(val, truth[val_set], self.cfg.loop.local_neighbours)
            metrics.update(local_calibration_metrics(local, test, truth[test_set]))
        return metrics, self._recalibration(metrics["var_scale"], local)

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
        state = {
            "fingerprint": self.fingerprint,
            "round": r,
            "acquired": acquired,
            "labeled": self.dm.labeled,
            "labels": self.dm.labels[self.dm.labeled],
            "label_rounds": self.label_rounds,
            "pending": self.pending,
            "history": self.history,
            "weights": self.weights,
            "failed": self.failed,
            "failed_rounds": self.failed_rounds,
            "failed_reasons": self.failed_reasons,
        }
        if self.closed:  # val and test as the oracle left them, with their labels
            state.update(val=self.dm.val, test=self.dm.test, truth=self.dm.truth)
        save_state(self.state_path, state)

    def _recalibration(self, var_scale: float, local: NeighbourCalibration | None) -> Recalibration:
        """What the strategy's predictions go through: the local variance, the global factor
        or nothing (``loop.local_neighbours``, ``loop.recalibrate``)."""
        if not self.cfg.loop.recalibrate:
            return lambda prediction: prediction
        if local is not None:
            return lambda prediction: (
                prediction
                if prediction.var is None
                else scale_variance(prediction, local.factors(prediction))
            )
        return lambda prediction: scale_variance(prediction, var_scale)

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
    ) -> dict[str, float]:
        """Predict the candidates (only what the strategy uses), select a batch and label it
        (learn mode: ask for the labels); returns the timings.

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
        if self.learn:
            if self.main:
                row_of = {p: i for i, p in enumerate(candidates.tolist())}
                chosen = pool.index_select(torch.tensor([row_of[p] for p in picks.tolist()]))
                self.pending_query = self.oracle.ask(r + 1, picks, chosen.mean, chosen.std)
            self.pending = picks
        else:
            self._add_labels(picks, self.oracle.query(picks), r + 1)
        return {"seconds_predict": seconds_predict, "seconds_select": seconds_select}

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
        if trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False):
            raise _terminated(r)
        return prediction

    def _write_tables(self) -> None:
        if not self.main:
            return
        labeled = self.dm.labeled
        selected = pd.DataFrame(
            {
                "round": self.label_rounds,
                "position": labeled,
                "mol_id": self.dm.mol_ids[labeled],
                "label": self.dm.labels[labeled],
            }
        )
        tables = [("selected.csv", selected)]
        if len(self.failed):
            chosen = self.failed.tolist()
            failed = pd.DataFrame(
                {
                    "round": self.failed_rounds,
                    "position": self.failed,
                    "id": [self.oracle.ids[p] for p in chosen],
                    "smiles": [self.oracle.smiles[p] for p in chosen],
                    "reason": self.failed_reasons,
                }
            )
            tables.append(("failed.csv", failed))
        if self.history:  # no history.csv before the first round is done
            # the target's unit goes with the numbers (empty where the dataset has none)
            tables.append(("history.csv", pd.DataFrame(self.history).assign(unit=self.unit)))
        for name, frame in tables:
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False)
            atomic_write_bytes(self.run_dir / name, buffer.getvalue().encode())

    def _report(self, row: dict[str, Any]) -> None:
        if not self.main:
            return
        unit = f" {self.unit}" if self.unit else ""
        seconds = "".join(
            f" | {name} {row[f'seconds_{name}']:.1f} s"
            for name in ("train", "predict", "select")
            if not math.isnan(row[f"seconds_{name}"])
        )
        line = (
            f"round {row['round']}/{self.cfg.loop.rounds} | labeled {row['n_labeled']} | "
            f"test MAE {row['test_mae']:.4f}{unit} | RMSE {row['test_rmse']:.4f}{unit} | "
            f"NLL {row['test_nll_recal']:.3f} (const {row['test_nll_const']:.3f}) | "
            f"Spearman {row['test_spearman']:.2f}{seconds}"
        )
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
