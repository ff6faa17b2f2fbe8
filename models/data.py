"""Training data for the TFRS models: validated events, a time-based holdout, point-in-time Feast features.

Every example is a label event from the validated store (`recflow.data.batches.read_events`). Its
features come from Feast's `get_historical_features` at the label's timestamp minus one microsecond
(`features.compute.training_timestamps`), so a feature never sees its own label or anything later.
The newest `settings.data.holdout_days` days are the holdout: no training example, no vocabulary
entry and no popularity count comes from them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from feast import FeatureStore

from features.compute import training_timestamps
from features.store import get_training_frame
from models.config import ModelConfig, Vocabulary
from models.evaluate import holdout_relevance
from models.ranking import RANKING_CATEGORICAL, scale_numeric
from recflow.data.batches import list_batches, read_events
from recflow.settings import Settings

log = logging.getLogger(__name__)

RETRIEVAL_SERVICE = "retrieval_v1"
RANKING_SERVICE = "ranking_v1"
NOT_RANKING_FEATURES: frozenset[str] = frozenset(
    {"user_id", "item_id", "event_timestamp", "label", "session_id", "last_event_unix_s", "_eval"}
)
CART_EVENTS: tuple[str, ...] = ("add_to_cart", "purchase")


@dataclass
class TrainingData:
    """What training and evaluation need, all from the validated store and Feast.

    Attributes:
        retrieval: one row per (user, item, session) interaction of the training window (the newest
            `settings.train.max_examples`), with the query
            features (`region`, `age_band`, `recent_items`) and the candidate features (`category`,
            `brand`, `price`) as of just before it, and `item_probability` (for log-Q correction).
        ranking: one row per (user, item, session) view of the training window (the newest
            `settings.train.max_examples`) with the `ranking_v1`
            features and `label` (1 when the session carted or bought the item).
        catalogue: the items on sale at the end of the training window (item_id, category, brand, price).
        users: the users known at the end of the training window (user_id, region, age_band).
        eval_queries: the evaluated users' query features at the end of the training window.
        relevant: evaluated user -> distinct items they interacted with in the holdout.
        train_events: the training window's events (for the popularity baseline).
        window: first and last day of the training window.
        split: the first holdout instant (00:00 UTC of the first holdout day).
    """

    retrieval: pd.DataFrame
    ranking: pd.DataFrame
    catalogue: pd.DataFrame
    users: pd.DataFrame
    eval_queries: pd.DataFrame
    relevant: dict[str, set[str]]
    train_events: pd.DataFrame
    window: tuple[date, date]
    split: pd.Timestamp

    @property
    def ranking_numeric(self) -> list[str]:
        """The numeric `ranking_v1` columns the ranker reads, in a fixed (sorted) order."""
        return sorted(
            c
            for c in self.ranking.columns
            if c not in NOT_RANKING_FEATURES
            and c not in RANKING_CATEGORICAL
            and pd.api.types.is_numeric_dtype(self.ranking[c])
        )


def split_by_time(events: pd.DataFrame, holdout_days: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Cut events at 00:00 UTC of the first of the newest `holdout_days` days: (train, holdout, split)."""
    if events.empty:
        raise ValueError("No validated events: run ingestion and validation before training")
    ts = pd.to_datetime(events["timestamp"], utc=True)
    split = ts.max().floor("D") - pd.Timedelta(days=holdout_days - 1)
    train, holdout = events[ts < split], events[ts >= split]
    if train.empty:
        raise ValueError(
            f"holdout_days={holdout_days} leaves no training events (events span "
            f"{ts.min().date()}..{ts.max().date()}): lower settings.data.holdout_days"
        )
    return train.reset_index(drop=True), holdout.reset_index(drop=True), split


