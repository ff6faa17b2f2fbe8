"""Sequential two-tower retrieval in TFRS (self-attention over the user's last items, full softmax).

The candidate tower embeds an item from its id and its attributes (brand and sub-categories: the
mean of their embeddings). The query tower reads the user's last `max_len` items, each encoded by
the candidate tower (the two towers share their item representation, as SASRec does), adds a
learned embedding of the position counted from the most recent item, and runs causal
self-attention blocks; the output at the newest position is the query. Training predicts, at every
position of every training sequence, the next item with a softmax over the whole catalogue (12k
items fit in one matrix product, so no sampling and no log-Q correction is needed).

Item indices are 0-based in the benchmark arrays; inside the model 0 is padding and item i is i + 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
from tensorflow.core.framework import summary_pb2


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
    seed: int = 42

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


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
        """Full-softmax cross-entropy of the next item, over every non-padded position."""
        states = self.sequence_tower(features["inputs"], training=training)
        targets = features["targets"]
        keep = targets > 0
        logits = tf.matmul(tf.boolean_mask(states, keep), self.item_tower.all_items(), transpose_b=True)
        logits = tf.cast(logits, tf.float32)  # the softmax in float32 whatever the compute dtype
        # mean over the positions of the global batch: replicas' gradients are summed
        return tf.nn.compute_average_loss(self.loss_fn(tf.boolean_mask(targets, keep) - 1, logits))

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


_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
)
_TEXT_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
)


class EpochSummary(tf.keras.callbacks.Callback):
    """Writes the training losses of every epoch as TensorBoard scalars."""

    def __init__(self, writer: tf.summary.SummaryWriter) -> None:
        super().__init__()
        self.writer = writer

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, value in (logs or {}).items():
            write_scalar(self.writer, f"train/{name}", value, epoch + 1)


def pad_left(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
    """The last `length` values of each sequence, left-padded with 0, as int32 [n, length]."""
    out = np.zeros((len(sequences), length), np.int32)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq)[-length:]
        if len(tail):
            out[row, length - len(tail) :] = tail
    return out


def training_dataset(histories: Sequence[np.ndarray], config: SequentialConfig, seed: int) -> tf.data.Dataset:
    """Shuffled batches of (inputs, next-item targets), one row per user with at least two items."""
    usable = [np.asarray(h) + 1 for h in histories if len(h) >= 2]
    inputs = pad_left([h[:-1] for h in usable], config.max_len)
    targets = pad_left([h[1:] for h in usable], config.max_len)
    ds = tf.data.Dataset.from_tensor_slices({"inputs": inputs, "targets": targets})
    return (
        ds.shuffle(len(usable), seed=seed, reshuffle_each_iteration=True)
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
) -> tuple[SequentialRetrieval, dict]:
    """Train on `histories`; with `validate`, pick the epoch count by early stopping on its score.

    Args:
        histories: the fitting sequences (0-based item indices, oldest first).
        item_attributes: `[n_items, n_attr]` attribute indices, 0 = none.
        config: hyperparameters.
        epochs: train exactly this many epochs (the refit); default `config.max_epochs`.
        validate: `(model, epochs done) -> score` on validation targets (higher is better), every
            `eval_every` epochs; training stops after `patience` evaluations without improvement and the best
            weights are restored.
        log_dir: TensorBoard log folder (loss per epoch, validation score).
        verbose: Keras verbosity.
        strategy: the `tf.distribute` strategy that holds the variables (`models.hardware.
            choose_strategy`); default the current one. Batches are global: each of N replicas
            gets `batch_size / N` sequences.

    Returns:
        The model and a history dict: `best_epoch`, `best_score`, `evaluations` [(epoch, score)].
    """
    tf.keras.utils.set_random_seed(config.seed)
    model = _compiled(item_attributes, config, config.learning_rate, strategy)
    data = training_dataset(histories, config, config.seed)
    total = epochs or config.max_epochs
    writer, callbacks = _tensorboard(log_dir)
    evaluations: list[tuple[int, float]] = []
    best = {"epoch": total, "score": float("nan"), "weights": None}
    done = 0
    while done < total:
        step = min(config.eval_every if validate else total, total - done)
        model.fit(data, epochs=done + step, initial_epoch=done, verbose=verbose, callbacks=callbacks)
        done += step
        if validate is None:
            continue
        score = validate(model, done)
        evaluations.append((done, score))
        if writer:
            write_scalar(writer, "validation/ndcg@10", score, done)
        if best["weights"] is None or score > best["score"]:
            best = {"epoch": done, "score": score, "weights": model.get_weights()}
        elif len(evaluations) - [e for e, _ in evaluations].index(best["epoch"]) > config.patience:
            break
    if validate is not None and best["weights"] is not None:
        model.set_weights(best["weights"])
    return model, {"best_epoch": best["epoch"], "best_score": best["score"], "evaluations": evaluations}


def refit_sequential(
    chosen: SequentialRetrieval,
    histories: Sequence[np.ndarray],
    item_attributes: np.ndarray,
    epochs: int | None = None,
    log_dir: Path | None = None,
    verbose: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    learning_rate: float | None = None,
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
        _, callbacks = _tensorboard(log_dir)
        model.fit(
            training_dataset(histories, config, config.seed + 1),
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
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


def _tensorboard(
    log_dir: Path | None,
) -> tuple[tf.summary.SummaryWriter | None, list[tf.keras.callbacks.Callback]]:
    """The summary writer of `log_dir` and the callback that logs each epoch's losses there (none without)."""
    writer = tf.summary.create_file_writer(str(log_dir)) if log_dir else None
    return writer, [EpochSummary(writer)] if writer else []


