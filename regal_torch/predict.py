"""``python -m regal_torch.predict RUN_DIR data.path=FILE [OPTION=VALUE ...]``: a run's model on
new molecules.

Loads ``RUN_DIR/model.ckpt`` (:mod:`regal_torch.saved_model`), reads ``FILE`` as the run read
its data (a CSV, ``.smi`` or SDF file of molecules, optionally gzipped, featurised and cached
like a pool, with the run's molecule features; or a table with the run's feature columns),
predicts every row streamed in batches with a progress bar on a terminal, and writes
``id, smiles, mean, std, lower, upper`` (and ``label`` where the file has the target column)
to ``RUN_DIR/predictions_<FILE stem>.csv`` or ``out=PATH`` (a folder of ``part-XXXXX.csv``
above ``chunk_rows`` rows). ``std`` is recalibrated on the run's validation molecules and
``[lower, upper]`` is the run's split-conformal interval (its ``predict.interval`` coverage).

Options: ``data.path`` (required), ``data.smiles_column``, ``data.id_column``,
``data.target_column`` (defaults: the run's, the target column only if the file has it),
``data.cache_dir``, ``data.num_workers``, ``out``, ``batch_size`` (default 1000),
``chunk_rows`` (default 1,000,000), ``accelerator`` (``cpu``, ``gpu``, ``auto``; default
``auto``). A file whose featurisation or columns do not match the run's is refused in one
line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from regal_torch.data.datamodule import ActiveDataModule
from regal_torch.data.featurize import FEATURIZER_VERSION
from regal_torch.data.molecule_files import read_header
from regal_torch.errors import RegalError
from regal_torch.local_calibration import NeighbourCalibration
from regal_torch.loop.outputs import predict_with_std, prediction_frame, write_table
from regal_torch.loop.progress import show_progress
from regal_torch.saved_model import MODEL_FILE, load_model

OPTIONS = {
    "data.path": None,
    "data.smiles_column": None,
    "data.id_column": None,
    "data.target_column": None,
    "data.cache_dir": None,
    "data.num_workers": None,
    "out": None,
    "batch_size": "1000",
    "chunk_rows": "1000000",
    "accelerator": "auto",
}


def predict_file(run_dir: Path, **options: Any) -> Path:
    """Predict ``options["data.path"]`` with the model of ``run_dir``; returns what was written
    (see the module docstring for the options).

    Raises:
        RegalError: no model in ``run_dir``, an unreadable file, columns or featurisation that
            do not match the run's.
    """
    run_dir = Path(run_dir)
    model, extras = load_model(run_dir / MODEL_FILE)
    data, calibration = extras["data"], extras["calibration"]
    path = Path(options["data.path"])
    dataset = _dataset(path, data, options)
    pl.seed_everything(0, verbose=False)  # MC-dropout samples: the same on every call
    dm = ActiveDataModule(
        dataset, dataset.target_names[0], val_size=0, test_size=0,
        predict_batch_size=int(options["batch_size"]),
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator=options["accelerator"], devices=1, logger=False,
        enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=show_progress("auto"),
    )  # fmt: skip
    local = calibration.get("local")
    mean, std = predict_with_std(
        trainer, model, dm.loader, torch.arange(len(dataset)), calibration["var_scale"],
        None if local is None else NeighbourCalibration.from_state(local),
        chunk=200 * dm.predict_batch_size,
    )  # fmt: skip
    frame = prediction_frame(dm.ids, dataset.smiles, mean, std, calibration["conformal_q"])
    if torch.isfinite(dm.truth).any():
        frame.insert(2, "label", dm.truth.numpy())
    out = Path(options["out"] or run_dir / f"predictions_{path.name.split('.')[0]}.csv")
    return write_table(out, frame, int(options["chunk_rows"]))


def _dataset(path: Path, data: dict[str, Any], options: dict[str, Any]) -> Any:
    """``path`` read as the run read its data, checked against the run's featurisation."""
    run = data["config"]
    if not path.is_file():
        raise RegalError(f"{path}: no such file (data.path)")
    header = read_header(path)
    target = options["data.target_column"]
    if target is None:  # the run's target column, where the file has it
        named = run.get("target_column") or data["target"]
        target = named if header is not None and named in header else None
    if data["kind"] == "table":
        from regal_torch.data.table import TableDataset

        missing = [c for c in data["feature_names"] if c not in header]
        if missing:
            raise RegalError(
                f"{path}: no column {missing[0]!r} of the run's features "
                f"({len(missing)} of {len(data['feature_names'])} missing); the run read "
                f"{data['feature_names']}"
            )
        return TableDataset(
            str(path),
            target_column=target,
            feature_columns=data["feature_names"],
            id_column=options["data.id_column"] or run.get("id_column"),
        )
    from regal_torch.data.molecules import MoleculeDataset

    if data["featurizer_version"] != FEATURIZER_VERSION:
        raise RegalError(
            f"{path}: the run's model saw molecule graphs of featuriser version "
            f"{data['featurizer_version']}, this regal_torch makes version {FEATURIZER_VERSION}: "
            "predict with the regal_torch version that made the run"
        )
    smiles_column = options["data.smiles_column"] or run.get("smiles_column") or "smiles"
    dataset = MoleculeDataset(
        str(path),
        smiles_column=smiles_column,
        target_column=target,
        id_column=options["data.id_column"] or run.get("id_column"),
        cache_dir=options["data.cache_dir"] or run.get("cache_dir"),
        num_workers=None
        if options["data.num_workers"] is None
        else int(options["data.num_workers"]),
        features=run.get("features") or [],
        featurizers=instantiate(run.get("featurizers") or {}),
    )
    ours, theirs = dataset.feature_names, data["feature_names"]
    if ours != theirs:
        raise RegalError(
            f"{path}: featurised into {len(ours)} feature columns, the run's model read "
            f"{len(theirs)} ({_first_difference(ours, theirs)})"
        )
    return dataset


def _first_difference(ours: list[str], theirs: list[str]) -> str:
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            return f"column {i}: {a!r} here, {b!r} in the run"
    return "the run's has more" if len(theirs) > len(ours) else "this has more"


def parse(argv: list[str]) -> tuple[Path, dict[str, Any]]:
    """``RUN_DIR`` and the ``OPTION=VALUE`` options of the command line.

    Raises:
        RegalError: no run folder, an unknown option, no ``data.path``.
    """
    if not argv or "=" in argv[0]:
        raise RegalError(
            "usage: python -m regal_torch.predict RUN_DIR data.path=FILE [OPTION=VALUE]"
        )
    options = dict(OPTIONS)
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if not sep or key not in OPTIONS:
            raise RegalError(f"unknown option {arg!r}; the options are {', '.join(OPTIONS)}")
        options[key] = None if value in ("", "null") else value
    if options["data.path"] is None:
        raise RegalError("data.path has no value and is required: add data.path=FILE")
    return Path(argv[0]), options


def main(argv: list[str] | None = None) -> int:
    from regal_torch.run import quiet_lightning

    quiet_lightning()
    try:
        run_dir, options = parse(sys.argv[1:] if argv is None else argv)
        written = predict_file(run_dir, **options)
    except RegalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"predictions written to {written}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
