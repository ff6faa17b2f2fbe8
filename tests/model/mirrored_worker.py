"""Subprocess of test_distribute: train retrieval under the default and the mirrored strategy, print metrics.

Logical CPU devices must be configured before TensorFlow initialises, hence a fresh process.
Usage: python mirrored_worker.py TRAINING_DATA.pkl | --sequential
"""

from __future__ import annotations

import json
import os
import pickle
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from models.config import ModelConfig  # noqa: E402
from models.data import build_vocabulary  # noqa: E402
from models.hardware import choose_strategy  # noqa: E402
from models.ranking import build_ranking_tower  # noqa: E402
from models.train import evaluate_bundle, fit_retrieval, make_bundle  # noqa: E402
from recflow.settings import TrainSettings  # noqa: E402


def main(path: str) -> None:
    with open(path, "rb") as f:
        data = pickle.load(f)
    config = ModelConfig(embedding_dim=16, epochs=2, batch_size=256, learning_rate=0.01, k=10)
    vocab = build_vocabulary(data, config)
    out = {"logical_cpus": len(tf.config.list_logical_devices("CPU"))}
    for mode in ("default", "mirrored"):
        tf.keras.utils.set_random_seed(0)
        strategy = choose_strategy(TrainSettings(distribute=mode))
        query, candidate = fit_retrieval(data, config, vocab, strategy, verbose=0)
        bundle = make_bundle(data, config, vocab, query, candidate, build_ranking_tower(config, vocab), "CPU")
        out[mode] = {
            "replicas": strategy.num_replicas_in_sync,
            **evaluate_bundle(bundle, data, config.k)["model"],
        }
    print("RESULT " + json.dumps(out))


def sequential_metrics() -> dict:
    """The benchmark's sequential two-tower on toy walks (next item = last + 1), under both strategies."""
    import numpy as np

    from benchmarks.quality import Split, evaluate
    from models.sequential import SequentialConfig, fit_sequential

    rng = np.random.default_rng(0)
    n_items = 40
    attrs = np.array([[1 + i % 4] for i in range(n_items)], dtype=np.int32)
    walks = [np.arange(s, s + rng.integers(4, 9)) for s in rng.integers(0, n_items - 9, 300)]
    split = Split("test", [w[:-1] for w in walks], np.array([w[-1] for w in walks]))
    config = SequentialConfig(
        max_len=8, dim=16, heads=2, blocks=1, dropout=0.0, learning_rate=1e-2, batch_size=64, seed=0
    )
    out = {}
    for mode in ("default", "mirrored"):
        strategy = choose_strategy(TrainSettings(distribute=mode))
        model, _ = fit_sequential([w[:-1] for w in walks], attrs, config, epochs=6, strategy=strategy)
        out[mode] = {
            "replicas": strategy.num_replicas_in_sync,
            **evaluate(lambda h, u, m=model: m.scores(h), split),
        }
    return out


if __name__ == "__main__":
    if sys.argv[1] == "--sequential":  # its own process: collectives of an earlier strategy abort it
        print("RESULT " + json.dumps(sequential_metrics()))
    else:
        main(sys.argv[1])
