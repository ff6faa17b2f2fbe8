"""The one scoring path of the platform: candidates -> seen filter -> ranker features -> ranking -> backfill.

`BatchScorer` turns users (their recent items, the items never to show them, their online features)
into top-k lists with a package (`models.bundle.ModelBundle`). The service calls it with one user per
request; training's evaluation, the promotion gate, monitoring, `recflow simulate` and the benchmarks
call it with thousands. It is the same code either way, so what is measured is what is served.

For each user:

1. **Two-tower**: the query tower reads the recent items; the ANN index (`models.index`) returns the
   nearest items, the excluded ones dropped, the best `C` kept (`C` = the ranker's candidates).
2. **Co-occurrence**: the items that followed the user's recent items in other users' histories
   (with a popularity tie-break, so a user with a thin history still gets `C`); excluded dropped.
2b. **Buy again** (packages fitted with purchase records only, `models.buy_again`): the user's own
   purchases by a time-decayed count; excluded dropped (so nothing where the seen filter removes
   what the user bought).
2c. **Household neighbours** (the same packages, `models.neighbours`): what the households nearest
   to the user's purchase record buy, mixed with the user's own record (TIFU-KNN); excluded dropped.
3. **Merge**: the lists interleaved (buy again, neighbours, two-tower, co-occurrence) into `C` distinct
   candidates.
4. **Rank**: the ranker orders the candidates from each source's view of them plus the online user
   and item features; a package without a ranker keeps the merged order.
5. **Rules and backfill**: at most `max_per_category` items of one category; in a package with the
   buy-again source, at least `buy_again.min_discoveries` items the user never bought (the best-ranked
   ones replace the lowest-ranked repeats); a list shorter than `k` is filled with popular items (the
   user's region first) that are not excluded.

Users the platform has never seen are not scored here: the service answers them from the popular
lists (`ModelBundle.popular`), with `fallback: true`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from scipy import sparse

from models.bundle import ModelBundle
from models.buy_again import RECENT_BASKETS, Bought, PurchaseRecord, repeat_lookup
from models.index import ItemIndex, build_index
from models.neighbours import NEIGHBOUR_FEATURES, NeighbourScores
from models.ranker import SOURCE_FEATURES, scale_numeric
from models.sequential import pad_left
from recflow.settings import ServingSettings

SOURCES: tuple[str, ...] = ("two-tower", "co-occurrence", "both", "popular", "buy-again", "neighbours")
SCORING_BATCH = 1024
"""Users scored together: a batch holds [B, candidates + excluded] index hits and [B, candidates,
features] ranker inputs, never a dense [B, catalogue] matrix (the co-occurrence scores stay sparse)."""


@dataclass(frozen=True)
class Query:
    """One user to recommend to.

    Attributes:
        history: the user's recent item ids, oldest first (ids the package does not know are ignored).
        exclude: item ids never to recommend (the seen filter: what the user bought).
        user_features: online user features by name (missing or None count as 0).
        region: the user's region, for the popular backfill.
        bought: the user's purchases as (item id, days before now), one per purchase: the buy-again
            source's input (read only by packages that have it).
    """

    history: Sequence[str]
    exclude: Collection[str] = ()
    user_features: Mapping[str, object] | None = None
    region: str | None = None
    bought: Sequence[tuple[str, float]] = ()


@dataclass(frozen=True)
class Ranked:
    """One user's list: catalogue rows, scores (descending), the source of each item and its
    two-tower score (query . item, NaN for backfilled items; what prediction drift watches)."""

    rows: np.ndarray
    scores: np.ndarray
    sources: list[str] = field(default_factory=list)
    retrieval: np.ndarray | None = None


@dataclass(frozen=True)
class Candidates:
    """A batch's merged candidates and the ranker's input for them.

    Attributes:
        rows: int [B, C] catalogue rows (-1 where the catalogue ran out after the seen filter).
        features: float32 [B, C, F] ranker input (`SOURCE_FEATURES`, user features, item features).
        source: int [B, C] index into `SOURCES` (0 two-tower, 1 co-occurrence, 2 both, 4 buy again:
            the user's own purchase, whatever else proposed it; 5 the household neighbours alone).
        retrieval: float32 [B, C] the two-tower's score of each candidate.
        neighbour_rank: float32 [B, C] each candidate's 0-based rank in the household-neighbour list
            (C where it is not there, or the package has no such source).
        discovery: int [B] the neighbours' discovery: the item the user never bought with the best
            neighbour mean, always among the candidates (-1: none, or no such source).
    """

    rows: np.ndarray
    features: np.ndarray
    source: np.ndarray
    retrieval: np.ndarray
    neighbour_rank: np.ndarray
    discovery: np.ndarray


class BatchScorer:
    """Scores users with a package: the service, training, the gate, monitoring and benchmarks share it.

    Args:
        bundle: the package.
        index: the ANN index over `bundle.item_embeddings`; by default built as `serving` asks
            (exact search up to `exact_max_items`).
        serving: index settings and the `max_per_category` rule (default `ServingSettings()`).
        item_features: raw online item features [n_items, len(bundle.item_features)] in catalogue
            order (missing as NaN); None: all 0 (no feature store).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        index: ItemIndex | None = None,
        serving: ServingSettings | None = None,
        item_features: np.ndarray | None = None,
    ) -> None:
        self.bundle = bundle
        self.serving = serving or ServingSettings()
        n_items = len(bundle.catalogue)
        self.n_candidates = min(bundle.config.ranker.candidates, n_items)
        self.index = index or build_index(bundle.item_embeddings, self.serving, self._sample_queries())
        self.attributes = bundle.catalogue.attributes
        self.log_popularity = np.log1p(bundle.popularity).astype(np.float32)
        self.buy_again = bundle.config.buy_again
        self.repurchase_days = (
            np.full(n_items, np.nan) if bundle.repurchase_days is None else np.asarray(bundle.repurchase_days)
        )
        self.tie_break = (1e-6 * bundle.popularity / max(float(bundle.popularity.max()), 1.0))[None, :]
        self.neighbour_config = bundle.config.neighbours
        self.neighbours = bundle.neighbours if self.neighbour_config.enabled else None
        self._tie_order = np.lexsort((np.arange(n_items), -self.tie_break[0]))  # best first, ties by row
        self.batch_size = SCORING_BATCH
        max_len = bundle.config.two_tower.max_len
        tower = bundle.two_tower.sequence_tower
        self._query = tf.function(lambda x: tower(x, training=False)[:, -1, :]).get_concrete_function(
            tf.TensorSpec([None, max_len], tf.int32)
        )
        self._rank = None
        if bundle.ranker is not None:
            ranker = bundle.ranker
            self._rank = tf.function(lambda x: ranker(x)).get_concrete_function(
                tf.TensorSpec([None, None, ranker.n_features], tf.float32)
            )
        self.set_item_features(item_features)

    @classmethod
    def shared(
        cls,
        bundle: ModelBundle,
        serving: ServingSettings | None = None,
        item_features: np.ndarray | None = None,
    ) -> BatchScorer:
        """The scorer of `bundle` under `serving`, built once per bundle object and kept on it.

        Building one costs the ANN index (an IVF's training over a 92k-item catalogue is seconds) and
        the towers' traced functions; callers that score one package day after day (monitoring, the
        replay, the gate) share it. Each call sets `item_features` (the day's online features).
        """
        serving = serving or ServingSettings()
        cache = bundle.__dict__.setdefault("_scorers", {})
        key = serving.model_dump_json()
        scorer = cache.get(key)
        if scorer is None:
            scorer = cache[key] = cls(bundle, serving=serving, item_features=item_features)
        else:
            scorer.set_item_features(item_features)
        return scorer

    @property
    def reads_purchases(self) -> bool:
        """Whether the package reads the users' purchase records (buy-again or neighbour source)."""
        return self.buy_again.enabled or self.neighbours is not None

    # ---- inputs ----------------------------------------------------------------------------------
    def set_item_features(self, raw: np.ndarray | None) -> None:
        """Replace the online item features (after the feature store was refreshed); raw values, NaN = missing."""
        width = len(self.bundle.item_features)
        n = len(self.bundle.catalogue)
        if raw is None:
            raw = np.zeros((n, width), np.float32)
        raw = np.asarray(raw, dtype=np.float32)
        if raw.shape != (n, width):
            raise ValueError(f"item features must be [{n}, {width}] in catalogue order, got {raw.shape}")
        self._item_features = scale_numeric(raw)  # one assignment: requests see the old or the new

    def user_matrix(self, queries: Sequence[Query]) -> np.ndarray:
        """The raw online user features of `queries` [B, len(bundle.user_features)] (missing as NaN)."""
        names = self.bundle.user_features
        out = np.full((len(queries), len(names)), np.nan, np.float32)
        for row, query in enumerate(queries):
            values = query.user_features or {}
            for j, name in enumerate(names):
                out[row, j] = _number(values.get(name))
        return out

    # ---- the path --------------------------------------------------------------------------------
    def recommend(self, queries: Sequence[Query], k: int) -> list[Ranked]:
        """Top-k lists for `queries` (item ids in, catalogue rows out: `bundle.catalogue.ids(rows)`)."""
        catalogue = self.bundle.catalogue
        histories = [catalogue.encode(q.history) for q in queries]
        exclude = [catalogue.encode(q.exclude) for q in queries]
        regions = [q.region for q in queries]
        bought = [self.bought(q.bought) for q in queries] if self.reads_purchases else None
        return self.rank(histories, exclude, self.user_matrix(queries), k, regions, bought)

    def bought(self, purchases: Sequence[tuple[str, float]]) -> Bought:
        """A query's purchases (item id, days ago) as catalogue rows; unknown items are ignored."""
        index = self.bundle.catalogue.index
        known = [(index[str(i)], float(d)) for i, d in purchases if str(i) in index]
        if not known:
            return Bought.empty()
        rows, days = zip(*known, strict=True)
        return Bought(np.array(rows, np.int64), np.maximum(np.array(days, np.float64), 0.0))

    def rank(
        self,
        histories: Sequence[np.ndarray],
        exclude: Sequence[np.ndarray],
        user_features: np.ndarray | None,
        k: int,
        regions: Sequence[str | None] | None = None,
        bought: Sequence[Bought] | None = None,
    ) -> list[Ranked]:
        """Top-k lists from catalogue rows: histories (oldest first) and excluded rows per user.

        Args:
            histories: each user's recent items as catalogue rows.
            exclude: each user's rows never to recommend.
            user_features: raw online user features [B, n_user_features] (NaN = missing) or None.
            k: list length.
            regions: each user's region (popular backfill), or None.
            bought: each user's purchases (the buy-again source's input), or None (none known).
        """
        out: list[Ranked] = []
        for lo in range(0, len(histories), self.batch_size):
            hi = min(lo + self.batch_size, len(histories))
            users = None if user_features is None else user_features[lo:hi]
            part = None if bought is None else bought[lo:hi]
            cands = self._candidates(histories[lo:hi], exclude[lo:hi], users, part)
            order, scores = self._order(cands)
            for b in range(hi - lo):
                region = regions[lo + b] if regions is not None else None
                repeats = None
                if self.buy_again.enabled and self.buy_again.min_discoveries and bought is not None:
                    repeats = set(bought[lo + b].rows.tolist())
                out.append(self._finish(cands, b, order[b], scores[b], exclude[lo + b], k, region, repeats))
        return out

    def candidates(
        self,
        histories: Sequence[np.ndarray],
        exclude: Sequence[np.ndarray],
        user_features: np.ndarray | None,
        bought: Sequence[Bought] | None = None,
    ) -> Candidates:
        """Merged candidates of the sources and the ranker's features for them (steps 1-3), in batches."""
        parts = []
        for lo in range(0, len(histories), self.batch_size):
            hi = min(lo + self.batch_size, len(histories))
            users = None if user_features is None else user_features[lo:hi]
            part = None if bought is None else bought[lo:hi]
            parts.append(self._candidates(histories[lo:hi], exclude[lo:hi], users, part))
        if len(parts) <= 1:
            return parts[0] if parts else self._candidates(histories, exclude, user_features, bought)
        return Candidates(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Candidates.__dataclass_fields__)
        )

    def _candidates(
        self,
        histories: Sequence[np.ndarray],
        exclude: Sequence[np.ndarray],
        user_features: np.ndarray | None,
        bought: Sequence[Bought] | None = None,
    ) -> Candidates:
        n_items, c = len(self.bundle.catalogue), self.n_candidates
        b = len(histories)
        histories = [np.asarray(h, np.int32) for h in histories]
        query = self.query_vectors(histories)
        # 1. two-tower over the ANN index, seen filter applied
        widest = c + max((len(e) for e in exclude), default=0)
        found, _ = self.index.search(query, min(widest, n_items))
        top_r = np.full((b, c), -1, np.int64)
        for u in range(b):
            rows = found[u][(found[u] >= 0) & ~np.isin(found[u], exclude[u])][:c]
            top_r[u, : len(rows)] = rows
        # 2. co-occurrence over the recent items, with the popularity tie-break
        cooc = self.bundle.cooccurrence
        co = sparse_top(cooc.context(histories) @ cooc.matrix, self.tie_break[0], self._tie_order, exclude, c)
        top_c = co.top
        # 2b. buy again: the user's own purchases by their decayed count, excluded dropped
        repeats = None
        top_g = np.full((b, c), -1, np.int64)
        if self.buy_again.enabled:
            repeats = [
                repeat_lookup(
                    bought[u] if bought is not None else Bought.empty(), self.buy_again.half_life_days
                )
                for u in range(b)
            ]
            for u, record in enumerate(repeats):
                items, score = record.items, record.score
                keep = ~np.isin(items, exclude[u])
                best = np.lexsort((items[keep], -score[keep]))[:c]
                top_g[u, : len(best)] = items[keep][best]
        # 2c. household neighbours: their mean vector mixed with the user's own (TIFU-KNN), excluded dropped
        view = top_n = None
        if self.neighbours is not None:
            view = self.neighbours.scores(
                bought if bought is not None else [Bought.empty()] * b, self.neighbour_config
            )
            # a tie-break far below any score: the popular order only among items no neighbour bought
            mixed = view.scores(self.neighbour_config.alpha)
            top_n = sparse_top(mixed, 1e-6 * self.tie_break[0], self._tie_order, exclude, c).top
        # 3. merge (the neighbours' discovery takes the last place where no list proposed it)
        rows, source = _merge(top_r, top_c, c, first=top_g if repeats is not None else None, neighbours=top_n)
        discovery = np.full(b, -1, np.int64)
        if view is not None:
            discovery = _discoveries(view, exclude)
            for user in np.flatnonzero(discovery >= 0).tolist():
                if discovery[user] not in rows[user]:
                    at = int(np.argmax(rows[user] < 0)) if (rows[user] < 0).any() else c - 1
                    rows[user, at], source[user, at] = discovery[user], SOURCES.index("neighbours")
        # features
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        r = np.einsum("bd,bcd->bc", query, self.bundle.item_embeddings[safe])
        r_best = np.where(valid, r, -np.inf).max(axis=1, keepdims=True)
        c_raw = np.maximum(co.values(safe), 0.0)
        c_best = np.maximum(np.where(valid, c_raw, 0.0).max(axis=1, keepdims=True), 1e-9)
        rank_r = _ranks(top_r, safe, c)
        rank_c = _ranks(top_c, safe, c)
        lengths = np.array([len(h) for h in histories], np.float32)[:, None].repeat(c, axis=1)
        last = np.array([h[-1] if len(h) else -1 for h in histories])
        overlap = self._overlap(last, safe)
        source_features = np.stack(
            [
                r,
                r - r_best,
                np.log1p(rank_r),
                c_raw / c_best,
                np.log1p(c_raw),
                np.log1p(rank_c),
                self.log_popularity[safe],
                np.log1p(lengths),
                overlap,
            ],
            axis=-1,
        )
        assert source_features.shape[-1] == len(SOURCE_FEATURES)
        parts = [np.nan_to_num(source_features, nan=0.0, posinf=0.0, neginf=-30.0).astype(np.float32)]
        if repeats is not None:
            parts.append(self._repeat_features(repeats, top_g, safe, valid))
        if view is not None and top_n is not None:
            parts.append(_neighbour_features(view, top_n, safe, valid, c))
        n_user = len(self.bundle.user_features)
        if n_user:
            users = np.full((b, n_user), np.nan, np.float32) if user_features is None else user_features
            parts.append(np.repeat(scale_numeric(users)[:, None, :], c, axis=1))
        if len(self.bundle.item_features):
            parts.append(self._item_features[safe])
        features = np.concatenate(parts, axis=-1).astype(np.float32)
        neighbour_rank = np.full((b, c), float(c), np.float32) if top_n is None else _ranks(top_n, safe, c)
        return Candidates(
            rows=rows,
            features=features,
            source=source,
            retrieval=r.astype(np.float32),
            neighbour_rank=neighbour_rank,
            discovery=discovery,
        )

    def _repeat_features(
        self,
        repeats: list[PurchaseRecord],
        top_g: np.ndarray,
        cand: np.ndarray,
        valid: np.ndarray,
    ) -> np.ndarray:
        """The package's repeat features (`buy_again.features`, from `models.buy_again.REPEAT_FEATURES`)
        of each candidate [B, C, len(features)] from the users' purchase records."""
        c = cand.shape[1]
        fields = ("score", "count", "baskets", "baskets_since", "recent")
        per_item = {f: np.zeros(cand.shape) for f in fields}
        since = np.full(cand.shape, np.nan)
        n_baskets = np.zeros((len(cand), 1))
        trip = np.full((len(cand), 1), np.nan)
        for u, record in enumerate(repeats):
            n_baskets[u], trip[u] = record.n_baskets, record.trip_days
            items = record.items
            if not len(items):
                continue
            at = np.minimum(np.searchsorted(items, cand[u]), len(items) - 1)
            hit = (items[at] == cand[u]) & valid[u]
            for f in fields:
                per_item[f][u, hit] = getattr(record, f)[at[hit]]
            since[u, hit] = record.since[at[hit]]
        count = per_item["count"]
        bought = count > 0
        interval = self.repurchase_days[cand]
        with np.errstate(invalid="ignore", divide="ignore"):
            due = np.where(bought & (interval > 0), since / interval, np.nan)
            share = per_item["baskets"] / n_baskets
            recent = per_item["recent"] / np.minimum(n_baskets, RECENT_BASKETS)
        columns = {
            "buy_again_log_score": lambda: np.log1p(per_item["score"]),
            "buy_again_log_rank": lambda: np.log1p(_ranks(top_g, cand, c)),
            "bought_before": lambda: bought.astype(np.float64),
            "log_times_bought": lambda: np.log1p(count),
            "log_days_since_bought": lambda: np.where(bought, np.log1p(since), 0.0),
            "log_repurchase_days": lambda: np.log1p(interval),
            "log_due_ratio": lambda: np.log1p(due),
            "basket_share": lambda: share,
            "recent_basket_share": lambda: recent,
            "log_baskets_since": lambda: np.where(bought, np.log1p(per_item["baskets_since"]), 0.0),
            "log_user_baskets": lambda: np.broadcast_to(np.log1p(n_baskets), cand.shape),
            "log_trip_days": lambda: np.broadcast_to(np.log1p(trip), cand.shape),
        }
        out = np.stack([columns[name]() for name in self.buy_again.features], axis=-1)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def query_vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """The two-tower's query vectors [B, dim] for histories of catalogue rows."""
        max_len = self.bundle.config.two_tower.max_len
        padded = pad_left([np.asarray(h) + 1 for h in histories], max_len)
        return self._query(tf.constant(padded)).numpy().astype(np.float32)

    # ---- steps 4-5 --------------------------------------------------------------------------------
    def _order(self, cands: Candidates) -> tuple[np.ndarray, np.ndarray]:
        """Candidate positions in serving order [B, C] and their scores (ranker softmax, or 1/position;
        with a fusion weight, the ranker's and the neighbour list's ranks fused, `fused_scores`)."""
        valid = cands.rows >= 0
        fusion = self.neighbour_config.fusion if self.neighbours is not None else 0.0
        if self._rank is not None and fusion > 0:
            logits = self._rank(tf.constant(cands.features)).numpy().astype(np.float64)
            fused = fused_scores(logits, cands.neighbour_rank, valid, fusion)
            order = np.argsort(-fused, axis=1, kind="stable")
            return order, np.take_along_axis(np.where(valid, fused, 0.0), order, axis=1)
        if self._rank is not None:
            logits = self._rank(tf.constant(cands.features)).numpy().astype(np.float64)
        else:
            logits = -np.log1p(np.broadcast_to(np.arange(cands.rows.shape[1]), cands.rows.shape)).astype(
                float
            )
        logits = np.where(valid, logits, -np.inf)
        order = np.argsort(-logits, axis=1, kind="stable")
        if self._rank is not None:
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            scores = z / z.sum(axis=1, keepdims=True)
        else:
            scores = np.where(valid, np.exp(logits), 0.0)  # 1 / (1 + position)
        return order, np.take_along_axis(scores, order, axis=1)

    def _finish(
        self,
        cands: Candidates,
        b: int,
        order: np.ndarray,
        scores: np.ndarray,
        exclude: np.ndarray,
        k: int,
        region: str | None,
        repeats: set[int] | None = None,
    ) -> Ranked:
        rows = cands.rows[b][order]
        sources = cands.source[b][order]
        retrieval = cands.retrieval[b][order]
        keep = rows >= 0
        rows, scores, sources, retrieval = rows[keep], scores[keep], sources[keep], retrieval[keep]
        kept = self._rules(rows, k)
        if repeats is not None:
            prefer = int(cands.discovery[b])
            kept = _with_discoveries(
                rows, kept, repeats, self.buy_again.min_discoveries, prefer if prefer >= 0 else None
            )
        out_rows = [int(r) for r in rows[kept]]
        out_scores = [float(s) for s in scores[kept]]
        out_sources = [SOURCES[int(s)] for s in sources[kept]]
        out_retrieval = [float(x) for x in retrieval[kept]]
        if len(out_rows) < k:  # tiny catalogue or strict rules: fill with popular items
            taken = set(out_rows) | {int(e) for e in exclude}
            for row in self.popular_rows(region):
                if len(out_rows) == k:
                    break
                if row not in taken:
                    taken.add(row)
                    out_rows.append(row)
                    out_scores.append(0.0)
                    out_sources.append("popular")
                    out_retrieval.append(float("nan"))
        return Ranked(
            rows=np.array(out_rows, np.int64),
            scores=np.array(out_scores),
            sources=out_sources,
            retrieval=np.array(out_retrieval, np.float32),
        )

    def _rules(self, rows: np.ndarray, k: int) -> np.ndarray:
        """Positions of the first `k` items once `serving.max_per_category` (business rule) is applied."""
        limit = self.serving.max_per_category
        if limit is None:
            return np.arange(min(k, len(rows)))
        categories = self.bundle.catalogue.categories
        kept: list[int] = []
        per: dict[str, int] = {}
        for i, row in enumerate(rows):
            category = categories[row]
            if category and per.get(category, 0) >= limit:
                continue
            per[category] = per.get(category, 0) + 1
            kept.append(i)
            if len(kept) == k:
                break
        return np.array(kept, np.int64)

    def popular_rows(self, region: str | None = None) -> list[int]:
        """Catalogue rows of the popular lists (the region's first, then overall), then the rest."""
        popular = self.bundle.popular
        lists = []
        if region and region in popular.get("by_region", {}):
            lists.append(popular["by_region"][region])
        lists.append(popular.get("global", []))
        index = self.bundle.catalogue.index
        seen: dict[int, None] = {}
        for items in lists:
            for item in items:
                if item in index:
                    seen.setdefault(index[item])
        order = np.argsort(-self.bundle.popularity, kind="stable")
        for row in order:
            seen.setdefault(int(row))
        return list(seen)

    def _overlap(self, last: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Share of each candidate's attributes that the user's newest item has too [B, C]."""
        attrs = self.attributes
        cand_attrs = attrs[cand]  # [B, C, A]
        last_attrs = np.where(last[:, None] >= 0, attrs[np.maximum(last, 0)], 0)  # [B, A]
        shared = (cand_attrs[:, :, :, None] == last_attrs[:, None, None, :]) & (cand_attrs[:, :, :, None] > 0)
        return (shared.any(-1).sum(-1) / np.maximum((cand_attrs > 0).sum(-1), 1)).astype(np.float32)

    def _sample_queries(self, n: int = 200) -> np.ndarray:
        """Query vectors to check the ANN index's recall on: users built from random item histories."""
        rng = np.random.default_rng(0)
        n_items = len(self.bundle.catalogue)
        histories = [rng.choice(n_items, size=min(5, n_items), replace=False) for _ in range(n)]
        max_len = self.bundle.config.two_tower.max_len
        padded = pad_left([h + 1 for h in histories], max_len)
        return self.bundle.two_tower.sequence_tower(tf.constant(padded))[:, -1, :].numpy()


def _number(value) -> float:
    """A feature value as a float; missing or non-numeric counts as NaN (scaled to 0)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


@dataclass(frozen=True)
class SparseTop:
    """The co-occurrence source's top lists and its scores, from the sparse `[B, n_items]` scores.

    `top` [B, n] (-1 padded) holds the `n` best rows of the dense scores plus the popularity tie-break
    with each user's excluded items at -inf (ties by row), without building the dense matrix (a grocery catalogue
    has 68-92k items; most users' scores are a few hundred nonzero entries).
    """

    top: np.ndarray
    scores: sparse.csr_matrix
    tie_break: np.ndarray
    exclude: Sequence[np.ndarray]

    def values(self, rows: np.ndarray) -> np.ndarray:
        """The dense path's values at `rows` [B, m]: score + tie-break, -inf for an excluded row."""
        out = np.zeros(rows.shape, np.float64)
        indptr, indices, data = self.scores.indptr, self.scores.indices, self.scores.data
        for u, excluded in enumerate(self.exclude):
            span = slice(indptr[u], indptr[u + 1])
            out[u] = _row_values(indices[span], data[span], rows[u]) + self.tie_break[rows[u]]
            out[u, np.isin(rows[u], excluded)] = -np.inf
        return out


def sparse_top(
    scores: sparse.spmatrix,
    tie_break: np.ndarray,
    tie_order: np.ndarray,
    exclude: Sequence[np.ndarray],
    n: int,
) -> SparseTop:
    """Each user's `n` best rows of `scores + tie_break` (excluded rows dropped), best first, ties by row.

    Exact: a row outside a user's nonzero scores is worth its tie-break alone, so the best of those are
    the first `n` rows of `tie_order` (all rows by tie-break, best first) that are neither scored nor
    excluded (`_first_free` reads only as far as it needs); they merge with the best scored rows.
    """
    scores = sparse.csr_matrix(scores)
    scores.sum_duplicates()  # sorted, unique column indices per row
    n_items = scores.shape[1]
    n = min(n, n_items)
    top = np.full((scores.shape[0], n), -1, np.int64)
    taken = np.zeros(n_items, bool)  # a user's nonzero and excluded rows, cleared after each user
    for u in range(scores.shape[0]):
        lo, hi = scores.indptr[u], scores.indptr[u + 1]
        nonzero, excluded = scores.indices[lo:hi], np.asarray(exclude[u], np.int64)
        taken[excluded] = True
        keep = ~taken[nonzero]
        scored = nonzero[keep]
        value = tie_break[scored].astype(np.float64) + scores.data[lo:hi][keep].astype(np.float64)
        if len(scored) > n:  # the n best and every row tied with the n-th (ties go by row below)
            kth = -np.partition(-value, n - 1)[n - 1]
            scored, value = scored[value >= kth], value[value >= kth]
        taken[nonzero] = True
        backfill = _first_free(tie_order, taken, n)  # rows without a score, best tie-break first
        taken[nonzero] = taken[excluded] = False
        pool = np.concatenate([scored, backfill])
        value = np.concatenate([value, tie_break[backfill].astype(np.float64)])
        best = np.lexsort((pool, -value))[:n]
        top[u, : len(best)] = pool[best]
    return SparseTop(top, scores, np.asarray(tie_break, np.float64), exclude)


def _first_free(order: np.ndarray, taken: np.ndarray, n: int) -> np.ndarray:
    """The first `n` entries of `order` not marked in `taken` (fewer when `order` runs out)."""
    out: list[np.ndarray] = []
    found, start, step = 0, 0, max(2 * n, 64)
    while found < n and start < len(order):
        chunk = order[start : start + step]
        free = chunk[~taken[chunk]]
        out.append(free[: n - found])
        found += len(out[-1])
        start += step
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _row_values(columns: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """One sparse row's values at the `wanted` columns (0 where it has none); `columns` sorted, unique."""
    out = np.zeros(len(wanted), np.float64)
    if len(columns):
        at = np.minimum(np.searchsorted(columns, wanted), len(columns) - 1)
        hit = columns[at] == wanted
        out[hit] = values[at[hit]]
    return out


def _merge(
    retrieval: np.ndarray,
    cooccurrence: np.ndarray,
    n: int,
    first: np.ndarray | None = None,
    neighbours: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Interleave ranked lists per user ([B, m] each, -1 = none) into `n` distinct rows.

    `first` (the buy-again list, when the package has it) leads each round, then `neighbours` (the
    household-neighbour list, when it has it), then `retrieval`, then `cooccurrence`. Returns the rows
    [B, n] (-1 padded) and each row's source index into `SOURCES` (0 retrieval, 1 co-occurrence, 2 both,
    4 the buy-again list, 5 the neighbour list alone).
    """
    b = len(retrieval)
    rows = np.full((b, n), -1, np.int64)
    source = np.zeros((b, n), np.int64)
    lists = [x for x in (first, neighbours) if x is not None] + [retrieval, cooccurrence]
    for u in range(b):
        in_first = set(retrieval[u][retrieval[u] >= 0].tolist())
        in_second = set(cooccurrence[u][cooccurrence[u] >= 0].tolist())
        repeat = set() if first is None else set(first[u][first[u] >= 0].tolist())
        seen: dict[int, None] = {}
        for round_ in zip(*(lst[u] for lst in lists), strict=True):
            for item in round_:
                if item >= 0 and len(seen) < n:
                    seen.setdefault(int(item))
            if len(seen) >= n:
                break
        merged = list(seen)
        rows[u, : len(merged)] = merged
        source[u, : len(merged)] = [
            4
            if i in repeat
            else (
                2
                if (i in in_first and i in in_second)
                else (0 if i in in_first else (1 if i in in_second else 5))
            )
            for i in merged
        ]
    return rows, source


def _neighbour_features(
    view: NeighbourScores, top_n: np.ndarray, cand: np.ndarray, valid: np.ndarray, c: int
) -> np.ndarray:
    """The `NEIGHBOUR_FEATURES` of each candidate [B, C, 3]: the share of the user's neighbours that
    bought it, its neighbour mean over the user's best, its log rank in the neighbour list."""
    columns = [_ratio_at(view.share, cand, normalise=False), _ratio_at(view.mean, cand)]
    out = np.stack([*columns, np.log1p(_ranks(top_n, cand, c))], axis=-1)
    assert out.shape[-1] == len(NEIGHBOUR_FEATURES)
    return np.where(valid[..., None], out, 0.0).astype(np.float32)


def _ratio_at(matrix: sparse.csr_matrix, cand: np.ndarray, normalise: bool = True) -> np.ndarray:
    """Each user's row of a sparse `[B, n_items]` at the candidates [B, C], over the row's largest value
    (`normalise`) or as it is; 0 where the row has none."""
    out = np.zeros(cand.shape)
    for u in range(len(cand)):
        span = slice(matrix.indptr[u], matrix.indptr[u + 1])
        columns, values = matrix.indices[span], matrix.data[span]
        if len(values):
            order = np.argsort(columns)
            scale = max(float(values.max()), 1e-12) if normalise else 1.0
            out[u] = _row_values(columns[order], values[order], cand[u]) / scale
    return out


def _with_discoveries(
    rows: np.ndarray, kept: np.ndarray, repeats: set[int], wanted: int, prefer: int | None = None
) -> np.ndarray:
    """`kept` positions of `rows` with at least `wanted` rows not in `repeats`: the best-ranked other
    candidates (`prefer`, the neighbours' discovery, first where it is among them) replace the
    lowest-ranked repeats (the list keeps its length and the ranked order)."""
    chosen = kept.tolist()
    need = wanted - sum(int(rows[i]) not in repeats for i in chosen)
    if need <= 0:
        return kept
    taken = set(chosen)
    others = [i for i in range(len(rows)) if i not in taken and int(rows[i]) not in repeats]
    if prefer is not None:
        others.sort(key=lambda i: int(rows[i]) != prefer)  # stable: the rest keep their rank
    extra = others[:need]
    drop = set([i for i in chosen if int(rows[i]) in repeats][-len(extra) :]) if extra else set()
    return np.array(sorted([i for i in chosen if i not in drop] + extra), np.int64)


def fused_scores(
    logits: np.ndarray, neighbour_rank: np.ndarray, valid: np.ndarray, weight: float
) -> np.ndarray:
    """The ranker's order and the household-neighbour list's fused by their ranks [B, C]:
    (1 - weight) / (1 + rank by the ranker) + weight / (1 + rank in the neighbour list), -inf where
    no candidate. A learned ranker chosen on one period's targets and TIFU-KNN's five numbers err
    differently; the weight is chosen on validation users the ranker did not learn from."""
    logits = np.where(valid, logits, -np.inf)
    order = np.argsort(-logits, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1)
    fused = (1.0 - weight) / (1.0 + rank) + weight / (1.0 + neighbour_rank)
    return np.where(valid, fused, -np.inf)


def _discoveries(view: NeighbourScores, exclude: Sequence[np.ndarray]) -> np.ndarray:
    """Per user, the item with the best neighbour mean that the user never bought and may be shown
    (ties by row; -1 where none)."""
    mean = view.mean.tocsr()
    b, n = mean.shape
    blocked = (view.own != 0).astype(np.float64)
    lengths = [len(e) for e in exclude]
    if sum(lengths):
        rows = np.repeat(np.arange(b), lengths)
        columns = np.concatenate([np.asarray(e, np.int64) for e in exclude])
        blocked = blocked + sparse.csr_matrix((np.ones(len(columns)), (rows, columns)), shape=(b, n))
    free = (mean - mean.multiply(blocked > 0)).tocsr()
    free.eliminate_zeros()
    out = np.full(b, -1, np.int64)
    for u in range(b):
        span = slice(free.indptr[u], free.indptr[u + 1])
        values = free.data[span]
        if len(values) and values.max() > 0:
            out[u] = int(free.indices[span][values == values.max()].min())
    return out


def _ranks(top: np.ndarray, cand: np.ndarray, c: int) -> np.ndarray:
    """0-based rank of each candidate in a source's top list [B, C]; `c` when it is not there."""
    out = np.full(cand.shape, float(c), np.float32)
    for u in range(len(top)):
        where = {int(item): pos for pos, item in enumerate(top[u]) if item >= 0}
        out[u] = [where.get(int(item), c) for item in cand[u]]
    return out
