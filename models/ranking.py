"""Ranking in TFRS: a deep & cross network that predicts whether a viewed item goes into the cart."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from models.config import ModelConfig, Vocabulary
from models.hardware import in_float32

RANKING_CATEGORICAL: tuple[str, ...] = ("region", "age_band", "item_id", "category", "brand")


def scale_numeric(values: np.ndarray) -> np.ndarray:
    """Counts and prices are heavy-tailed: compress them with sign(x) * log1p(|x|) before standardising."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    return np.sign(values) * np.log1p(np.abs(values))


def build_ranking_tower(config: ModelConfig, vocab: Vocabulary) -> tf.keras.Model:
    """The ranker's network: user and item features in, a purchase-intent logit out.

    It sees the user's region and age band, the item's id, category and brand (embedded), and the
    numeric Feast `ranking_v1` features named in `config.ranking_numeric` (user activity counts,
    tenure, recency; item price, age, popularity and conversion), in that order as one float32
    matrix, compressed by `scale_numeric` and standardised with the training means in `vocab`.
    A DCN-v2 cross layer learns feature crosses (this user's cluster x this category), a small
    deep layer the rest.

    Inputs (a dict): the `RANKING_CATEGORICAL` strings [B] and `numeric` float32 [B, n_numeric]
    (already passed through `scale_numeric`). Output: float32 logits [B, 1].
    """
    n_numeric = len(config.ranking_numeric)
    inputs: dict[str, tf.keras.Input] = {
        name: tf.keras.Input(shape=(), dtype=tf.string, name=name) for name in RANKING_CATEGORICAL
    }
    inputs["numeric"] = tf.keras.Input(shape=(n_numeric,), dtype=tf.float32, name="numeric")
    vocabularies = {
        "region": (vocab.region, 4),
        "age_band": (vocab.age_band, 4),
        "item_id": (vocab.item_id, 16),
        "category": (vocab.category, 8),
        "brand": (vocab.brand, 8),
    }
    parts = []
    for name, (values, dim) in vocabularies.items():
        lookup = tf.keras.layers.StringLookup(
            vocabulary=[v for v in values if v != ""], name=f"{name}_lookup"
        )
        parts.append(
            tf.keras.layers.Embedding(lookup.vocabulary_size(), dim, name=f"{name}_embedding")(
                lookup(inputs[name])
            )
        )
    if n_numeric:
        mean = np.asarray(vocab.numeric_mean or [0.0] * n_numeric, dtype=np.float32)
        std = np.asarray(vocab.numeric_std or [1.0] * n_numeric, dtype=np.float32)
        norm = tf.keras.layers.Normalization(
            mean=mean, variance=np.square(np.maximum(std, 1e-6)), name="numeric_norm"
        )
        parts.append(norm(inputs["numeric"]))
    x0 = tf.keras.layers.Concatenate()(parts)
    x = x0
    for i in range(config.cross_layers):
        x = tfrs.layers.dcn.Cross(name=f"cross_{i}")(x0, x)
    x = tf.keras.layers.Dense(config.deep_units, activation="relu")(x)
    x = tf.keras.layers.Dense(1)(x)
    out = tf.keras.layers.Activation("linear", dtype="float32", name="logit")(x)
    return tf.keras.Model(inputs, out, name="ranking_tower")


class RankingModel(tfrs.Model):
    """Ranking: the probability that a user who views an item adds it to the cart (or buys it).

    Each training example is one (user, item) view at a point in time, with the user and item features
    as Feast knew them just before it; the label is 1 when the same session put the item in the cart
    or bought it. Binary cross-entropy on the tower's logit (`tfrs.tasks.Ranking`), AUC as metric.
    """

    def __init__(self, ranking_tower: tf.keras.Model):
        super().__init__()
        self.ranking_tower = ranking_tower
        self.task = in_float32(
            lambda: tfrs.tasks.Ranking(
                loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
                metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")],
            )
        )

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        inputs = {k: features[k] for k in (*RANKING_CATEGORICAL, "numeric")}
        predictions = self.ranking_tower(inputs)
        return in_float32(lambda: self.task(labels=features["label"], predictions=predictions))
