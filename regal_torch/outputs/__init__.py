"""What a run leaves its user, written and read by the same code.

- :mod:`.model_file`: ``model.ckpt``, the run's model with what rebuilds it and its
  calibration; :mod:`.data_card`: the part of it that says how the run read its data, so
  that a new file is read the same way;
- :mod:`.predictions`: every molecule's mean, std and interval as a table;
- :mod:`.run_outputs`: what the loop writes at the end of a run (both of the above).

The loop (:mod:`regal_torch.loop`) writes them and :mod:`regal_torch.predict` reads them;
nothing here imports either.
"""
