"""Fitting the model family: choose on validation targets, report on users no choice saw, refit on everything.

`fit_pipeline` is the one fitting procedure of the platform: the train stage (`models.train`, on the
feature store's point-in-time data) and the quality benchmark (`benchmarks.quality`, on a
leave-one-out split) both call it. Given the histories before a cut, the validation targets after it
and the histories through the newest day, it

1. splits the validation users into *choose* users and *report* users (`report_share`, by a stable
   hash of the user id): every choice below sees only the choose users;
2. tunes the co-occurrence model on the choose users' targets (coordinate search); where the data
   carries purchase records (`FitData.valid_bought`: the seen filter keeps purchased items), turns
   the buy-again source on (`models.buy_again`) with the half-life that ranks the choose users'
   targets best, counts each item's typical repurchase interval for the ranker, and turns the
   household-neighbour source on (`models.neighbours`) with the number of neighbours and the own
   weight that rank them best;
3. trains the two-tower with early stopping on the choose users' NDCG@K;
4. trains the ranker on the merged candidates of the choose users (half of them to fit it; the other
   half picks its epochs and compares its order with the merged order per user: it ships only if it
   wins significantly, a one-sided paired t-test at `ranker_alpha`), then again on all choose users
   for the chosen epochs; with the household-neighbour source, the same half chooses how much of the
   neighbour list's order is fused into the ranker's (`models.scorer.fused_scores`; the most that is
   within one standard error of the best weight);
5. scores the report users with the *validation package* (the models of steps 2-4, which never saw a
   held-out interaction) through `models.scorer.BatchScorer`: the figures reported for the package;
6. refits the serving package on every history through the newest day: the two-tower warm for
   `refit_epochs`, co-occurrence and popularity recounted, the ranker as chosen.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from models.bundle import ModelBundle, item_vectors
from models.buy_again import HALF_LIVES, Bought, decayed_scores, repurchase_days
from models.catalogue import Catalogue
from models.config import PipelineConfig
from models.cooccurrence import CooccurrenceModel, tune_cooccurrence
from models.evaluate import ndcg_from_scores, per_user_metrics, ranking_metrics
from models.hardware import in_float32
from models.neighbours import ALPHAS, FUSIONS, NEIGHBOURS, NeighbourConfig, Neighbours, user_vectors
from models.ranker import fit_ranker, ranker_logits
from models.scorer import BatchScorer, fused_scores, sparse_top
from models.sequential import SequentialRetrieval, fit_sequential, refit_sequential
from recflow.settings import ServingSettings

log = logging.getLogger(__name__)


@dataclass
class FitData:
    """What a fit needs, as catalogue rows (see `models.catalogue`).

    Attributes:
        catalogue: the items the package will know.
        fit: each training user's interactions before the cut, oldest first.
        refit: each user's interactions through the newest day (the serving package learns these).
        valid_users: the validation users' ids (for the choose/report split).
        valid_history: each validation user's history at the cut (the query input).
        valid_exclude: rows never to recommend to them at the cut (the seen filter).
        valid_relevant: the rows they turned to after the cut (the targets).
        fit_weights / refit_weights / valid_relevant_weights: event-type weights, aligned; None = 1.
        valid_user_features: raw online user features at the cut [n_valid, n_user_features].
        item_features: raw online item features at the cut [n_items, n_item_features].
        features: the online feature names, `{"user": [...], "item": [...]}`.
        popular_fit / popular_refit: cold-start lists (`models.baselines.popular_lists`) over the
            fitting and the refit interactions.
        metadata: merged into both packages' metadata (data and validation windows, feature services).
        fit_bought / refit_bought / valid_bought: the purchase records (`models.buy_again.Bought`) of
            the fit and refit users (days before the cut / the newest day) and of the validation users
            (days before the cut); None (the default): no buy-again source.
    """

    catalogue: Catalogue
    fit: list[np.ndarray]
    refit: list[np.ndarray]
    valid_users: list[str]
    valid_history: list[np.ndarray]
    valid_exclude: list[np.ndarray]
    valid_relevant: list[np.ndarray]
    fit_weights: list[np.ndarray] | None = None
    refit_weights: list[np.ndarray] | None = None
    valid_relevant_weights: list[np.ndarray] | None = None
    valid_user_features: np.ndarray | None = None
    item_features: np.ndarray | None = None
    features: dict[str, list[str]] = field(default_factory=lambda: {"user": [], "item": []})
    popular_fit: dict = field(default_factory=dict)
    popular_refit: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    fit_bought: list[Bought] | None = None
    refit_bought: list[Bought] | None = None
    valid_bought: list[Bought] | None = None


@dataclass
class FitResult:
    """The two packages of a fit and what was measured on the way.

    Attributes:
        validation: the package fitted before the cut (never saw a held-out interaction): the
            promotion gate compares it with the champion.
        serving: the package refit through the newest day: what is promoted and served.
        metrics: on the report users, `{"model": {...}, "popularity": {...}}` (HR, Recall, NDCG @K).
        stages: per stage, whether it serves and its validation figures (`/metadata` shows them).
        seconds: wall time by step.
    """

    validation: ModelBundle
    serving: ModelBundle
    metrics: dict[str, dict[str, float]]
    stages: dict[str, dict]
    seconds: dict[str, float]


Progress = Callable[[str], None]


def fit_pipeline(
    data: FitData,
    config: PipelineConfig,
    metadata: dict,
    strategy: tf.distribute.Strategy | None = None,
    log_dir: Path | None = None,
    progress: Progress | None = None,
    tuned: PipelineConfig | None = None,
) -> FitResult:
    """Choose, report and refit the model family (see the module docstring).

    Args:
        data: the histories, targets and features.
        config: hyperparameters (two-tower, ranker, event weights, k, report share, tuning users).
        metadata: the packages' metadata without stages and metrics (name, version, created_at,
            code_version, device, windows, feature services...); completed here.
        strategy: the `tf.distribute` strategy of the two-tower's fits (default: the current one).
        log_dir: TensorBoard logs (losses and validation scores per epoch) go below it.
        progress: called with one line per step (the CLI prints them).
        tuned: the config of a package whose searched hyperparameters this fit keeps instead of
            searching them again (the serving model's, on a retrain that only refreshes the data, such as
            a retrain for age): its co-occurrence parameters and, where both have the buy-again source,
            its half-life. The two-tower's epochs and the ranker are still chosen on validation.

    Raises:
        ValueError: when there is no validation user to choose on.
    """
    say = progress or log.info
    k = config.k
    n_items = len(data.catalogue)
    attrs = data.catalogue.attributes
    choose, report = split_users(data.valid_users, config.report_share, config.seed)
    if not len(choose):
        raise ValueError("no validation user to choose on: the held-out days have no returning user")
    seconds: dict[str, float] = {}

    def targets(users: np.ndarray) -> list[np.ndarray]:
        return [data.valid_relevant[u] for u in users]

    def dense_ndcg(scores: np.ndarray, users: np.ndarray) -> float:
        return float(
            ndcg_from_scores(scores, [data.valid_exclude[u] for u in users], targets(users), k).mean()
        )

    # 2. co-occurrence, tuned on (a sample of) the choose users
    t = time.perf_counter()
    tuning = choose[np.random.default_rng(config.seed).permutation(len(choose))[: config.tuning_users]]
    history = [data.valid_history[u] for u in tuning]
    if tuned is None:
        params, trials = tune_cooccurrence(data.fit, n_items, lambda m: dense_ndcg(m.scores(history), tuning))
    else:
        params, trials = tuned.cooccurrence, []
    cooc_fit = CooccurrenceModel(params, n_items).fit(data.fit)
    cooc_refit = CooccurrenceModel(params, n_items).fit(data.refit)
    config = config.with_cooccurrence(params)
    cooc_ndcg = _batched(
        lambda users: cooc_fit.scores([data.valid_history[u] for u in users]), choose, dense_ndcg
    )
    seconds["co-occurrence"] = time.perf_counter() - t
    searched = f"{len(trials)} trials" if tuned is None else "parameters kept"
    say(f"co-occurrence: {searched}, validation NDCG@{k} {cooc_ndcg:.4f} ({seconds['co-occurrence']:.0f}s)")

    # 2b. buy again, where the data has purchase records
    bought = data.valid_bought
    repurchase_fit = repurchase_refit = None
    buy_again_stage: dict = {"serving": False}
    if bought is not None:
        t = time.perf_counter()

        def buy_again_ndcg(half_life: float) -> float:
            def scores(users: np.ndarray) -> np.ndarray:
                return decayed_scores([bought[u] for u in users], n_items, half_life)

            return _batched(scores, tuning, dense_ndcg)

        kept = tuned is not None and tuned.buy_again.enabled
        lives = (tuned.buy_again.half_life_days,) if kept and tuned is not None else HALF_LIVES
        trials_ba = {hl: buy_again_ndcg(hl) for hl in lives}
        half_life = max(trials_ba, key=lambda hl: (trials_ba[hl], -hl))
        config = config.with_buy_again(replace(config.buy_again, enabled=True, half_life_days=half_life))
        repurchase_fit = repurchase_days(data.fit_bought or bought, n_items)
        repurchase_refit = repurchase_days(data.refit_bought or data.fit_bought or bought, n_items)
        buy_again_stage = {
            "serving": True,
            "half_life_days": half_life,
            f"validation ndcg@{k}": trials_ba[half_life],
            "trials": {str(hl): round(v, 6) for hl, v in trials_ba.items()},
            "kept": kept,
        }
        seconds["buy-again"] = time.perf_counter() - t
        say(
            f"buy again: half-life {half_life:g} days{' (kept)' if kept else ''}, validation NDCG@{k} "
            f"{trials_ba[half_life]:.4f}"
        )

    # 2c. household neighbours, beside the buy-again source
    neighbours_fit = neighbours_refit = None
    neighbour_stage: dict = {"serving": False}
    if bought is not None and config.neighbour_source:
        t = time.perf_counter()
        nb, trials_nb, neighbours_fit = _choose_neighbours(data, config, tuning, tuned)
        config = config.with_neighbours(nb)
        neighbours_refit = Neighbours(
            user_vectors(data.refit_bought or data.fit_bought or bought, n_items, nb)
        )
        best = trials_nb[(nb.neighbours, nb.alpha)]
        neighbour_stage = {
            "serving": True,
            "neighbours": nb.neighbours,
            "alpha": nb.alpha,
            f"validation ndcg@{k}": best,
            "trials": {f"{n}/{a:g}": round(v, 6) for (n, a), v in trials_nb.items()},
            "kept": tuned is not None and tuned.neighbours.enabled,
            "households": len(neighbours_fit),
        }
        seconds["neighbours"] = time.perf_counter() - t
        say(
            f"household neighbours: {nb.neighbours} nearest of {len(neighbours_fit)}, own weight "
            f"{nb.alpha:g}{' (kept)' if neighbour_stage['kept'] else ''}, validation NDCG@{k} "
            f"{best:.4f} ({seconds['neighbours']:.0f}s)"
        )

    def bought_of(users: np.ndarray) -> list[Bought] | None:
        return None if bought is None else [bought[u] for u in users]

    # 3. the two-tower, early-stopped on the choose users
    t = time.perf_counter()

    def validate_two_tower(model: SequentialRetrieval, epoch: int) -> float:
        items = model.item_tower.all_items()
        score = _batched(
            lambda users: model.scores([data.valid_history[u] for u in users], items), choose, dense_ndcg
        )
        say(
            f"  two-tower epoch {epoch:3d}  validation NDCG@{k} {score:.4f}  ({time.perf_counter() - t:5.0f}s)"
        )
        return score

    chosen, history_tt = fit_sequential(
        data.fit,
        attrs,
        config.two_tower,
        validate=validate_two_tower,
        log_dir=log_dir / "two-tower-choose" if log_dir else None,
        strategy=strategy,
        weights=data.fit_weights,
    )
    chosen = float32_copy(chosen)
    seconds["two-tower"] = time.perf_counter() - t
    say(
        f"two-tower: best epoch {history_tt['best_epoch']}, validation NDCG@{k} {history_tt['best_score']:.4f}"
    )

    # 4. the ranker on the validation package's merged candidates
    t = time.perf_counter()
    base = {**metadata, "hyperparameters": config.to_dict(), "features": data.features}
    validation = _package(
        base,
        data.catalogue,
        chosen,
        cooc_fit,
        data.fit,
        data.popular_fit,
        ranker=None,
        stages={},
        metrics={},
        repurchase=repurchase_fit,
        neighbours=neighbours_fit,
    )
    scorer = BatchScorer(validation, serving=ServingSettings(index="flat"), item_features=data.item_features)
    users_features = data.valid_user_features
    cands = scorer.candidates(
        [data.valid_history[u] for u in choose],
        [data.valid_exclude[u] for u in choose],
        None if users_features is None else users_features[choose],
        bought_of(choose),
    )
    labels = _labels(cands.rows, targets(choose), _weights(data.valid_relevant_weights, choose))
    half = np.random.default_rng(config.seed).permutation(len(choose)) < len(choose) // 2

    def user_ndcg(order_scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
        rows = cands.rows[mask]
        order = np.argsort(-np.where(rows >= 0, order_scores, -np.inf), axis=1, kind="stable")
        tops = np.take_along_axis(rows, order, axis=1)[:, :k]
        return per_user_metrics(tops, targets(choose[mask]), k)[2]

    merged_order = -np.broadcast_to(np.arange(cands.rows.shape[1], dtype=float), cands.rows.shape)
    merged = user_ndcg(merged_order[~half], ~half)
    ranker, ranker_stage = None, {"serving": False, f"merged ndcg@{k}": float(merged.mean())}
    if half.sum() and (~half).sum() and labels[half].sum() > 0:
        model, h = fit_ranker(
            cands.features[half],
            labels[half],
            config.ranker,
            validate=lambda m: float(user_ndcg(ranker_logits(m, cands.features[~half]), ~half).mean()),
        )
        ranked = user_ndcg(ranker_logits(model, cands.features[~half]), ~half)
        p_value = _p_greater(ranked, merged)
        ranker_stage.update(
            {f"ndcg@{k}": float(ranked.mean()), "best_epoch": h["best_epoch"], "p_value": p_value}
        )
        if ranked.mean() > merged.mean() and p_value < config.ranker_alpha:
            ranker, _ = fit_ranker(cands.features, labels, config.ranker, epochs=h["best_epoch"])
            ranker_stage["serving"] = True
            if config.neighbours.enabled:  # the ranker's order fused with the neighbour list's
                logits = ranker_logits(model, cands.features[~half])
                valid_rows = cands.rows[~half] >= 0
                fusions = {
                    w: user_ndcg(fused_scores(logits, cands.neighbour_rank[~half], valid_rows, w), ~half)
                    for w in FUSIONS
                }
                fusion = _one_standard_error(fusions)
                config = config.with_neighbours(replace(config.neighbours, fusion=fusion))
                neighbour_stage.update(
                    {
                        "fusion": fusion,
                        "fusion_trials": {f"{w:g}": round(float(v.mean()), 6) for w, v in fusions.items()},
                    }
                )
                base["hyperparameters"] = config.to_dict()
                validation.set_config(config)
    seconds["ranker"] = time.perf_counter() - t
    verdict = "serves" if ranker is not None else "does not serve (no significant gain over the merged order)"
    if "fusion" in neighbour_stage:
        say(
            f"ranker and neighbour list fused: weight {neighbour_stage['fusion']:g} on the neighbour list "
            f"(validation NDCG@{k} {neighbour_stage['fusion_trials'][format(neighbour_stage['fusion'], 'g')]:.4f})"
        )
    say(
        f"ranker: validation NDCG@{k} {ranker_stage.get(f'ndcg@{k}', float('nan')):.4f} vs merged order "
        f"{merged.mean():.4f} (p = {ranker_stage.get('p_value', float('nan')):.3g}): it {verdict} "
        f"({seconds['ranker']:.0f}s)"
    )
    stages = {
        "two-tower": {
            "serving": True,
            f"validation ndcg@{k}": history_tt["best_score"],
            "best_epoch": history_tt["best_epoch"],
        },
        "co-occurrence": {
            "serving": True,
            f"validation ndcg@{k}": cooc_ndcg,
            "params": params.__dict__,
            "kept": tuned is not None,
        },
        "buy-again": buy_again_stage,
        "neighbours": neighbour_stage,
        "popularity": {"serving": True, "role": "cold start and backfill"},
        "ranker": ranker_stage,
    }
    validation.ranker = ranker

    # 5. the reported figures: report users, validation package, the one scorer
    t = time.perf_counter()
    metrics: dict[str, dict[str, float]] = {}
    if len(report):
        scorer = BatchScorer(
            validation, serving=ServingSettings(index="flat"), item_features=data.item_features
        )
        served = scorer.rank(
            [data.valid_history[u] for u in report],
            [data.valid_exclude[u] for u in report],
            None if users_features is None else users_features[report],
            k,
            bought=bought_of(report),
        )
        metrics["model"] = _metrics([r.rows for r in served], targets(report), k)
        popular = np.argsort(-validation.popularity, kind="stable")
        tops = []
        for u in report:
            seen = set(data.valid_exclude[u].tolist())
            tops.append([int(i) for i in popular[: k + len(seen)] if int(i) not in seen][:k])
        metrics["popularity"] = _metrics(tops, targets(report), k)
        say(
            f"report ({len(report)} users no choice saw): NDCG@{k} {metrics['model'][f'ndcg@{k}']:.4f} vs "
            f"popularity {metrics['popularity'][f'ndcg@{k}']:.4f}"
        )
    seconds["report"] = time.perf_counter() - t
    validation.metadata.update(stages=stages, metrics=metrics)

    # 6. the serving package: everything through the newest day
    t = time.perf_counter()
    refit = refit_sequential(
        chosen,
        data.refit,
        attrs,
        log_dir=log_dir / "two-tower-refit" if log_dir else None,
        strategy=strategy,
        weights=data.refit_weights,
    )
    serving = _package(
        base,
        data.catalogue,
        float32_copy(refit),
        cooc_refit,
        data.refit,
        data.popular_refit,
        ranker,
        stages,
        metrics,
        repurchase=repurchase_refit,
        neighbours=neighbours_refit,
    )
    seconds["refit"] = time.perf_counter() - t
    say(
        f"refit on every history through the newest day: {config.two_tower.refit_epochs} warm epochs ({seconds['refit']:.0f}s)"
    )
    return FitResult(validation, serving, metrics, stages, {k_: round(v, 1) for k_, v in seconds.items()})


def float32_copy(model: SequentialRetrieval) -> SequentialRetrieval:
    """The model itself when it computes in float32, else a float32 copy with the same weights.

    Mixed precision is for training; every package scores in float32, in memory as after loading.
    """
    if model.sequence_tower.compute_dtype == "float32":
        return model
    copy = in_float32(lambda: SequentialRetrieval(model.item_tower.attribute_table.numpy()[1:], model.config))
    copy.sequence_tower(tf.zeros((1, model.config.max_len), tf.int32))
    copy.set_weights(model.get_weights())
    return copy


def _choose_neighbours(
    data: FitData, config: PipelineConfig, tuning: np.ndarray, tuned: PipelineConfig | None
) -> tuple[NeighbourConfig, dict[tuple[int, float], float], Neighbours]:
    """The household-neighbour source's k and own weight that rank the tuning users' targets best
    (NDCG@K of its list alone; ties go to fewer neighbours, then a larger own weight), or the tuned
    package's where it has the source. Returns the config (enabled), every trial's NDCG@K and the fitted
    households' vectors (the validation package's store)."""
    n_items, k = len(data.catalogue), config.k
    base = replace(config.neighbours, enabled=True)
    grid_k: tuple[int, ...] = NEIGHBOURS
    grid_a: tuple[float, ...] = ALPHAS
    if tuned is not None and tuned.neighbours.enabled:
        grid_k, grid_a = (tuned.neighbours.neighbours,), (tuned.neighbours.alpha,)
    bought = data.valid_bought or []
    stored = Neighbours(user_vectors(data.fit_bought or bought, n_items, base))
    counts = np.bincount(np.concatenate(data.fit), minlength=n_items) if data.fit else np.zeros(n_items)
    tie_break = 1e-12 * counts / max(float(counts.max()), 1.0)
    tie_order = np.lexsort((np.arange(n_items), -tie_break))
    users = list(tuning)
    exclude = [data.valid_exclude[u] for u in users]
    relevant = [data.valid_relevant[u] for u in users]
    views = stored.views([bought[u] for u in users], base, grid_k)
    trials: dict[tuple[int, float], float] = {}
    for n in grid_k:
        for alpha in grid_a:
            tops = sparse_top(views[n].scores(alpha), tie_break, tie_order, exclude, k).top
            trials[(n, alpha)] = float(per_user_metrics(tops, relevant, k)[2].mean())
    n, alpha = max(trials, key=lambda key: (trials[key], -key[0], key[1]))
    return replace(base, neighbours=n, alpha=alpha), trials, stored


def _one_standard_error(per_user: dict[float, np.ndarray]) -> float:
    """The largest fusion weight whose users' NDCG is within one standard error of the best weight's
    (of the paired per-user difference): the one-standard-error rule, leaning to the simpler model
    (the neighbour list's five numbers) where validation cannot tell them apart."""
    best = max(per_user, key=lambda w: (float(per_user[w].mean()), -w))

    def close(w: float) -> bool:
        diff = per_user[w] - per_user[best]
        if len(diff) < 2:
            return w == best
        return float(diff.mean()) >= -float(diff.std(ddof=1)) / np.sqrt(len(diff))

    return max(w for w in per_user if close(w))


def split_users(users: Sequence[str], report_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the choose and the report users: a stable hash of (seed, user id) against the share."""
    if report_share <= 0:
        return np.arange(len(users)), np.zeros(0, np.int64)
    buckets = np.array(
        [
            int.from_bytes(hashlib.blake2b(f"{seed}:{u}".encode(), digest_size=4).digest(), "big")
            for u in users
        ],
        dtype=np.float64,
    )
    report = buckets / 2**32 < report_share
    return np.flatnonzero(~report), np.flatnonzero(report)


def _package(
    metadata: dict,
    catalogue: Catalogue,
    two_tower: SequentialRetrieval,
    cooccurrence: CooccurrenceModel,
    histories: Sequence[np.ndarray],
    popular: dict,
    ranker,
    stages: dict,
    metrics: dict,
    repurchase: np.ndarray | None = None,
    neighbours: Neighbours | None = None,
) -> ModelBundle:
    counts = np.bincount(np.concatenate(histories), minlength=len(catalogue)) if len(histories) else None
    return ModelBundle(
        metadata={**metadata, "stages": stages, "metrics": metrics},
        catalogue=catalogue,
        two_tower=two_tower,
        item_embeddings=item_vectors(two_tower),
        cooccurrence=cooccurrence,
        popularity=np.zeros(len(catalogue)) if counts is None else counts.astype(np.float64),
        popular=popular,
        ranker=ranker,
        repurchase_days=repurchase,
        neighbours=neighbours,
    )


def _p_greater(better: np.ndarray, base: np.ndarray) -> float:
    """One-sided paired t-test p-value that `better` beats `base` per user (1.0 when they never differ)."""
    from scipy import stats

    diff = better - base
    if not np.any(diff):
        return 1.0
    return float(stats.ttest_rel(better, base, alternative="greater").pvalue)


def _labels(rows: np.ndarray, relevant: list[np.ndarray], weights: list[np.ndarray] | None) -> np.ndarray:
    """[B, C] weight of each candidate that is one of the user's next interactions (0 elsewhere)."""
    labels = np.zeros(rows.shape, np.float32)
    for u, targets in enumerate(relevant):
        w = dict(
            zip(targets.tolist(), (weights[u] if weights else np.ones(len(targets))).tolist(), strict=True)
        )
        labels[u] = [w.get(int(r), 0.0) if r >= 0 else 0.0 for r in rows[u]]
    return labels


def _weights(weights: list[np.ndarray] | None, users: np.ndarray) -> list[np.ndarray] | None:
    return None if weights is None else [weights[u] for u in users]


def _metrics(tops, relevant, k: int) -> dict[str, float]:
    m = ranking_metrics(tops, relevant, k)
    return {name: round(value, 6) for name, value in m.items() if name != "users"} | {"users": m["users"]}


def _batched(
    scores_of: Callable[[np.ndarray], np.ndarray], users: np.ndarray, measure, size: int = 2048
) -> float:
    """A user-weighted mean of `measure(scores, users)` over batches of `size` users."""
    total = 0.0
    for lo in range(0, len(users), size):
        batch = users[lo : lo + size]
        total += measure(scores_of(batch), batch) * len(batch)
    return total / max(len(users), 1)
