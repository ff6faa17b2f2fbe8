"""The recommendation pipeline, in process: online features -> query tower -> faiss -> filter -> ranker -> rules."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from recflow.settings import Settings
from serving.index import ItemIndex, build_index
from serving.purchases import Purchases
from serving.schemas import RecommendResponse, ScoredItem, SimilarItemsResponse
from serving.towers import FastTowers

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("user_features", "retrieve", "rank", "total")
Observer = Callable[[str, float], None]


class UnknownItemError(LookupError):
    """An item id that is not in the served model's catalogue."""


@dataclass
class Recommender:
    """One loaded model version with everything a request needs; immutable once built, safe to share.

    Attributes:
        bundle: the trained towers, item embeddings and popular lists (`models.bundle.ModelBundle`).
        features: the online feature reader (`features.online.OnlineFeatures`); None serves from the
            bundle alone (no user features: every user is cold).
        settings: the platform settings (serving section: candidates, max_per_category).
        tag: the BentoML model tag being served.
        metadata: what made the model (metrics, data window, hyperparameters, ...).
        index: the faiss index over `bundle.item_embeddings`.
        towers: the bundle's towers behind concrete functions, item inputs of the catalogue cached.
        purchases: who bought what (shared across model versions), for the purchased-item filter.
        observe: called with (stage, seconds) after each stage of `recommend` (latency metrics).
    """

    bundle: object
    features: object | None
    settings: Settings
    tag: str
    metadata: dict
    index: ItemIndex
    towers: FastTowers | None = None
    purchases: Purchases = field(default_factory=Purchases)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    observe: Observer | None = None

    def __post_init__(self) -> None:
        self.item_ids: np.ndarray = np.asarray(self.bundle.item_ids, dtype=str)
        self.item_list: list[str] = [str(i) for i in self.item_ids]
        self.row_of: dict[str, int] = {item: row for row, item in enumerate(self.item_list)}
        embeddings = np.asarray(self.bundle.item_embeddings, dtype=np.float32)
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        self.unit_embeddings = embeddings / np.maximum(norms, 1e-12)
        self.temperature = float(self.metadata.get("hyperparameters", {}).get("temperature", 1.0))
        if self.towers is None:
            self.towers = FastTowers(self.bundle, None)
        self.categories = self._catalogue_categories()

    # ---- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_bundle(
        cls,
        settings: Settings,
        bundle_path: Path,
        features: object | None,
        tag: str = "local",
        metadata: dict | None = None,
        purchases: Purchases | None = None,
    ) -> Recommender:
        """Load a bundle folder and build its faiss index (recall against exact search checked)."""
        import faiss

        from models.bundle import ModelBundle

        faiss.omp_set_num_threads(1)  # one query at a time: threads only add latency
        bundle = ModelBundle.load(bundle_path)
        sample_queries = _sample_queries(bundle)
        index = build_index(bundle.item_embeddings, settings.serving, sample_queries)
        metadata = {**bundle.metadata, **(metadata or {})}
        towers = FastTowers(bundle, features.items(list(bundle.item_ids)) if features is not None else None)
        return cls(bundle, features, settings, tag, metadata, index, towers, purchases or Purchases())

    @classmethod
    def from_model_store(
        cls, settings: Settings, tag: str, features: object | None, purchases: Purchases | None = None
    ) -> Recommender:
        """Load a packaged model by its BentoML tag."""
        from serving.package import model_info

        bundle_path, metadata = model_info(settings, tag)
        return cls.from_bundle(settings, bundle_path, features, tag, metadata, purchases)

    # ---- requests --------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int, region: str | None = None) -> RecommendResponse:
        """The top-k items for one user, ranked, with already-purchased items removed and the list kept full.

        The score of a candidate is the retrieval model's probability that the user turns to it next
        (softmax of the query-item inner products over the candidates, at the training temperature)
        times the ranker's probability that a viewed item goes into the cart.

        Unknown users (not in the online store) get popular items of their region when one is given,
        else overall, with `fallback=True`.
        """
        start = time.perf_counter()
        user = self._user(user_id)
        self._mark("user_features", start)
        if user is None:
            items = self._popular(region, k, exclude=set())
            self._mark("total", start)
            return RecommendResponse(user_id=user_id, items=items, model=self.tag, fallback=True)

        recent = [i for i in (user.get("recent_items") or []) if i in self.row_of]
        user = {**user, "recent_items": recent}
        purchased = self.purchases.of(user_id) | set(user.get("purchased_items") or [])

        t = time.perf_counter()
        query = self.towers.query_embedding(user)
        rows, sims = self.index.search(query, self.settings.serving.candidates + len(purchased))
        bought_rows = [self.row_of[i] for i in purchased if i in self.row_of]
        keep = np.flatnonzero((rows[0] >= 0) & ~np.isin(rows[0], bought_rows))[
            : self.settings.serving.candidates
        ]
        candidate_rows = rows[0][keep]
        interest = _softmax(sims[0][keep] / self.temperature)
        self._mark("retrieve", t)

        t = time.perf_counter()
        intent = self.towers.rank(user, candidate_rows)  # item features: the online cache, see refresh_items
        scores = interest * intent  # P(user turns to the item next) x P(it goes into the cart | viewed)
        self._mark("rank", t)

        order = np.argsort(-scores, kind="stable")
        chosen = self._apply_rules([(int(candidate_rows[i]), float(scores[i])) for i in order], k)
        reasons = self._reasons([r for r, _ in chosen], recent)
        items = [
            ScoredItem(item_id=self.item_list[r], score=score, reason=reason)
            for (r, score), reason in zip(chosen, reasons, strict=True)
        ]
        if len(items) < k:  # small catalogue or strict rules: top up with popular items
            exclude = purchased | {i.item_id for i in items}
            items += self._popular(user.get("region") or region, k - len(items), exclude)
        self._mark("total", start)
        return RecommendResponse(user_id=user_id, items=items, model=self.tag, fallback=False)

    def similar_items(self, item_id: str, k: int) -> SimilarItemsResponse:
        """The k items nearest to `item_id` in the candidate tower's space (cosine), itself excluded.

        Raises:
            UnknownItemError: if `item_id` is not in the served catalogue.
        """
        row = self.row_of.get(item_id)
        if row is None:
            raise UnknownItemError(f"Unknown item_id {item_id!r}: not in the catalogue of model {self.tag}.")
        sims = self.unit_embeddings @ self.unit_embeddings[row]
        sims[row] = -np.inf
        top = np.argsort(-sims, kind="stable")[:k]
        items = [
            ScoredItem(item_id=self.item_ids[r], score=float(sims[r]), reason=f"similar to {item_id}")
            for r in top
        ]
        return SimilarItemsResponse(item_id=item_id, items=items, model=self.tag)

    def describe(self) -> dict:
        """What is served: tag, index settings, catalogue size, model metadata."""
        return {
            "model": self.tag,
            "loaded_at": self.loaded_at,
            "n_items": len(self.item_ids),
            "index": self.index.describe(),
            "metadata": self.metadata,
        }

    # ---- stages ----------------------------------------------------------------------------------
    def _user(self, user_id: str) -> dict | None:
        if self.features is None:
            return None
        return self.features.user(user_id)

    def refresh_items(self) -> None:
        """Reload the online item features (after a materialization) into the ranker's item inputs."""
        if self.features is None:
            return
        self.features.refresh()
        self.towers.set_items(self.features.items(list(self.item_ids)))
        self.categories = self._catalogue_categories()

    def _catalogue_categories(self) -> list[str | None]:
        if self.features is None:
            return [None] * len(self.item_ids)
        frame = self.features.items(list(self.item_ids))
        return _column(frame, "category", len(self.item_ids))

    def _apply_rules(self, ranked: list[tuple[int, float]], k: int) -> list[tuple[int, float]]:
        """Business rules from settings: at most `max_per_category` items of one category."""
        limit = self.settings.serving.max_per_category
        if limit is None:
            return ranked[:k]
        out, per_category = [], {}
        for row, score in ranked:
            category = self.categories[row]
            if category is not None and per_category.get(category, 0) >= limit:
                continue
            per_category[category] = per_category.get(category, 0) + 1
            out.append((row, score))
            if len(out) == k:
                break
        return out

    def _reasons(self, rows: list[int], recent: list[str]) -> list[str]:
        """For each row, name the recent item closest to it in the model's item space."""
        if not recent:
            return ["matches your profile"] * len(rows)
        history = recent[-20:]
        history_rows = [self.row_of[i] for i in history]
        sims = self.unit_embeddings[rows] @ self.unit_embeddings[history_rows].T
        sims[
            np.asarray(rows)[:, None] == np.asarray(history_rows)[None, :]
        ] = -np.inf  # not "similar to itself"
        seen = set(history_rows)
        return [
            "you viewed it recently" if row in seen else f"similar to {history[j]}, which you viewed"
            for row, j in zip(rows, np.argmax(sims, axis=1), strict=True)
        ]

    def _popular(self, region: str | None, k: int, exclude: set[str]) -> list[ScoredItem]:
        """Popular items (of `region` first when known), skipping `exclude`; score falls with the rank."""
        popular = self.bundle.popular
        by_region = popular.get("by_region", {}) if region else {}
        lists = [(by_region[region], f"popular in region {region}")] if region in by_region else []
        lists.append((popular.get("global", []), "popular overall"))
        out: list[ScoredItem] = []
        seen = set(exclude)
        for items, reason in lists:
            for item in items:
                if len(out) == k:
                    return out
                if item not in seen and item in self.row_of:
                    seen.add(item)
                    out.append(ScoredItem(item_id=item, score=round(1.0 / (len(out) + 1), 6), reason=reason))
        for item in self.item_ids:  # catalogue smaller than the popular lists: fill in catalogue order
            if len(out) == k:
                break
            if item not in seen:
                seen.add(item)
                out.append(ScoredItem(item_id=item, score=0.0, reason="in the catalogue"))
        return out

    def _mark(self, stage: str, since: float) -> None:
        if self.observe is not None:
            self.observe(stage, time.perf_counter() - since)


def _sample_queries(bundle: object, n: int = 200) -> np.ndarray:
    """Query vectors to check the index's recall on: the query tower on users built from item histories."""
    rng = np.random.default_rng(0)
    items = np.asarray(bundle.item_ids, dtype=str)
    users = [
        {"user_id": "", "recent_items": list(rng.choice(items, size=min(5, len(items)), replace=False))}
        for _ in range(n)
    ]
    return bundle.query_embedding(users)


def _softmax(logits: np.ndarray) -> np.ndarray:
    if len(logits) == 0:
        return logits.astype(np.float32)
    z = np.exp(logits - logits.max())
    return (z / z.sum()).astype(np.float32)


def _column(frame: pd.DataFrame, name: str, n: int) -> list:
    if name in frame.columns:
        return [None if pd.isna(v) else str(v) for v in frame[name]]
    return [None] * n
