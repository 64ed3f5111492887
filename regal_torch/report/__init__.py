"""Reports over finished runs: ``python -m regal_torch.report DIR [DIR ...]``.

:mod:`~regal_torch.report.runs` finds and reads run directories,
:mod:`~regal_torch.report.summary` averages them over seeds and compares them with random
sampling, :mod:`~regal_torch.report.plots` draws the figures and
:mod:`~regal_torch.report.cli` writes everything into one folder.
"""
