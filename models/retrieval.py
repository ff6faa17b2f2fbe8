"""Two-tower retrieval in TFRS: a query tower (user and recent items), a candidate tower (item), in-batch softmax."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from models.config import ModelConfig, Vocabulary
from models.hardware import in_float32

QUERY_FEATURES: tuple[str, ...] = ("user_id", "recent_items", "region", "age_band")
CANDIDATE_FEATURES: tuple[str, ...] = ("item_id", "category", "brand", "price")


def _lookup_embedding(vocabulary: list[str], dim: int, name: str) -> tf.keras.Sequential:
    """String id -> embedding; unknown ids (and "") share one out-of-vocabulary row."""
    lookup = tf.keras.layers.StringLookup(
        vocabulary=[v for v in vocabulary if v != ""], name=f"{name}_lookup"
    )
    embed = tf.keras.layers.Embedding(lookup.vocabulary_size(), dim, name=f"{name}_embedding")
    return tf.keras.Sequential([lookup, embed], name=f"{name}_encoder")


class MaskedMean(tf.keras.layers.Layer):
    """Mean of a sequence's embeddings over its non-padding ("") positions; zeros for an empty history."""

    def call(self, embeddings: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
        present = tf.cast(tf.not_equal(ids, ""), embeddings.dtype)[..., tf.newaxis]
        total = tf.reduce_sum(embeddings * present, axis=1)
        return total / tf.maximum(tf.reduce_sum(present, axis=1), 1.0)


def build_query_tower(config: ModelConfig, vocab: Vocabulary) -> tf.keras.Model:
    """The query tower: what we know about a shopper at the moment of a recommendation.

    It sees the user id (a learned per-user taste vector), the user's recent item sequence (the Feast
    `user_sequence.recent_items` feature: the last `sequence_length` item ids, newest last, left-padded
    with ""), the region and the age band. The sequence is read twice: a masked mean over all recent
    items (the user's current interests) and the newest item alone (what the session is about now).
    Region and age band give new or light users a sensible starting point.

    Inputs (a dict): `user_id` string [B], `recent_items` string [B, sequence_length], `region` and
    `age_band` string [B] ("" when unknown). Output: float32 [B, embedding_dim].
    """
    d, n = config.embedding_dim, config.sequence_length
    inputs = {
        "user_id": tf.keras.Input(shape=(), dtype=tf.string, name="user_id"),
        "recent_items": tf.keras.Input(shape=(n,), dtype=tf.string, name="recent_items"),
        "region": tf.keras.Input(shape=(), dtype=tf.string, name="region"),
        "age_band": tf.keras.Input(shape=(), dtype=tf.string, name="age_band"),
    }
    user = _lookup_embedding(vocab.user_id, d, "user")(inputs["user_id"])
    sequence = _lookup_embedding(vocab.item_id, d, "sequence_item")(inputs["recent_items"])
    history = MaskedMean(name="history_mean")(sequence, inputs["recent_items"])
    newest = _lookup_embedding(vocab.item_id, d, "newest_item")(inputs["recent_items"][:, -1])
    region = _lookup_embedding(vocab.region, 8, "region")(inputs["region"])
    age = _lookup_embedding(vocab.age_band, 8, "age_band")(inputs["age_band"])
    x = tf.keras.layers.Concatenate()([user, history, newest, region, age])
    x = tf.keras.layers.Dense(2 * d, activation="relu")(x)
    x = tf.keras.layers.Dense(d)(x)
    out = tf.keras.layers.Activation("linear", dtype="float32", name="query_embedding")(x)
    return tf.keras.Model(inputs, out, name="query_tower")


def build_candidate_tower(config: ModelConfig, vocab: Vocabulary) -> tf.keras.Model:
    """The candidate tower: an item as the catalogue describes it.

    It sees the item id (a learned per-item vector, strong for items with history), the category, the
    brand and the price bucket (price cut at training-data quantiles), which carry over to new items.

    Inputs (a dict): `item_id`, `category`, `brand` string [B], `price` float32 [B].
    Output: float32 [B, embedding_dim].
    """
    d = config.embedding_dim
    inputs = {
        "item_id": tf.keras.Input(shape=(), dtype=tf.string, name="item_id"),
        "category": tf.keras.Input(shape=(), dtype=tf.string, name="category"),
        "brand": tf.keras.Input(shape=(), dtype=tf.string, name="brand"),
        "price": tf.keras.Input(shape=(), dtype=tf.float32, name="price"),
    }
    item = _lookup_embedding(vocab.item_id, d, "item")(inputs["item_id"])
    category = _lookup_embedding(vocab.category, 16, "category")(inputs["category"])
    brand = _lookup_embedding(vocab.brand, 16, "brand")(inputs["brand"])
    bucket = tf.keras.layers.Discretization(bin_boundaries=vocab.price_boundaries, name="price_bucket")(
        inputs["price"]
    )
    price = tf.keras.layers.Embedding(len(vocab.price_boundaries) + 1, 8, name="price_embedding")(bucket)
    x = tf.keras.layers.Concatenate()([item, category, brand, price])
    x = tf.keras.layers.Dense(d)(x)
    out = tf.keras.layers.Activation("linear", dtype="float32", name="candidate_embedding")(x)
    return tf.keras.Model(inputs, out, name="candidate_tower")


class RetrievalModel(tfrs.Model):
    """Two-tower retrieval: score(query, item) = <query_tower(query), candidate_tower(item)>.

    Trained with an in-batch softmax (`tfrs.tasks.Retrieval`): every other item of the batch is a
    negative. Popular items turn up as negatives far more often than their share of the catalogue,
    so with `logq_correction` the logits are corrected by the log of the item's sampling probability
    (the `item_probability` feature), as in Yi et al. 2019. Accidental hits (the positive item again
    elsewhere in the batch) are not counted as negatives.
    """

    def __init__(self, query_tower: tf.keras.Model, candidate_tower: tf.keras.Model, config: ModelConfig):
        super().__init__()
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.logq_correction = config.logq_correction
        self.task = in_float32(
            lambda: tfrs.tasks.Retrieval(temperature=config.temperature, remove_accidental_hits=True)
        )

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query = self.query_tower({k: features[k] for k in QUERY_FEATURES})
        candidate = self.candidate_tower({k: features[k] for k in CANDIDATE_FEATURES})
        probability = features["item_probability"] if self.logq_correction else None
        return in_float32(  # the task builds its helper layers while it runs
            lambda: self.task(
                query,
                candidate,
                candidate_sampling_probability=probability,
                candidate_ids=features["item_id"],
                compute_metrics=False,
            )
        )
