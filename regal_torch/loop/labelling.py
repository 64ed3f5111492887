"""Where a run's labels come from and what it keeps of them: the oracle, the labeled set's
rounds, learn mode's pending picks and a closed loop's failed calculations.

Benchmark mode reveals the labels the data holds (:class:`BenchmarkOracle`). Learn mode asks
through ``oracle``: query files a person fills in (``oracle=file``; the run stops after each
query) or a calculation (``oracle=function``, ``oracle=command``: a closed loop, which labels
everything through it, the data's own labels unused: first the validation and test molecules
and the initial picks, the start set of query file ``round_000``, then each round's picks,
without stopping). Picks whose calculation failed are recorded (``failed.csv``,
``state.pt``) and leave the pool (or val and test) for good.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.errors import RegalError
from regal_torch.loop.oracle import BenchmarkOracle
from regal_torch.loop.queries import Answers, QueryOracle
from regal_torch.loop.state import RunState


class Labelling:
    """The labels of one run (see the module docstring).

    Args:
        oracle_factory: The ``oracle`` config instantiated (a partial of a
            :class:`QueryOracle`), used in learn mode.
        dataset: The run's dataset (``ids``, ``smiles`` and ``where`` where it has them).
        dm: Its datamodule; labels go into it.
        run_dir: The run folder.
        learn: Learn mode (else benchmark).
        labels_file: ``labels=FILE`` (learn mode with ``oracle=file`` only).
        main: This process selects and writes (DDP: rank 0) and prints.

    Attributes:
        closed: Every label comes from a calculation (a closed loop).
        label_rounds: The round each labeled molecule came in, ``[L]``.
        pending: Learn mode: the picks awaiting their labels (``[k]``), or None.
        pending_query: The query file written for them.
    """

    def __init__(
        self,
        oracle_factory: Any,
        dataset: Any,
        dm: ActiveDataModule,
        run_dir: Path,
        learn: bool,
        labels_file: str | None,
        main: bool,
    ) -> None:
        self.closed = bool(oracle_factory.func.computes)
        if self.closed and not learn:
            raise RegalError(
                f"oracle {oracle_factory.func.__name__} computes labels in mode=learn; "
                "add mode=learn (mode=benchmark reveals the labels the data holds)"
            )
        if not learn and labels_file is not None:
            raise RegalError(
                f"labels={labels_file} gives labels for learn mode's query files; "
                "mode=benchmark reveals the labels the data holds: leave labels= out"
            )
        if self.closed and labels_file is not None:
            raise RegalError(
                f"labels={labels_file} gives labels for oracle=file's query files; this "
                "run's oracle computes them: leave labels= out"
            )
        self.oracle_factory, self.dataset, self.dm = oracle_factory, dataset, dm
        self.run_dir, self.learn, self.main = Path(run_dir), learn, main
        if self.closed:  # val and test are labeled by the oracle too
            dm.truth = torch.full_like(dm.truth, float("nan"))
        self.oracle: BenchmarkOracle | QueryOracle | None = None
        self.label_rounds = torch.empty(0, dtype=torch.long)
        self.pending: Tensor | None = None
        self.pending_query: Path | None = None
        self.failed = torch.empty(0, dtype=torch.long)
        self.failed_rounds = torch.empty(0, dtype=torch.long)
        self.failed_reasons: list[str] = []

    def open(self, state: RunState | None) -> None:
        """Make the oracle, and take the labels, failures and pending picks of ``state``."""
        if state is not None and self.closed and state.holdout is None:
            raise RegalError(
                "this run's labels came from query files (oracle=file); a computed oracle "
                "cannot take it over: resume it with oracle=file, or use another hydra.run.dir"
            )
        self.oracle = self._oracle()
        if state is None:
            return
        if state.holdout is not None:
            self.dm.val, self.dm.test = state.holdout["val"], state.holdout["test"]
            self.dm.truth = state.holdout["truth"]
        self.dm.label(state.labeled, state.labels)
        self.label_rounds = state.label_rounds
        self.fail(state.failed, state.failed_reasons, state.failed_rounds)
        self.pending = state.pending

    def _oracle(self) -> BenchmarkOracle | QueryOracle:
        if not self.learn:
            return BenchmarkOracle(self.dm.truth, self.dataset.where)
        return self.oracle_factory(
            run_dir=self.run_dir, ids=self.dm.ids, smiles=list(self.dataset.smiles)
        )

    def state_fields(self) -> dict[str, Any]:
        """The :class:`RunState` fields this holds."""
        holdout = None
        if self.closed:  # val and test as the oracle left them, with their labels
            holdout = {"val": self.dm.val, "test": self.dm.test, "truth": self.dm.truth}
        return {
            "labeled": self.dm.labeled,
            "labels": self.dm.labels[self.dm.labeled],
            "label_rounds": self.label_rounds,
            "pending": self.pending,
            "failed": self.failed,
            "failed_rounds": self.failed_rounds,
            "failed_reasons": self.failed_reasons,
            "holdout": holdout,
        }

    def add(self, positions: Tensor, values: Tensor, round_: int) -> None:
        """Label ``positions`` with ``values`` (``[k]`` each), as round ``round_``'s."""
        self.dm.label(positions, values)
        rounds = torch.full((len(positions),), round_, dtype=torch.long)
        self.label_rounds = torch.cat([self.label_rounds, rounds])

    def fail(self, positions: Tensor, reasons: list[str], rounds: Tensor) -> None:
        """Record failed calculations; those molecules leave the pool, val and test for good."""
        self.failed = torch.cat([self.failed, positions])
        self.failed_rounds = torch.cat([self.failed_rounds, rounds])
        self.failed_reasons = [*self.failed_reasons, *reasons]
        for name in ("pool", "val", "test"):
            kept = getattr(self.dm, name)
            setattr(self.dm, name, kept[~torch.isin(kept, positions)])

    def label_initial(self, picks: Tensor | None) -> None:
        """The initial set: learn mode with query files labels the molecules that have a
        label; otherwise ``picks`` (``loop/initial_strategy``'s) are labeled (benchmark) or,
        with the validation and test molecules, become a closed loop's pending start set."""
        if self.learn and not self.closed:
            pool = self.dm.pool
            labeled = pool[torch.isfinite(self.dm.truth[pool])]
            self.add(labeled, self.dm.truth[labeled], 0)
        elif not self.closed:
            self.add(picks, self.oracle.query(picks), 0)
        else:
            self.pending = torch.cat([self.dm.val, self.dm.test, picks])

    @property
    def picks_initial(self) -> bool:
        """Whether :meth:`label_initial` needs the initial strategy's picks."""
        return not (self.learn and not self.closed)

    def ask_start_set(self) -> None:
        """A closed loop's new run: write the start set's query file (no predictions)."""
        nan = torch.full((len(self.pending),), float("nan"))
        self.pending_query = self.oracle.ask(0, self.pending, nan, nan)

    def ask(self, r: int, picks: Tensor, mean: Tensor | None, std: Tensor | None) -> None:
        """Round ``r``'s picks: benchmark mode labels them; learn mode writes their query file
        (``mean`` and ``std`` of the picks, from the first process) and leaves them pending."""
        if not self.learn:
            self.add(picks, self.oracle.query(picks), r + 1)
            return
        if self.main:
            self.pending_query = self.oracle.ask(r + 1, picks, mean, std)
        self.pending = picks

    def ingest(self, r: int) -> None:
        """Learn mode: take the labels given (or computed) for round ``r``'s picks (``r`` -1:
        the start set of a closed loop); unfilled picks stay in the pool, failed ones leave it."""
        answers = self.oracle.answers(r + 1, self.pending)
        labeled, failed = len(answers.positions), len(answers.failed)
        self.fail(answers.failed, answers.reasons, torch.full((failed,), r + 1))
        if r < 0:
            answers = self._label_holdout(answers)
        self.add(answers.positions, answers.values, r + 1)
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

    def tables(self) -> list[tuple[str, pd.DataFrame]]:
        """``selected.csv`` (every labeled molecule: round, position, id, label) and, once a
        calculation failed, ``failed.csv``."""
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
        return tables
