"""Subprocess of test_distribute: fit the model family under the default and the mirrored strategy.

Logical CPU devices must be configured before TensorFlow initialises, hence a fresh process.
Usage: python mirrored_worker.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

sys.path.insert(0, str(Path(__file__).parent))

from toys import TOY_METADATA, toy_config, toy_fit_data, toy_walks  # noqa: E402

from models.hardware import choose_strategy  # noqa: E402
from models.pipeline import fit_pipeline  # noqa: E402
from recflow.settings import TrainSettings  # noqa: E402


def main() -> None:
    histories, targets = toy_walks(300, seed=0)
    out: dict = {"logical_cpus": len(tf.config.list_logical_devices("CPU"))}
    for mode in ("default", "mirrored"):
        strategy = choose_strategy(TrainSettings(distribute=mode))
        result = fit_pipeline(toy_fit_data(histories, targets), toy_config(), TOY_METADATA, strategy=strategy)
        out[mode] = {"replicas": strategy.num_replicas_in_sync, **result.metrics["model"]}
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