def first_interactions(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, item, session): the first event (repeat views and cart/purchase echoes dropped)."""
    return events.drop_duplicates(["user_id", "item_id", "session_id"], keep="first").reset_index(drop=True)


def ranking_labels(events: pd.DataFrame) -> pd.DataFrame:
    """First view per (user, item, session) with `label` 1 when that session carted or bought the item."""
    keys = ["user_id", "item_id", "session_id"]
    views = events[events["event_type"] == "view"].drop_duplicates(keys, keep="first")
    carted = events[events["event_type"].isin(CART_EVENTS)][keys].drop_duplicates().assign(label=1.0)
    out = views.merge(carted, on=keys, how="left")
    out["label"] = out["label"].fillna(0.0).astype("float32")
    return out.reset_index(drop=True)


def pad_sequences(sequences: pd.Series, length: int) -> np.ndarray:
    """Item-id lists (newest last, None for none) -> object array [n, length], left-padded with "" (newest last)."""
    out = np.full((len(sequences), length), "", dtype=object)
    for row, seq in enumerate(sequences):
        if seq is None or (isinstance(seq, float) and np.isnan(seq)):
            continue
        recent = [str(i) for i in list(seq)[-length:]]
        if recent:
            out[row, length - len(recent) :] = recent
    return out


def build_training_data(settings: Settings, store: FeatureStore) -> TrainingData:
    """Read the validated events, split off the holdout, fetch point-in-time features from Feast.

    Args:
        settings: platform settings (`validated_dir`, `data.holdout_days`, `features.sequence_length`).
        store: a prepared Feast store (`features.store.prepare_feature_store`).
    """
    events = read_events(settings.validated_dir)
    train, holdout, split = split_by_time(events, settings.data.holdout_days)
    log.info("events: %d training, %d holdout, split at %s", len(train), len(holdout), split)

    last_train_day = (split - pd.Timedelta(days=1)).date()
    catalogue, users = _snapshot_at(settings, last_train_day)
    relevant = holdout_relevance(train, holdout)

    # One Feast call serves the retrieval examples and the evaluated users' queries at the split.
    positives = _newest(first_interactions(train), settings.train.max_examples)
    eval_rows = pd.DataFrame(
        {
            "user_id": sorted(relevant),
            "item_id": str(catalogue["item_id"].iloc[0]),  # any item: only the user features are used
            "session_id": "",
            "timestamp": split,
        }
    )
    combined = pd.concat([positives.assign(_eval=False), eval_rows.assign(_eval=True)], ignore_index=True)
    frame = _with_features(store, combined, RETRIEVAL_SERVICE)
    retrieval = frame[~frame["_eval"]].drop(columns="_eval").reset_index(drop=True)
    eval_queries = frame[frame["_eval"]][["user_id", "region", "age_band", "recent_items"]].reset_index(
        drop=True
    )
    frequency = positives["item_id"].astype(str).value_counts(normalize=True)
    retrieval["item_probability"] = retrieval["item_id"].astype(str).map(frequency).astype("float32")

    ranking = _with_features(
        store, _newest(ranking_labels(train), settings.train.max_examples), RANKING_SERVICE
    )
    first_day = pd.to_datetime(train["timestamp"], utc=True).min().date()
    return TrainingData(
        retrieval=retrieval,
        ranking=ranking,
        catalogue=catalogue,
        users=users,
        eval_queries=eval_queries,
        relevant=relevant,
        train_events=train,
        window=(first_day, last_train_day),
        split=split,
    )


def build_vocabulary(data: TrainingData, config: ModelConfig) -> Vocabulary:
    """Vocabularies, price buckets and numeric scaling, from the training window only.

    The user vocabulary holds the users with a retrieval example; any other user (new, or only active
    before the examples kept) shares the out-of-vocabulary vector and is described by the rest of
    the query (recent items, region, age band).
    """
    users = data.users
    prices = data.catalogue["price"].to_numpy(dtype=np.float64)
    quantiles = np.linspace(0, 1, config.price_buckets + 1)[1:-1]
    boundaries = sorted(set(np.round(np.quantile(prices, quantiles), 2).tolist())) if len(prices) else []
    numeric = ranking_matrix(data.ranking, config.ranking_numeric)
    items = set(data.catalogue["item_id"].astype(str)) | set(data.train_events["item_id"].astype(str))
    return Vocabulary(
        user_id=sorted(set(data.retrieval["user_id"].astype(str))),
        item_id=sorted(items),
        category=sorted(set(data.catalogue["category"].dropna().astype(str))),
        brand=sorted(set(data.catalogue["brand"].dropna().astype(str))),
        region=sorted(set(users["region"].dropna().astype(str))),
        age_band=sorted(set(users["age_band"].dropna().astype(str))),
        price_boundaries=[float(b) for b in boundaries],
        numeric_mean=numeric.mean(axis=0).tolist() if len(numeric) else [],
        numeric_std=numeric.std(axis=0).tolist() if len(numeric) else [],
    )


def ranking_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The ranker's numeric input: `columns` of `frame` (missing -> 0) through `scale_numeric`."""
    values = np.zeros((len(frame), len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):
        if name in frame.columns:
            values[:, j] = pd.to_numeric(frame[name], errors="coerce").fillna(0.0).to_numpy(dtype=np.float32)
    return scale_numeric(values)


def retrieval_arrays(frame: pd.DataFrame, sequence_length: int) -> dict[str, np.ndarray]:
    """Column arrays of retrieval examples, ready for `tf.data.Dataset.from_tensor_slices`."""
    return {
        "user_id": _strings(frame["user_id"]),
        "recent_items": pad_sequences(frame["recent_items"], sequence_length),
        "region": _strings(frame["region"]),
        "age_band": _strings(frame["age_band"]),
        "item_id": _strings(frame["item_id"]),
        "category": _strings(frame["category"]),
        "brand": _strings(frame["brand"]),
        "price": pd.to_numeric(frame["price"], errors="coerce").fillna(0.0).to_numpy(dtype=np.float32),
        "item_probability": frame["item_probability"].fillna(1e-6).to_numpy(dtype=np.float32),
    }


def ranking_arrays(frame: pd.DataFrame, numeric: list[str]) -> dict[str, np.ndarray]:
    """Column arrays of ranking examples (categoricals, scaled numeric matrix, label)."""
    arrays = {name: _strings(frame[name]) for name in RANKING_CATEGORICAL}
    arrays["numeric"] = ranking_matrix(frame, numeric)
    arrays["label"] = frame["label"].to_numpy(dtype=np.float32)
    return arrays


def candidate_arrays(catalogue: pd.DataFrame) -> dict[str, np.ndarray]:
    """Column arrays of the candidate tower's input for every catalogue item."""
    return {
        "item_id": _strings(catalogue["item_id"]),
        "category": _strings(catalogue["category"]),
        "brand": _strings(catalogue["brand"]),
        "price": pd.to_numeric(catalogue["price"], errors="coerce").fillna(0.0).to_numpy(dtype=np.float32),
    }


def _with_features(store: FeatureStore, rows: pd.DataFrame, service: str) -> pd.DataFrame:
    """`rows` plus the service's point-in-time features, one row per input row, in the original order.

    Rows are queried at their `timestamp` minus one microsecond. Feast's file (dask) offline store
    drops an entity row when every value of one of its views is newer than the row (a user's first
    event, day-one activity); such rows are put back here with null features, which is what a
    point-in-time join means for them.
    """
    entity_df = rows.drop(columns=["event_type", "event_id"], errors="ignore").copy()
    entity_df["event_timestamp"] = training_timestamps(rows["timestamp"])
    entity_df = entity_df.drop(columns=["timestamp"]).reset_index(drop=True).reset_index(names="_row")
    frame = get_training_frame(store, entity_df, service)
    if len(frame) != len(entity_df):
        log.info(
            "%s: Feast returned %d of %d rows; the others get null features",
            service,
            len(frame),
            len(entity_df),
        )
    features = frame.drop(columns=[c for c in entity_df.columns if c != "_row"]).drop_duplicates("_row")
    return entity_df.merge(features, on="_row", how="left").drop(columns="_row")


def _newest(examples: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """The newest `limit` examples (all when `limit` is None); `examples` are in time order."""
    if limit is None or len(examples) <= limit:
        return examples
    log.info("keeping the newest %d of %d examples (settings.train.max_examples)", limit, len(examples))
    return examples.tail(limit).reset_index(drop=True)


def _snapshot_at(settings: Settings, day: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The validated catalogue and user snapshots of the newest batch on or before `day`."""
    batches = [b for b in list_batches(settings.validated_dir) if b.day <= day]
    if not batches:
        raise FileNotFoundError(f"No validated batch on or before {day} under {settings.validated_dir}")
    batch = batches[-1]
    return batch.read("items"), batch.read("users")


def _strings(values: pd.Series) -> np.ndarray:
    return values.astype(object).where(values.notna(), "").astype(str).to_numpy(dtype=object)
