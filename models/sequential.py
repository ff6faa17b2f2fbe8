"""The two-tower retrieval model of the platform, in TFRS: self-attention over the user's recent items.

The candidate tower embeds an item from its id and its attributes (brand and sub-categories: the
mean of their embeddings). The query tower reads the user's last `max_len` items, each encoded by
the candidate tower (the two towers share their item representation, as SASRec does), adds a
learned embedding of the position counted from the most recent item, and runs causal
self-attention blocks; the output at the newest position is the query. Training predicts, at every
position of every training sequence, the next interaction with a softmax over the whole catalogue,
or, on a catalogue larger than `negatives` (Beauty's 12k items, the grocery year's 68k), over the
positive and `negatives` items drawn uniformly for the batch (uniform: no log-Q correction), each
position weighted by what the user did with that item (`train.event_weights`: a purchase counts more
than a view; purchase-only data weighs every position alike).

Item indices are 0-based outside (catalogue rows); inside the model 0 is padding and item i is i + 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from models.callbacks import EpochSummary, ValidationStopping


@dataclass(frozen=True)
class SequentialConfig:
    """Hyperparameters of the sequential retrieval model, saved next to its weights."""

    max_len: int = 20
    dim: int = 64
    heads: int = 2
    blocks: int = 2
    dropout: float = 0.3
    learning_rate: float = 5e-3
    batch_size: int = 256
    max_epochs: int = 20
    eval_every: int = 2
    patience: int = 2
    # warm refit epochs, chosen once on Beauty's validation targets with a nested split (fit on each
    # sequence without its last 3 items for 16 epochs, refit without its last 2, score the 2nd-last):
    # `recflow bench refit-study`, results in docs/benchmarks/refit_study.json
    refit_epochs: int = 4
    # training windows per user: a sequence longer than max_len + 1 is cut from its end into up to
    # this many windows (1: only the newest max_len + 1 interactions, as SASRec trains)
    max_windows: int = 1
    # sampled softmax: negatives drawn uniformly per batch (shared by its positions, accidental hits
    # removed); 0, or a catalogue no larger, trains the full softmax. The logits over the catalogue
    # are most of an epoch's work (an epoch costs the same at batch 256 and 1024): on Beauty's 12k
    # items 2048 negatives cut the two-tower's time by a third for a tenth of a point of the package's
    # NDCG@10 (docs/models.md); the synthetic shop's 1,200 items keep the full softmax
    negatives: int = 2048
    seed: int = 42

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> SequentialConfig:
        """Rebuild from `asdict` output; unknown keys (from another version) are ignored."""
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in known})


class ItemTower(tf.keras.Model):
    """Candidate tower: item id embedding plus the mean embedding of the item's attributes."""

    def __init__(self, item_attributes: np.ndarray, dim: int) -> None:
        super().__init__(name="item_tower")
        n_items, _ = item_attributes.shape
        table = np.concatenate([np.zeros((1, item_attributes.shape[1]), np.int32), item_attributes])
        self.attribute_table = tf.constant(table, dtype=tf.int32)
        self.item_embedding = tf.keras.layers.Embedding(n_items + 1, dim, name="item_id_embedding")
        self.attribute_embedding = tf.keras.layers.Embedding(
            int(item_attributes.max()) + 1, dim, name="attribute_embedding"
        )

    def call(self, items: tf.Tensor) -> tf.Tensor:
        """Vectors of `items` (any shape of model indices, 0 = padding) -> shape + [dim]."""
        attrs = tf.gather(self.attribute_table, items)
        present = tf.cast(attrs > 0, self.compute_dtype)[..., None]  # float16 under mixed precision
        attr_mean = tf.reduce_sum(self.attribute_embedding(attrs) * present, axis=-2) / tf.maximum(
            tf.reduce_sum(present, axis=-2), 1.0
        )
        return self.item_embedding(items) + attr_mean

    def all_items(self) -> tf.Tensor:
        """Vectors of every catalogue item, [n_items, dim] (padding row excluded)."""
        return self(tf.range(1, tf.shape(self.attribute_table)[0]))


