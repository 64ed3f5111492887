"""``python -m regal_torch.report``: see :mod:`regal_torch.report.cli`."""

import sys

from regal_torch.report.cli import main

sys.exit(main())
