"""Keras callbacks shared by every fit of the family: early stopping on a validation score, TensorBoard scalars.

Early stopping is one callback (`ValidationStopping`) for the two-tower and the ranker: it scores the
model on validation targets every `every` epochs, keeps the best weights, stops after `patience`
evaluations without a gain and restores the best weights at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
)
_TEXT_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
)


def write_scalar(writer: tf.summary.SummaryWriter, tag: str, value: float, step: int) -> None:
    """One TensorBoard scalar, written with TensorFlow alone (the `tensorboard` package is not needed)."""
    with writer.as_default():
        tf.summary.write(tag, tf.constant(float(value)), step=step, metadata=_SCALAR_METADATA)
    writer.flush()


def write_text(writer: tf.summary.SummaryWriter, tag: str, text: str, step: int = 0) -> None:
    """One TensorBoard text summary (markdown), written with TensorFlow alone."""
    with writer.as_default():
        tf.summary.write(tag, tf.constant(text), step=step, metadata=_TEXT_METADATA)
    writer.flush()


class EpochSummary(tf.keras.callbacks.Callback):
    """Writes the training losses of every epoch as TensorBoard scalars."""

    def __init__(self, writer: tf.summary.SummaryWriter) -> None:
        super().__init__()
        self.writer = writer

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, value in (logs or {}).items():
            write_scalar(self.writer, f"train/{name}", value, epoch + 1)


class ValidationStopping(tf.keras.callbacks.Callback):
    """Score on validation targets every `every` epochs; keep the best weights; stop when it stops improving.

    Args:
        validate: `(model, epochs done) -> score`, higher is better (e.g. validation NDCG@10).
        every: epochs between evaluations.
        patience: evaluations without improvement before training stops.
        writer: optional TensorBoard writer for the scores (`validation/<name>`).
        name: the score's name in TensorBoard and in `history`.

    After `fit`, `best_epoch`, `best_score` and `evaluations` [(epoch, score)] say what happened, and
    the model holds the best weights.
    """

    def __init__(
        self,
        validate: Callable[[tf.keras.Model, int], float],
        every: int = 1,
        patience: int = 2,
        writer: tf.summary.SummaryWriter | None = None,
        name: str = "ndcg@10",
    ) -> None:
        super().__init__()
        if every < 1 or patience < 1:
            raise ValueError(f"every and patience must be >= 1, got {every} and {patience}")
        self.validate, self.every, self.patience = validate, every, patience
        self.writer, self.name = writer, name
        self.evaluations: list[tuple[int, float]] = []
        self.best_epoch, self.best_score, self._best_weights = 0, float("nan"), None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        done = epoch + 1
        if done % self.every and done != self.params.get("epochs"):
            return
        score = float(self.validate(self.model, done))
        self.evaluations.append((done, score))
        if self.writer is not None:
            write_scalar(self.writer, f"validation/{self.name}", score, done)
        if self._best_weights is None or score > self.best_score:
            self.best_epoch, self.best_score = done, score
            self._best_weights = self.model.get_weights()
        elif sum(1 for e, _ in self.evaluations if e > self.best_epoch) >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)

    @property
    def history(self) -> dict:
        """`{"best_epoch", "best_score", "evaluations"}`."""
        return {"best_epoch": self.best_epoch, "best_score": self.best_score, "evaluations": self.evaluations}