class SequenceTower(tf.keras.Model):
    """Query tower: causal self-attention over the item vectors of the user's last `max_len` items."""

    def __init__(self, item_tower: ItemTower, config: SequentialConfig) -> None:
        super().__init__(name="sequence_tower")
        self.item_tower = item_tower
        self.config = config
        self.position_embedding = tf.keras.layers.Embedding(config.max_len, config.dim, name="position")
        self.dropout = tf.keras.layers.Dropout(config.dropout)
        self.attention = [
            tf.keras.layers.MultiHeadAttention(
                config.heads, config.dim // config.heads, dropout=config.dropout, name=f"attention_{b}"
            )
            for b in range(config.blocks)
        ]
        self.feed_forward = [
            tf.keras.Sequential(
                [
                    tf.keras.layers.Dense(config.dim, activation="gelu"),
                    tf.keras.layers.Dropout(config.dropout),
                    tf.keras.layers.Dense(config.dim),
                ],
                name=f"feed_forward_{b}",
            )
            for b in range(config.blocks)
        ]
        self.norms = [tf.keras.layers.LayerNormalization(epsilon=1e-6) for _ in range(2 * config.blocks + 1)]

    def call(self, sequences: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Left-padded model indices [B, max_len] (newest last) -> one vector per position [B, max_len, dim]."""
        mask = tf.cast(sequences > 0, self.compute_dtype)[..., None]
        x = self.item_tower(sequences) * mask + self.position_embedding(tf.range(self.config.max_len))[None]
        x = self.dropout(x, training=training) * mask
        key_mask = tf.cast(sequences > 0, tf.bool)[:, None, :]
        for b in range(self.config.blocks):
            h = self.norms[2 * b](x)
            x = x + self.dropout(
                self.attention[b](h, h, attention_mask=key_mask, use_causal_mask=True, training=training),
                training=training,
            )
            x = x + self.dropout(
                self.feed_forward[b](self.norms[2 * b + 1](x), training=training), training=training
            )
            x = x * mask
        return self.norms[-1](x)


class SequentialRetrieval(tfrs.Model):
    """Next-item retrieval: query = the sequence tower at each position, candidates = every item."""

    def __init__(self, item_attributes: np.ndarray, config: SequentialConfig) -> None:
        super().__init__()
        self.config = config
        self.item_tower = ItemTower(item_attributes, config.dim)
        self.sequence_tower = SequenceTower(self.item_tower, config)
        self.loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.NONE
        )

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Cross-entropy of the next item over every non-padded position, weighted: the full softmax
        over the catalogue, or in training a sampled one (`SequentialConfig.negatives`).

        `features["weights"]` (same shape as the targets) weighs each position by the event type of
        its target, normalised to mean 1 over the training set.
        """
        states = self.sequence_tower(features["inputs"], training=training)
        targets = features["targets"]
        keep = targets > 0
        queries, labels = tf.boolean_mask(states, keep), tf.boolean_mask(targets, keep) - 1
        n_items = self.item_tower.attribute_table.shape[0] - 1
        if 0 < self.config.negatives < n_items and training:
            # sampled softmax: the positive against negatives drawn uniformly for the whole batch (no
            # log-Q term: uniform sampling shifts every logit alike); a negative that is the position's
            # own target is masked (an accidental hit). Only the sampled items go through the tower.
            sampled, _, _ = tf.random.uniform_candidate_sampler(
                tf.cast(labels, tf.int64)[:, None], 1, self.config.negatives, True, n_items
            )
            sampled = tf.cast(sampled, labels.dtype)
            positive = tf.reduce_sum(queries * self.item_tower(labels + 1), axis=-1, keepdims=True)
            negative = tf.matmul(queries, self.item_tower(sampled + 1), transpose_b=True)
            logits = tf.cast(tf.concat([positive, negative], axis=1), tf.float32)  # softmax in float32
            hit = tf.concat([tf.zeros_like(positive, tf.bool), labels[:, None] == sampled[None, :]], axis=1)
            logits = tf.where(hit, tf.float32.min, logits)
            losses = self.loss_fn(tf.zeros_like(labels), logits)
        else:
            logits = tf.matmul(queries, self.item_tower.all_items(), transpose_b=True)
            logits = tf.cast(logits, tf.float32)  # the softmax in float32 whatever the compute dtype
            losses = self.loss_fn(labels, logits)
        # mean over the positions of the global batch: replicas' gradients are summed
        return tf.nn.compute_average_loss(losses, sample_weight=tf.boolean_mask(features["weights"], keep))

    def train_step(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """TFRS's train step, with loss scaling under `mixed_float16`; with several replicas,
        sparse gradients are made dense first.

        Each replica's embedding gradients hold as many rows as its share of the batch has
        positions, and MirroredStrategy's all-reduce needs every replica to send the same shape.
        """
        scaling = isinstance(self.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)  # mixed_float16
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            scaled = self.optimizer.get_scaled_loss(loss) if scaling else loss
        gradients = tape.gradient(scaled, self.trainable_variables)
        if scaling:
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=True))
        return {"loss": loss}

    def query(self, histories: Sequence[np.ndarray]) -> tf.Tensor:
        """Query vectors [B, dim] of users given their histories (0-based item indices, oldest first)."""
        padded = pad_left([np.asarray(h) + 1 for h in histories], self.config.max_len)
        return self.sequence_tower(tf.constant(padded), training=False)[:, -1, :]

    def scores(self, histories: Sequence[np.ndarray], item_vectors: tf.Tensor | None = None) -> np.ndarray:
        """Scores of every catalogue item [B, n_items] for each history."""
        items = self.item_tower.all_items() if item_vectors is None else item_vectors
        return tf.cast(tf.matmul(self.query(histories), items, transpose_b=True), tf.float32).numpy()