def save_sequential(model: SequentialRetrieval, folder: Path) -> Path:
    """Write the weights and the config (`config.json`) that rebuilds the model."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(model.config.to_json())
    model.save_weights(str(folder / "weights"))
    return folder


RANKER_FEATURES: tuple[str, ...] = (
    "retrieval_score",
    "retrieval_gap",
    "retrieval_log_rank",
    "cooc_share",
    "cooc_log_score",
    "cooc_log_rank",
    "log_popularity",
    "log_history_length",
    "attribute_overlap",
)


@dataclass(frozen=True)
class RankerConfig:
    """Hyperparameters of the candidate re-ranker, saved next to its weights."""

    candidates: int = 100
    cross_layers: int = 2
    hidden: tuple[int, ...] = (64, 32)
    learning_rate: float = 3e-3
    batch_size: int = 256
    max_epochs: int = 30
    patience: int = 3
    seed: int = 42

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def merge_candidates(first: np.ndarray, second: np.ndarray, n: int) -> np.ndarray:
    """Interleave two ranked candidate lists per user ([B, m] each) into `n` unique items [B, n]."""
    out = np.zeros((len(first), n), dtype=np.int64)
    for u in range(len(first)):
        seen: dict[int, None] = {}
        for a, b in zip(first[u], second[u], strict=True):
            seen.setdefault(int(a))
            if len(seen) >= n:
                break
            seen.setdefault(int(b))
            if len(seen) >= n:
                break
        out[u] = list(seen)[:n]
    return out


def top_items(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` best-scoring items per row, best first."""
    part = np.argpartition(-scores, n, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def candidate_features(
    retrieval_scores: np.ndarray,
    cooc_scores: np.ndarray,
    histories: Sequence[np.ndarray],
    popularity: np.ndarray,
    item_attributes: np.ndarray,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Merged top-`n` candidates of the two sources and the ranker's features for each.

    Both score arrays are `[B, n_items]`; the user's history is masked here (in place).

    Returns:
        candidates `[B, n]` (item indices) and features `[B, n, len(RANKER_FEATURES)]` float32.
    """
    for u, h in enumerate(histories):
        retrieval_scores[u, h] = -np.inf
        cooc_scores[u, h] = -np.inf
    top_r, top_c = top_items(retrieval_scores, n), top_items(cooc_scores, n)
    cand = merge_candidates(top_r, top_c, n)
    b = len(cand)
    rank_r = np.full((b, retrieval_scores.shape[1]), n, np.float32)
    rank_c = np.full_like(rank_r, n)
    rows = np.arange(b)[:, None]
    rank_r[rows, top_r] = np.arange(n)
    rank_c[rows, top_c] = np.arange(n)
    r = np.take_along_axis(retrieval_scores, cand, axis=1)
    c = np.maximum(np.take_along_axis(cooc_scores, cand, axis=1), 0.0)
    c_max = np.maximum(c.max(axis=1, keepdims=True), 1e-9)
    last = np.array([h[-1] if len(h) else 0 for h in histories])
    last_attrs = item_attributes[last]
    cand_attrs = item_attributes[cand]
    shared = (cand_attrs[:, :, :, None] == last_attrs[:, None, None, :]) & (cand_attrs[:, :, :, None] > 0)
    n_attrs = np.maximum((cand_attrs > 0).sum(-1), 1)
    lengths = np.array([len(h) for h in histories], np.float32)[:, None].repeat(n, axis=1)
    feats = np.stack(
        [
            r,
            r - r.max(axis=1, keepdims=True),
            np.log1p(np.take_along_axis(rank_r, cand, axis=1)),
            c / c_max,
            np.log1p(c),
            np.log1p(np.take_along_axis(rank_c, cand, axis=1)),
            np.log1p(popularity[cand]),
            np.log1p(lengths),
            shared.any(-1).sum(-1) / n_attrs,
        ],
        axis=-1,
    ).astype(np.float32)
    return cand, np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=-30.0)  # masked items, tiny catalogues


class CandidateRanker(tfrs.Model):
    """DCN-v2 re-ranker: scores each (user, candidate) from retrieval, co-occurrence and item features.

    It sees, per candidate, the two-tower score and rank, the co-occurrence score and rank, the
    item's popularity, the user's history length and the attribute overlap with the user's last
    item; cross layers learn their interactions. Trained with a softmax over each user's candidate
    list (the next item is the positive).
    """

    def __init__(self, config: RankerConfig, feature_mean: np.ndarray, feature_var: np.ndarray) -> None:
        super().__init__()
        self.config = config
        self.norm = tf.keras.layers.Normalization(mean=feature_mean, variance=np.maximum(feature_var, 1e-6))
        self.cross = [tfrs.layers.dcn.Cross() for _ in range(config.cross_layers)]
        self.deep = tf.keras.Sequential([tf.keras.layers.Dense(h, activation="relu") for h in config.hidden])
        self.out = tf.keras.layers.Dense(1)
        self.task = tfrs.tasks.Ranking(loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True))

    def call(self, features: tf.Tensor) -> tf.Tensor:
        """Features [B, C, F] -> logits [B, C]."""
        shape = tf.shape(features)
        x0 = self.norm(tf.reshape(features, [-1, len(RANKER_FEATURES)]))
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return tf.reshape(self.out(self.deep(x)), shape[:2])

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.task(labels=features["labels"], predictions=self(features["features"]))


def fit_ranker(
    feats: np.ndarray,
    labels: np.ndarray,
    config: RankerConfig,
    epochs: int | None = None,
    validate: Callable[[CandidateRanker], float] | None = None,
    verbose: int = 0,
) -> tuple[CandidateRanker, dict]:
    """Train the re-ranker on users whose next item is among their candidates.

    Args:
        feats: `[B, C, F]` candidate features.
        labels: `[B, C]` one-hot of the next item (rows without a positive are dropped).
        config: hyperparameters.
        epochs: exact epoch count (the refit); default early stopping with `validate`.
        validate: scores the ranker (higher is better) after each epoch.
        verbose: Keras verbosity.
    """
    tf.keras.utils.set_random_seed(config.seed)
    keep = labels.sum(axis=1) > 0
    flat = feats[keep].reshape(-1, feats.shape[-1])
    model = CandidateRanker(config, flat.mean(axis=0), flat.var(axis=0))
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    data = (
        tf.data.Dataset.from_tensor_slices(
            {"features": feats[keep], "labels": labels[keep].astype(np.float32)}
        )
        .shuffle(int(keep.sum()), seed=config.seed)
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    total = epochs or config.max_epochs
    best = {"epoch": total, "score": float("nan"), "weights": None}
    evaluations: list[tuple[int, float]] = []
    for epoch in range(1, total + 1):
        model.fit(data, epochs=epoch, initial_epoch=epoch - 1, verbose=verbose)
        if validate is None:
            continue
        score = validate(model)
        evaluations.append((epoch, score))
        if best["weights"] is None or score > best["score"]:
            best = {"epoch": epoch, "score": score, "weights": model.get_weights()}
        elif epoch - best["epoch"] >= config.patience:
            break
    if validate is not None and best["weights"] is not None:
        model.set_weights(best["weights"])
    return model, {"best_epoch": best["epoch"], "best_score": best["score"], "evaluations": evaluations}


def rerank(model: CandidateRanker, cand: np.ndarray, feats: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """The candidates of each user re-ordered by the ranker, best first [B, C]."""
    logits = np.concatenate(
        [model(tf.constant(feats[lo : lo + batch_size])).numpy() for lo in range(0, len(feats), batch_size)]
    )
    return np.take_along_axis(cand, np.argsort(-logits, axis=1, kind="stable"), axis=1)
