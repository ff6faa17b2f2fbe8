"""Where training runs: the tf.distribute strategy, mixed precision and XLA, chosen from `settings.train`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import tensorflow as tf

from recflow.settings import TrainSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


def choose_strategy(train: TrainSettings) -> tf.distribute.Strategy:
    """The distribution strategy that `train.distribute` asks for.

    `auto`: MultiWorkerMirroredStrategy when `TF_CONFIG` names a cluster, MirroredStrategy when
    TensorFlow sees more than one GPU, the default (single-device) strategy otherwise.
    `mirrored` mirrors over every visible GPU, or over the logical CPU devices when there is no GPU.
    """
    mode = train.distribute
    if mode == "auto":
        if _tf_config_cluster():
            mode = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            mode = "mirrored"
        else:
            mode = "default"
    if mode == "multiworker":
        if not _tf_config_cluster():
            raise ValueError("distribute='multiworker' needs TF_CONFIG with a 'cluster' spec; it is not set")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if mode == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if mode == "default":
        return tf.distribute.get_strategy()
    raise ValueError(
        f"Unknown distribute mode {train.distribute!r}: expected auto, default, mirrored, multiworker"
    )


def precision_policy(train: TrainSettings) -> str:
    """The Keras dtype policy `train` asks for: float32, or mixed precision in float16 or bfloat16.

    `mixed_dtype="auto"` picks float16 when TensorFlow sees a GPU (tensor cores; loss scaling keeps
    small gradients) and bfloat16 on a CPU, whose AVX512-BF16/AMX units run it natively (float32's
    range, no loss scaling needed) while float16 has no fast path there.
    `mixed_precision="auto"` turns it on only where it pays: a GPU, or a CPU with native bfloat16
    (on Beauty here: the same served quality, ~1.5x faster epochs); elsewhere bfloat16 would be
    emulated, slower than float32.
    """
    enabled = train.mixed_precision
    if enabled == "auto":
        enabled = bool(tf.config.list_logical_devices("GPU")) or cpu_runs_bfloat16()
    if not enabled:
        return "float32"
    dtype = train.mixed_dtype
    if dtype == "auto":
        dtype = "float16" if tf.config.list_logical_devices("GPU") else "bfloat16"
    return f"mixed_{dtype}"


def cpu_runs_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has native bfloat16 arithmetic (the AVX512-BF16 or AMX-BF16 flag)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False


def configure_precision(train: TrainSettings) -> str:
    """Set the global Keras dtype policy to `precision_policy(train)`; returns its name."""
    policy = precision_policy(train)
    tf.keras.mixed_precision.set_global_policy(policy)
    return policy


def in_float32(make: Callable[[], T]) -> T:
    """Run `make` (build or call a layer) under the float32 policy whatever the global one is.

    TFRS tasks and the helper layers they create while running take two float inputs (query and
    candidate embeddings, labels and scores); under `mixed_float16` Keras would cast only the first
    to float16 and the loss would mix dtypes. The towers' outputs are float32 already.
    """
    policy = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("float32")
    try:
        return make()
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)


def configure_xla(train: TrainSettings) -> bool:
    """Turn XLA on or off for training, following `train.xla`.

    The towers start with string lookups, which XLA cannot compile, so `jit_compile=True` on the
    whole train step would fail; XLA auto-clustering compiles the numeric parts (embeddings, dense
    layers, the softmax) and leaves the lookups to TensorFlow.
    """
    tf.config.optimizer.set_jit("autoclustering" if train.xla else False)
    return train.xla


@contextmanager
def training_precision(train: TrainSettings) -> Iterator[str]:
    """Mixed precision and XLA as `train` asks, for the fits inside the block; yields the policy name.

    On leaving, the policy goes back to float32 and auto-jit off: inference, and whoever runs next
    in this process, must not inherit them.
    """
    policy = configure_precision(train)
    configure_xla(train)
    try:
        yield policy
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
        tf.config.optimizer.set_jit(False)


def device_description() -> str:
    """A human-readable name of the devices TensorFlow trains on, e.g. 'GPU x1 (…)' or 'CPU'."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores)"
    names = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return f"GPU x{len(gpus)} ({', '.join(names)})"


def _tf_config_cluster() -> bool:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return False
    try:
        return bool(json.loads(raw).get("cluster"))
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}): {raw[:80]!r}") from err