def pad_left(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
    """The last `length` values of each sequence, left-padded with 0, as int32 [n, length]."""
    out = np.zeros((len(sequences), length), np.int32)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq)[-length:]
        if len(tail):
            out[row, length - len(tail) :] = tail
    return out


def training_windows(
    histories: Sequence[np.ndarray],
    config: SequentialConfig,
    weights: Sequence[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """(inputs, next-item targets, target weights) arrays, one row per training window.

    A history of n >= 2 interactions gives `min(max_windows, ceil((n - 1) / max_len))` windows cut
    from its end, each `max_len + 1` interactions long (consecutive windows share one), so the newest
    interactions are always trained on. `weights` are per interaction (default 1); they are
    normalised to mean 1 over every target position.
    """
    span = config.max_len + 1
    inputs, targets, target_weights = [], [], []
    for u, history in enumerate(histories):
        history = np.asarray(history)
        w = np.ones(len(history), np.float32) if weights is None else np.asarray(weights[u], np.float32)
        end = len(history)
        for _ in range(config.max_windows):
            if end < 2:
                break
            start = max(0, end - span)
            window = history[start:end] + 1
            inputs.append(window[:-1])
            targets.append(window[1:])
            target_weights.append(w[start + 1 : end])
            end = start + 1
    out = {
        "inputs": pad_left(inputs, config.max_len),
        "targets": pad_left(targets, config.max_len),
        "weights": pad_left(target_weights, config.max_len).astype(np.float32),
    }
    if len(inputs):
        positions = out["targets"] > 0
        out["weights"] /= max(float(out["weights"][positions].mean()), 1e-12)
    return out


def training_dataset(
    histories: Sequence[np.ndarray],
    config: SequentialConfig,
    seed: int,
    weights: Sequence[np.ndarray] | None = None,
) -> tf.data.Dataset:
    """Shuffled batches of `training_windows` (users with fewer than two interactions give none)."""
    arrays = training_windows(histories, config, weights)
    n = len(arrays["inputs"])
    if n == 0:
        raise ValueError("no history has two interactions: nothing to train the two-tower on")
    return (
        tf.data.Dataset.from_tensor_slices(arrays)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def fit_sequential(
    histories: Sequence[np.ndarray],
    item_attributes: np.ndarray,
    config: SequentialConfig,
    epochs: int | None = None,
    validate: Callable[[SequentialRetrieval, int], float] | None = None,
    log_dir: Path | None = None,
    verbose: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    weights: Sequence[np.ndarray] | None = None,
) -> tuple[SequentialRetrieval, dict]:
    """Train on `histories`; with `validate`, pick the epoch count by early stopping on its score.

    Args:
        histories: the fitting sequences (0-based item indices, oldest first).
        item_attributes: `[n_items, n_attr]` attribute indices, 0 = none.
        config: hyperparameters.
        epochs: train exactly this many epochs (the refit); default `config.max_epochs`.
        validate: `(model, epochs done) -> score` on validation targets (higher is better), every
            `eval_every` epochs; training stops after `patience` evaluations without improvement and
            the best weights are restored (`models.callbacks.ValidationStopping`).
        log_dir: TensorBoard log folder (loss per epoch, validation score).
        verbose: Keras verbosity.
        strategy: the `tf.distribute` strategy that holds the variables (`models.hardware.
            choose_strategy`); default the current one. Batches are global: each of N replicas
            gets `batch_size / N` sequences.
        weights: per-interaction weights aligned with `histories` (event types); default 1.

    Returns:
        The model and a history dict: `best_epoch`, `best_score`, `evaluations` [(epoch, score)].
    """
    tf.keras.utils.set_random_seed(config.seed)
    model = _compiled(item_attributes, config, config.learning_rate, strategy)
    data = training_dataset(histories, config, config.seed, weights)
    total = epochs or config.max_epochs
    writer = tf.summary.create_file_writer(str(log_dir)) if log_dir else None
    callbacks: list[tf.keras.callbacks.Callback] = [EpochSummary(writer)] if writer else []
    stopping = None
    if validate is not None:
        stopping = ValidationStopping(validate, config.eval_every, config.patience, writer)
        callbacks.append(stopping)
    model.fit(data, epochs=total, verbose=verbose, callbacks=callbacks)
    if stopping is None:
        return model, {"best_epoch": total, "best_score": float("nan"), "evaluations": []}
    return model, stopping.history


def refit_sequential(
    chosen: SequentialRetrieval,
    histories: Sequence[np.ndarray],
    item_attributes: np.ndarray,
    epochs: int | None = None,
    log_dir: Path | None = None,
    verbose: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    learning_rate: float | None = None,
    weights: Sequence[np.ndarray] | None = None,
) -> SequentialRetrieval:
    """Warm-start refit: a copy of the chosen model, trained `epochs` more epochs on `histories`.

    The chosen model (fitted on the training items, its epoch count picked on the validation
    targets) is left untouched; the copy continues from its weights on the refit sequences (e.g.
    training plus validation items), so it learns the newer items without the cost of training
    from scratch again. The default number of extra epochs is the config's `refit_epochs` (chosen
    with `benchmarks.quality.run_refit_study`), at the config's learning rate unless `learning_rate`.
    """
    config = chosen.config
    model = _compiled(item_attributes, config, learning_rate or config.learning_rate, strategy)
    with model.distribute_strategy.scope():
        model.sequence_tower(tf.zeros((1, config.max_len), tf.int32))  # build, then copy the weights
        model.set_weights(chosen.get_weights())
    epochs = config.refit_epochs if epochs is None else epochs
    if epochs > 0:
        writer = tf.summary.create_file_writer(str(log_dir)) if log_dir else None
        model.fit(
            training_dataset(histories, config, config.seed + 1, weights),
            epochs=epochs,
            verbose=verbose,
            callbacks=[EpochSummary(writer)] if writer else [],
        )
    return model


def _compiled(
    item_attributes: np.ndarray,
    config: SequentialConfig,
    learning_rate: float,
    strategy: tf.distribute.Strategy | None,
) -> SequentialRetrieval:
    """A new model with its Adam optimizer, its variables held by `strategy` (default: the current one)."""
    with (strategy or tf.distribute.get_strategy()).scope():
        model = SequentialRetrieval(item_attributes, config)
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate))
    return model
