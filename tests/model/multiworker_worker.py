"""Subprocess of test_distribute: one worker of a two-worker MultiWorkerMirroredStrategy on localhost.

TF_CONFIG (set by the test) names the cluster and this worker's index; `distribute="auto"` must
pick MultiWorkerMirroredStrategy from it. Both workers train the same mirrored two-tower, so both
must print the same metrics.
Usage: python multiworker_worker.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from toys import toy_catalogue, toy_config, toy_walks  # noqa: E402

from models.evaluate import ranking_metrics, top_k  # noqa: E402
from models.hardware import choose_strategy  # noqa: E402
from models.sequential import fit_sequential  # noqa: E402
from recflow.settings import TrainSettings  # noqa: E402


def main() -> None:
    strategy = choose_strategy(TrainSettings(distribute="auto"))
    histories, targets = toy_walks(300, seed=0)
    config = toy_config().two_tower
    model, _ = fit_sequential(histories, toy_catalogue().attributes, config, epochs=4, strategy=strategy)
    tops = top_k(model.scores(histories), 10, histories)
    out = {
        "multiworker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
        "replicas": strategy.num_replicas_in_sync,
        **ranking_metrics(tops, [np.array([t]) for t in targets], 10),
    }
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
