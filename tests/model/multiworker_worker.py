"""Subprocess of test_distribute: one worker of a two-worker MultiWorkerMirroredStrategy on localhost.

TF_CONFIG (set by the test) names the cluster and this worker's index; `distribute="auto"` must
pick MultiWorkerMirroredStrategy from it. Both workers train the same mirrored weights, so both
must print the same metrics.
Usage: python multiworker_worker.py TRAINING_DATA.pkl
"""

from __future__ import annotations

import json
import os
import pickle
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from models.config import ModelConfig  # noqa: E402
from models.data import build_vocabulary  # noqa: E402
from models.hardware import choose_strategy  # noqa: E402
from models.ranking import build_ranking_tower  # noqa: E402
from models.train import evaluate_bundle, fit_retrieval, make_bundle  # noqa: E402
from recflow.settings import TrainSettings  # noqa: E402


def main(path: str) -> None:
    with open(path, "rb") as f:
        data = pickle.load(f)
    strategy = choose_strategy(TrainSettings(distribute="auto"))
    config = ModelConfig(embedding_dim=16, epochs=1, batch_size=256, learning_rate=0.01, k=10)
    vocab = build_vocabulary(data, config)
    tf.keras.utils.set_random_seed(0)
    query, candidate = fit_retrieval(data, config, vocab, strategy, verbose=0)
    bundle = make_bundle(data, config, vocab, query, candidate, build_ranking_tower(config, vocab), "CPU")
    out = {
        "multiworker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
        "replicas": strategy.num_replicas_in_sync,
        **evaluate_bundle(bundle, data, config.k)["model"],
    }
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
