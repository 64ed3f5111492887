"""Every random draw of a run comes from a seed that is a pure function of the run's seed,
the round and the stream, so a resumed run draws exactly what an uninterrupted one draws and
the checkpoint needs no random-number state."""

from __future__ import annotations

import numpy as np

# Independent random streams of one round.
TRAIN, SELECT, INITIAL, SKETCH, CANDIDATES = 0, 1, 2, 3, 4


def round_seed(seed: int, round_: int, stream: int) -> int:
    """Seed of one random stream (:data:`TRAIN`, :data:`SELECT`, ...) of one round."""
    return int(np.random.SeedSequence([seed, round_, stream]).generate_state(1)[0])
