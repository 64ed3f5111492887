"""``python -m regal_torch.predict RUN_DIR data.path=FILE [OPTION=VALUE ...]``: a run's model on
new molecules.

Loads ``RUN_DIR/model.ckpt`` (:mod:`regal_torch.outputs.model_file`), reads ``FILE`` as the run
read its data (:meth:`regal_torch.outputs.data_card.DataCard.dataset_config`: a CSV, ``.smi``
or SDF file of molecules, optionally gzipped, featurised and cached like a pool, with the
run's molecule features; or a table with the run's feature columns), predicts every row
streamed in batches with a progress bar on a terminal, and writes ``id, smiles, mean, std,
lower, upper`` (and ``label`` where the file has the target column) to
``RUN_DIR/predictions_<FILE stem>.csv`` or ``out=PATH`` (a folder of Parquet parts above
``chunk_rows`` rows). ``std`` is recalibrated on the run's validation molecules and
``[lower, upper]`` is the run's split-conformal interval (its ``predict.interval`` coverage).

Options: ``data.path`` (required) and any other option of the run's data config
(``data.smiles_column``, ``data.id_column``, ``data.target_column``, ``data.cache_dir``,
``data.num_workers``, ...; defaults: the run's, the target column only if the file has it),
``engine`` and its options (where molecule features are computed: ``engine=ray
engine.address=auto``, configs/engine; default ``local``), ``out``, ``batch_size`` (default
1000), ``chunk_rows`` (default 1,000,000), ``accelerator`` (``cpu``, ``gpu``, ``auto``;
default ``auto``). Every option is checked before any molecule is
read; a file whose featurisation or columns do not match the run's is refused in one line,
and so is an ``out`` that would replace a file of the run. SIGTERM stops it with nothing
written (one ``error:`` line, exit status 2).
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.molecule_graphs import FEATURIZER_VERSION
from regal_torch.errors import RegalError, regal_cause
from regal_torch.files import remove_temporaries
from regal_torch.outputs.model_file import MODEL_FILE, load_model
from regal_torch.outputs.predictions import predict_with_std, prediction_frame, write_table
from regal_torch.quiet import quiet_libraries, show_progress
from regal_torch.uncertainty.local_calibration import NeighbourCalibration

# The command's own options and their defaults (``data.*`` options are the data config's).
OPTIONS: dict[str, str | None] = {
    "out": None,
    "batch_size": "1000",
    "chunk_rows": "1000000",
    "accelerator": "auto",
}
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")
# What a run writes in its folder: an out= there must not replace one of them.
_RUN_FILES = re.compile(
    r"(predictions(_round_\d+)?(\.csv)?|model\.ckpt|state\.pt|history\.csv|selected\.csv"
    r"|failed\.csv|run\.log|\.lock|\.hydra|queries|oracle|logs)"
)


def predict_file(run_dir: Path, **options: Any) -> Path:
    """Predict ``options["data.path"]`` with the model of ``run_dir``; returns what was written
    (see the module docstring for the options; values as on the command line).

    Raises:
        RegalError: an option out of range, no model in ``run_dir``, an unreadable file,
            columns or featurisation that do not match the run's, an ``out`` that cannot or
            must not be written, SIGTERM.
    """
    run_dir = Path(run_dir)
    engine = [f"{k}={v}" for k, v in options.items() if _is_engine(k)]
    own = {k: v for k, v in options.items() if not k.startswith("data.") and not _is_engine(k)}
    settings = {**OPTIONS, **own}
    data_options = {k: _value(v) for k, v in options.items() if k.startswith("data.")}
    if data_options.get("data.path") is None:
        raise RegalError("data.path has no value and is required: add data.path=FILE")
    path = Path(str(data_options.pop("data.path")))
    batch_size = _positive("batch_size", settings["batch_size"])
    chunk_rows = _positive("chunk_rows", settings["chunk_rows"])
    accelerator = _accelerator(settings["accelerator"])
    out = Path(settings["out"] or run_dir / f"predictions_{path.name.split('.')[0]}.csv")
    _check_out(out, run_dir)
    model, extras = load_model(run_dir / MODEL_FILE)
    card, calibration = extras["data"], extras["calibration"]
    if card.kind == "molecules" and card.featurizer_version != FEATURIZER_VERSION:
        raise RegalError(
            f"{path}: the run's model saw molecule graphs of featuriser version "
            f"{card.featurizer_version}, this regal_torch makes version {FEATURIZER_VERSION}: "
            "predict with the regal_torch version that made the run"
        )
    if not path.is_file():
        raise RegalError(f"{path}: no such file (data.path)")
    stop = _Stop(out)
    dataset = instantiate(card.dataset_config(str(path), data_options, engine).dataset)
    stop()
    card.check(dataset, path)
    pl.seed_everything(0, verbose=False)  # MC-dropout samples: the same on every call
    dm = ActiveDataModule(
        dataset, dataset.target_names[0], val_size=0, test_size=0, predict_batch_size=batch_size
    )
    trainer = pl.Trainer(
        accelerator=accelerator, devices=1, logger=False,
        enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=show_progress("auto"), callbacks=[stop],
    )  # fmt: skip

    local = calibration.local
    mean, std = predict_with_std(
        trainer, model, dm.loader, torch.arange(len(dataset)), calibration.var_scale,
        None if local is None else NeighbourCalibration.from_state(local),
        chunk=200 * dm.predict_batch_size, stop=stop,
    )  # fmt: skip
    stop()
    frame = prediction_frame(dm.ids, dataset.smiles, mean, std, calibration.conformal_q)
    if torch.isfinite(dm.truth).any():
        frame.insert(2, "label", dm.truth.numpy())
    return write_table(out, frame, chunk_rows)


class _Stop(pl.Callback):
    """SIGTERM (SLURM preemption, ``kill``) ends the command with nothing written: from the
    moment it starts predicting, raised after the batch it came in (and called between
    stages)."""

    received = False

    def __init__(self, out: Path) -> None:
        self.out = out

    def __call__(self, *_: Any) -> None:
        if _Stop.received:
            raise RegalError(f"stopped by SIGTERM; {self.out} was not written")

    def on_predict_batch_end(self, *_: Any) -> None:
        self()


def _on_sigterm(*_: Any) -> None:
    _Stop.received = True


def _value(text: Any) -> Any:
    """A command-line value as the configs read it (``2`` an int, ``null`` None, ``[a,b]`` a
    list); values given in Python are kept."""
    if not isinstance(text, str):
        return text
    if text == "":
        return None
    return OmegaConf.to_container(OmegaConf.from_dotlist([f"v={text}"]))["v"]


def _positive(name: str, value: Any) -> int:
    number = _value(value)
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise RegalError(f"{name}={value!r} must be an integer >= 1")
    return number


def _accelerator(value: Any) -> str:
    if value not in ACCELERATORS:
        raise RegalError(f"accelerator={value!r} must be one of {', '.join(ACCELERATORS)}")
    if value in ("gpu", "cuda") and not torch.cuda.is_available():
        raise RegalError(f"accelerator={value}: no CUDA device here; use accelerator=cpu")
    return value


def _check_out(out: Path, run_dir: Path) -> None:
    """Refuse, before any work, an ``out`` that is a folder, lies under a file, or names a
    file the run wrote; create its folder; remove what killed writers left there."""
    folder = out.with_suffix("")  # where parts go above chunk_rows
    if out.is_dir():
        raise RegalError(f"out={out} is a folder; name a file (e.g. {out / 'predictions.csv'})")
    for target in (out, folder):
        if target.parent.resolve() == run_dir.resolve() and _RUN_FILES.fullmatch(target.name):
            raise RegalError(
                f"out={out} would replace the run's own {target.name}; name another file"
            )
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RegalError(f"out={out}: {parent} is a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegalError(f"out={out}: cannot create its folder ({exc.strerror or exc})") from exc
    remove_temporaries(out.parent)


def _is_engine(key: str) -> bool:
    """Whether ``key`` picks the engine or sets one of its options (configs/engine)."""
    return key == "engine" or key.startswith("engine.")


def parse(argv: list[str]) -> tuple[Path, dict[str, Any]]:
    """``RUN_DIR`` and the ``OPTION=VALUE`` options of the command line.

    Raises:
        RegalError: no run folder, an unknown option, no ``data.path``.
    """
    if not argv or "=" in argv[0]:
        raise RegalError(
            "usage: python -m regal_torch.predict RUN_DIR data.path=FILE [OPTION=VALUE]"
        )
    options: dict[str, Any] = {}
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if not sep or (key not in OPTIONS and not key.startswith("data.") and not _is_engine(key)):
            raise RegalError(
                f"unknown option {arg!r}; the options are data.path and the run's other "
                f"data.* options, engine, engine.*, {', '.join(OPTIONS)}"
            )
        options[key] = value
    if not options.get("data.path"):
        raise RegalError("data.path has no value and is required: add data.path=FILE")
    return Path(argv[0]), options


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run_dir, options = parse(sys.argv[1:] if argv is None else argv)
        written = predict_file(run_dir, **options)
    except Exception as exc:
        cause = regal_cause(exc)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 2
    print(f"predictions written to {written}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
