"""Next-basket quality on the Complete Journey year: G/P/GP-TopFreq and TIFU-KNN, and the platform's row.

The protocol and the metrics are those of "A Next Basket Recommendation Reality Check" (Li, Jullien,
Ariannezhad, de Rijke; TOIS 2023), on every household with at least `MIN_BASKETS` baskets:

* **last basket**: each household's last basket is the target, every basket before it the history;
* **temporal**: the history is every basket before `TEMPORAL_CUT` (2017-12-01), the target the
  household's first basket on or after it (households with at least two baskets before the cut and
  one after).

Each protocol has a validation split one basket earlier (target: the last history basket, history:
the baskets before it), on which tuned models choose their hyperparameters; no model reads a test
target. For a household with target basket T (its distinct items) and top-K list P:

* (`models.evaluate.basket_metrics`) Recall@K = |P ∩ T| / |T|; NDCG@K = DCG / IDCG with the ideal over the whole basket (IDCG sums
  1/log2(i+2) for i < |T|, not only i < K, as the paper's code does); PHR@K = 1 if P ∩ T is not empty;
* repeat / explore recall: the same recall on the basket's items the household bought before (repeat)
  and the ones new to it (explore), averaged over the households whose target has such items.

Every model is a function `(valid, test, k) -> (lists, details)` that sees the validation split with
its targets and the test split WITHOUT its targets, and returns each test household's ranked item
indices (`-1` pads a list shorter than K). The platform's served pipeline plugs in as one more such
function (`PLATFORM_ROW` below).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from scipy import sparse

from models.evaluate import basket_metrics
from models.neighbours import tifu_vectors
from recflow.data.completejourney import purchase_events, read_transactions

K = 10
MIN_BASKETS = 3
TEMPORAL_CUT = date(2017, 12, 1)
METRICS: tuple[str, ...] = ("recall@10", "ndcg@10", "phr@10", "repeat_recall@10", "explore_recall@10")


@dataclass(frozen=True)
class Baskets:
    """Every household's baskets in time order.

    Attributes:
        users: household ids.
        baskets: per household, its baskets (oldest first), each an array of distinct item indices.
        days: per household, the local date of each basket.
        items: the item id of each index.
    """

    users: list[str]
    baskets: list[list[np.ndarray]]
    days: list[list[date]]
    items: list[str]


@dataclass(frozen=True)
class Split:
    """One evaluation split: per household the history baskets (and their dates) and the target basket.

    `targets` is None in the copy of the test split that models see.
    """

    name: str
    users: list[str]
    histories: list[list[np.ndarray]]
    history_days: list[list[date]]
    target_days: list[date]
    targets: list[np.ndarray] | None
    n_items: int

    def public(self) -> Split:
        """The split without its targets: what a model may see of a test split."""
        return replace(self, targets=None)


Model = Callable[[Split, Split, int], tuple[np.ndarray, dict]]
"""`(validation split, test split without targets, K) -> ([n_test, K] ranked item indices, details)`."""


def read_baskets(source: str = "completejourney") -> Baskets:
    """The households' baskets of a Complete Journey source (every transaction line; local dates)."""
    return baskets_from_events(purchase_events(read_transactions(source)))


def baskets_from_events(events: pd.DataFrame) -> Baskets:
    """Group purchase events (`user_id`, `item_id`, `basket_id`, `timestamp`, `day`) into baskets.

    A basket's time is its first line's; a household's baskets are ordered by it (then by basket id).
    """
    codes, items = pd.factorize(events["item_id"].astype(str), sort=True)
    frame = pd.DataFrame(
        {
            "user": events["user_id"].astype(str).to_numpy(),
            "basket": events["basket_id"].astype(str).to_numpy(),
            "time": events["timestamp"].to_numpy(),
            "day": events["day"].to_numpy(),
            "item": codes,
        }
    )
    frame["start"] = frame.groupby("basket")["time"].transform("min")
    frame = frame.sort_values(["user", "start", "basket", "item"], kind="stable").drop_duplicates(
        ["basket", "item"]
    )
    basket = frame["basket"].to_numpy()
    user = frame["user"].to_numpy()
    new_basket = np.append(True, basket[1:] != basket[:-1])
    first_line = np.flatnonzero(new_basket)
    per_basket = np.split(frame["item"].to_numpy(np.int64), first_line[1:])
    basket_user, basket_day = user[first_line], frame["day"].to_numpy()[first_line]
    new_user = np.append(True, basket_user[1:] != basket_user[:-1])
    bounds = np.append(np.flatnonzero(new_user), len(first_line))
    users = [str(basket_user[lo]) for lo in bounds[:-1]]
    baskets = [per_basket[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    days = [list(basket_day[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    return Baskets(users=users, baskets=baskets, days=days, items=[str(i) for i in items])


def _split(name: str, data: Baskets, picks: list[tuple[int, int, int]]) -> Split:
    """A split from (household, history end, target) basket positions: history = baskets[:end]."""
    return Split(
        name=name,
        users=[data.users[u] for u, _, _ in picks],
        histories=[data.baskets[u][:end] for u, end, _ in picks],
        history_days=[data.days[u][:end] for u, end, _ in picks],
        target_days=[data.days[u][t] for u, _, t in picks],
        targets=[data.baskets[u][t] for u, _, t in picks],
        n_items=len(data.items),
    )


def last_basket_splits(data: Baskets, min_baskets: int = MIN_BASKETS) -> tuple[Split, Split]:
    """Validation (target: second-to-last basket) and test (target: last basket) of the households with
    at least `min_baskets` baskets."""
    kept = [u for u, b in enumerate(data.baskets) if len(b) >= min_baskets]
    valid = _split(
        "last-basket/valid", data, [(u, len(data.baskets[u]) - 2, len(data.baskets[u]) - 2) for u in kept]
    )
    test = _split(
        "last-basket/test", data, [(u, len(data.baskets[u]) - 1, len(data.baskets[u]) - 1) for u in kept]
    )
    return valid, test


def temporal_splits(data: Baskets, cut: date = TEMPORAL_CUT) -> tuple[Split, Split]:
    """Validation (target: the last basket before `cut`) and test (target: the first basket on or after
    `cut`, history: every basket before it) of the households with two baskets before `cut` and one after."""
    picks_valid, picks_test = [], []
    for u, days in enumerate(data.days):
        before = sum(d < cut for d in days)  # baskets are in time order
        if before >= 2 and before < len(days):
            picks_valid.append((u, before - 1, before - 1))
            picks_test.append((u, before, before))
    return _split("temporal/valid", data, picks_valid), _split("temporal/test", data, picks_test)


# ---------------------------------------------------------------- baselines


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` highest positive scores per row, best first (ties: lower index); -1 pads."""
    return _top_k_columns(np.asarray(scores, dtype=np.float64), k)


def basket_counts(histories: Sequence[Sequence[np.ndarray]], n_items: int) -> np.ndarray:
    """In how many history baskets (of every household) each item is."""
    flat = [b for h in histories for b in h]
    return (
        np.bincount(np.concatenate(flat), minlength=n_items).astype(np.float64) if flat else np.zeros(n_items)
    )


def personal_scores(history: Sequence[np.ndarray], n_items: int) -> dict[int, tuple[int, int]]:
    """Per item of one household: (baskets it is in, position of the last of them)."""
    out: dict[int, tuple[int, int]] = {}
    for position, basket in enumerate(history):
        for item in basket.tolist():
            count = out.get(item, (0, 0))[0]
            out[item] = (count + 1, position)
    return out


def g_topfreq(valid: Split, test: Split, k: int) -> tuple[np.ndarray, dict]:
    """G-TopFreq: the K items in the most history baskets of all households, for everyone."""
    counts = basket_counts(test.histories, test.n_items)
    top = _top(counts[None, :], k)[0]
    return np.tile(top, (len(test.histories), 1)), {}


def p_topfreq(valid: Split, test: Split, k: int) -> tuple[np.ndarray, dict]:
    """P-TopFreq: the household's own items, by how many of its baskets hold them (ties: bought last first).

    A household with fewer than K distinct items gets a shorter list: P-TopFreq never explores.
    """
    lists = np.full((len(test.histories), k), -1, dtype=np.int64)
    for row, history in enumerate(test.histories):
        ranked = sorted(
            personal_scores(history, test.n_items).items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0])
        )
        chosen = [item for item, _ in ranked[:k]]
        lists[row, : len(chosen)] = chosen
    return lists, {}


def gp_topfreq(valid: Split, test: Split, k: int) -> tuple[np.ndarray, dict]:
    """GP-TopFreq: P-TopFreq, filled up to K with G-TopFreq's items the household has not bought."""
    personal, _ = p_topfreq(valid, test, k)
    popular = _top(basket_counts(test.histories, test.n_items)[None, :], k + k)[0]
    for row in personal:
        free = np.flatnonzero(row < 0)
        if len(free):
            fill = [i for i in popular.tolist() if i >= 0 and i not in set(row.tolist())]
            row[free] = (fill + [-1] * len(free))[: len(free)]
    return personal, {}


# ---------------------------------------------------------------- TIFU-KNN


@dataclass(frozen=True)
class TifuParams:
    """TIFU-KNN hyperparameters (Hu et al., SIGIR 2020).

    Attributes:
        neighbours: k, the nearest households (Euclidean distance between their vectors) averaged.
        within_decay: r_b, a basket's weight decays by r_b per later basket of the household.
        group_decay: r_g, a group's weight decays by r_g per later group.
        groups: m, the history is cut into m groups of consecutive baskets (each basket its own group
            when there are fewer).
        alpha: the weight of the household's own vector against its neighbours' mean.
    """

    neighbours: int = 300
    within_decay: float = 0.9
    group_decay: float = 0.7
    groups: int = 7
    alpha: float = 0.7


TIFU_GRID: dict[str, tuple] = {
    "within_decay": (0.9, 1.0),
    "group_decay": (0.4, 0.6, 0.8),
    "groups": (3, 7, 15),
    "neighbours": (50, 100, 300, 900),
    "alpha": (0.1, 0.2, 0.4, 0.6, 0.8, 0.9),
}
"""The validation grid: the ranges the TIFU-KNN paper and the Reality Check searched, coarsened. It is
searched in two stages: the vector's decays and groups with every alpha at `TifuParams.neighbours`, then
the number of neighbours with every alpha for the chosen vector."""


def neighbour_order(vectors: sparse.csr_matrix) -> np.ndarray:
    """Every household's other households by Euclidean distance of their vectors, nearest first."""
    gram = (vectors @ vectors.T).toarray()
    norms = np.diag(gram).copy()
    distance = norms[:, None] + norms[None, :] - 2 * gram
    np.fill_diagonal(distance, np.inf)  # a household is not its own neighbour
    return np.argsort(distance, axis=1, kind="stable")[:, :-1]


def tifu_lists(
    vectors: sparse.csr_matrix, order: np.ndarray, neighbours: int, alphas: Sequence[float], k: int
) -> dict[float, np.ndarray]:
    """Top-K lists of alpha * own vector + (1 - alpha) * mean of the nearest `neighbours` vectors, per alpha.

    Exact and cheap per alpha: an item outside the household's own items scores (1 - alpha) * mean, so
    only the K best of those by mean can enter the list; they are found once for every alpha.
    """
    n = vectors.shape[0]
    kk = min(neighbours, order.shape[1])
    if kk:
        weights = sparse.csr_matrix(
            (np.full(n * kk, 1.0 / kk), order[:, :kk].ravel(), np.arange(0, n * kk + 1, kk)), shape=(n, n)
        )
    out = {a: np.full((n, k), -1, dtype=np.int64) for a in alphas}
    for lo in range(0, n, 256):
        hi = min(lo + 256, n)
        own = vectors[lo:hi]
        # the neighbours' mean, items x households of the chunk (the layout the product gives)
        mean_t = vectors.T @ weights[lo:hi].T.toarray() if kk else np.zeros((vectors.shape[1], hi - lo))
        # the household's own items, padded to the longest: index, own value, neighbours' mean
        lengths = np.diff(own.indptr)
        width = max(int(lengths.max(initial=0)), 1)
        rows = np.repeat(np.arange(hi - lo), lengths)
        slot = np.arange(own.nnz) - np.repeat(own.indptr[:-1], lengths)
        mine = np.zeros((hi - lo, width), dtype=np.int64)
        mine_value = np.full((hi - lo, width), -np.inf)
        mine[rows, slot], mine_value[rows, slot] = own.indices, own.data
        mine_mean = mean_t[mine, np.arange(hi - lo)[:, None]]
        # the K items with the best mean among the others
        mean_t[own.indices, rows] = -np.inf
        others = _top_k_per_column(mean_t, k)  # -1 where fewer than k others have a positive mean
        others_mean = np.where(
            others >= 0, mean_t[np.maximum(others, 0), np.arange(hi - lo)[:, None]], -np.inf
        )
        columns = np.concatenate([mine, others], axis=1)
        padded = np.isinf(mine_value)
        for a in alphas:
            own_scores = np.where(
                padded, -np.inf, a * np.where(padded, 0.0, mine_value) + (1 - a) * mine_mean
            )
            scores = np.concatenate([own_scores, (1 - a) * others_mean], axis=1)
            out[a][lo:hi] = _ranked(scores, columns, k)
    return out


def _top_k_columns(scores: np.ndarray, k: int, labels: np.ndarray | None = None) -> np.ndarray:
    """Per row of `scores` `[n, m]`, the column positions of the `k` highest positive scores, best first;
    -1 pads. Ties go to the lower label (`labels[row, column]`, default the column)."""
    return _top_k_per_column(
        np.ascontiguousarray(scores.T), k, None if labels is None else np.ascontiguousarray(labels.T)
    )


def _top_k_per_column(scores_t: np.ndarray, k: int, labels_t: np.ndarray | None = None) -> np.ndarray:
    """`_top_k_columns` of `scores_t.T`, for scores laid out `[m candidates, n rows]` (no transposed copy).

    Exact, and much cheaper than partitioning all m values of every row: the k-th largest of ~1024
    block maxima is a threshold that at least k of the row's values reach, so only the values at or
    above it are sorted.
    """
    m, n = scores_t.shape
    out = np.full((n, k), -1, dtype=np.int64)
    if n == 0 or m == 0:
        return out
    kk = min(k, m)
    block = -(-m // max(kk, min(1024, m)))
    padded = np.pad(scores_t, ((0, (-m) % block), (0, 0)), constant_values=-np.inf)
    maxima = padded.reshape(-1, block, n).max(axis=1)
    threshold = np.partition(maxima, maxima.shape[0] - kk, axis=0)[maxima.shape[0] - kk]
    cols, rows = np.nonzero((scores_t >= threshold[None, :]) & (scores_t > 0))
    values = scores_t[cols, rows]
    tie = cols if labels_t is None else labels_t[cols, rows]
    order = np.lexsort((tie, -values, rows))
    rows, cols = rows[order], cols[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, np.arange(n))[rows]
    keep = rank < k
    out[rows[keep], rank[keep]] = cols[keep]
    return out


def _ranked(scores: np.ndarray, columns: np.ndarray, k: int) -> np.ndarray:
    """Per row, the `columns` of the `k` highest positive `scores`, best first (ties: lower column); -1 pads."""
    position = _top_k_columns(scores, k, labels=columns)
    picked = np.take_along_axis(columns, np.maximum(position, 0), axis=1)
    return np.where(position >= 0, picked, -1)


def tifu_knn(
    valid: Split, test: Split, k: int, grid: dict[str, tuple] | None = None
) -> tuple[np.ndarray, dict]:
    """TIFU-KNN with its hyperparameters chosen on the validation split (Recall@K, then NDCG@K), applied
    to the test histories (neighbours: the other households' test histories). See `TIFU_GRID`."""
    grid = grid or TIFU_GRID
    trials: list[tuple[float, float, TifuParams]] = []

    def search(within: float, group_decay: float, groups: int, neighbours_options) -> None:
        vectors = tifu_vectors(valid.histories, valid.n_items, within, group_decay, groups)
        order = neighbour_order(vectors)
        for neighbours in neighbours_options:
            for alpha, lists in tifu_lists(vectors, order, neighbours, grid["alpha"], k).items():
                metrics = basket_metrics(lists, valid.targets, valid.histories, k)
                params = TifuParams(neighbours, within, group_decay, groups, alpha)
                trials.append((metrics[f"recall@{k}"], metrics[f"ndcg@{k}"], params))

    default = TifuParams().neighbours
    for within, group_decay, groups in product(grid["within_decay"], grid["group_decay"], grid["groups"]):
        search(within, group_decay, groups, [default])
    _, _, stage1 = max(trials, key=lambda t: (t[0], t[1]))
    others = [n for n in grid["neighbours"] if n != default]
    search(stage1.within_decay, stage1.group_decay, stage1.groups, others)
    best_recall, best_ndcg, best = max(trials, key=lambda t: (t[0], t[1]))
    vectors = tifu_vectors(test.histories, test.n_items, best.within_decay, best.group_decay, best.groups)
    lists = tifu_lists(vectors, neighbour_order(vectors), best.neighbours, [best.alpha], k)[best.alpha]
    return lists, {
        "params": best.__dict__,
        "validation_recall@10": round(best_recall, 6),
        "validation_ndcg@10": round(best_ndcg, 6),
        "trials": len(trials),
    }


BASELINES: dict[str, Model] = {
    "g-topfreq": g_topfreq,
    "p-topfreq": p_topfreq,
    "gp-topfreq": gp_topfreq,
    "tifu-knn": tifu_knn,
}


# ---------------------------------------------------------------- the benchmark command

PLATFORM_ROW: Model | None = None
"""PLATFORM ROW: the served pipeline's next-basket model plugs in here (or through `run_next_basket_bench(
platform=...)`, or `platform_for=`, which builds it from the baskets read) as a `Model`: it may tune on
the validation split and must rank for the test households from their histories only. Its row is named
`platform`, kind `platform`. `recflow bench quality --protocol next-basket` passes
`benchmarks.next_basket_platform.PlatformRow` (the served model family)."""


def evaluate_protocol(
    valid: Split, test: Split, models: dict[str, tuple[str, Model]], k: int, console: Console
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Run every model on one protocol; returns (rows, details) keyed by model name."""
    rows, details = {}, {}
    public = test.public()
    for name, (kind, model) in models.items():
        t = time.perf_counter()
        lists, extra = model(valid, public, k)
        seconds = time.perf_counter() - t
        if lists.shape != (len(test.users), k):
            raise ValueError(
                f"model {name!r} returned lists of shape {lists.shape}; expected {(len(test.users), k)}"
            )
        metrics = basket_metrics(lists, test.targets, test.histories, k)
        rows[name] = {
            "kind": kind,
            **{m: round(metrics[m], 6) for m in METRICS},
            "train_seconds": round(seconds, 1),
        }
        details[name] = extra
        console.print(
            f"{test.name:18s} {name:12s} Recall@10 {metrics['recall@10']:.4f}  NDCG@10 {metrics['ndcg@10']:.4f}  "
            f"PHR@10 {metrics['phr@10']:.4f}  repeat {metrics['repeat_recall@10']:.4f}  "
            f"explore {metrics['explore_recall@10']:.4f}  ({seconds:.1f}s)"
        )
    return rows, details


def _summary(split: Split) -> dict:
    sizes = [len(t) for t in split.targets]
    repeats = [
        len(set(t.tolist()) & set(np.concatenate(h).tolist())) / len(t)
        for t, h in zip(split.targets, split.histories, strict=True)
    ]
    return {
        "users": len(split.users),
        "median_target_size": float(np.median(sizes)),
        "repeat_share_of_target": round(float(np.mean(repeats)), 4),
        "median_history_baskets": float(np.median([len(h) for h in split.histories])),
    }


def run_next_basket_bench(
    source: str,
    json_out: Path,
    seed: int = 42,
    platform: Model | None = None,
    k: int = K,
    command: str | None = None,
    temporal_cut: date = TEMPORAL_CUT,
    platform_for: Callable[[Baskets], Model] | None = None,
) -> dict:
    """Both protocols, every baseline (and the platform row when given): print, write JSON, PNG and a table.

    Args:
        source: `completejourney` or `completejourney:DIR`.
        json_out: where the JSON goes (`.png` and `.md` beside it).
        seed: recorded, and handed to nothing random here (the baselines are deterministic).
        platform: the platform's `Model` (default `PLATFORM_ROW`).
        k: the list length (the JSON's field names say 10).
        command: the command line shown in the Markdown table.
        temporal_cut: the temporal protocol's first test day.
        platform_for: builds the platform's `Model` from the baskets read (when `platform` is None).

    Returns:
        `{"dataset", "protocol", "users", "items", "seed", "models": {name: {...}}, "details"}`: `models`
        holds the last-basket protocol, `details.temporal.models` the temporal one.
    """
    console = Console()
    t = time.perf_counter()
    data = read_baskets(source)
    console.print(
        f"{len(data.users)} households, {len(data.items)} items ({time.perf_counter() - t:.1f}s to read)"
    )
    models: dict[str, tuple[str, Model]] = {name: ("baseline", fn) for name, fn in BASELINES.items()}
    platform = platform or (platform_for(data) if platform_for is not None else PLATFORM_ROW)
    if platform is not None:
        models["platform"] = ("platform", platform)
    valid, test = last_basket_splits(data)
    rows, details = evaluate_protocol(valid, test, models, k, console)
    t_valid, t_test = temporal_splits(data, temporal_cut)
    if not t_test.users:
        raise ValueError(
            f"no household has two baskets before {temporal_cut} and one after: the data ends "
            f"{max(d for days in data.days for d in days)}"
        )
    t_rows, t_details = evaluate_protocol(t_valid, t_test, models, k, console)
    result = {
        "dataset": source,
        "protocol": "next-basket",
        "users": len(test.users),
        "items": len(data.items),
        "seed": seed,
        "models": rows,
        "details": {
            "protocol": __doc__.split("\n\n")[1].strip() + " " + __doc__.split("\n\n")[2].strip(),
            "last_basket": {**_summary(test), "models": details},
            "temporal": {
                "cut": temporal_cut.isoformat(),
                **_summary(t_test),
                "models": t_rows,
                "model_details": t_details,
            },
            "households_read": len(data.users),
            "load_average": round(os.getloadavg()[0], 2),
        },
    }
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2, default=str))
    write_chart(result, json_out.with_suffix(".png"))
    json_out.with_suffix(".md").write_text(markdown_report(result, command))
    console.print(f"wrote {json_out}, {json_out.with_suffix('.png')} and {json_out.with_suffix('.md')}")
    return result


def markdown_report(result: dict, command: str | None) -> str:
    """Both protocols' tables, with the command that made them."""
    lines = [
        f"# Next-basket quality: {result['dataset']}",
        "",
        "Written by `recflow bench quality --protocol next-basket`; do not edit by hand.",
        "",
    ]
    if command:
        lines += ["```bash", command, "```", ""]
    header = "| model | kind | Recall@10 | NDCG@10 | PHR@10 | repeat recall@10 | explore recall@10 | s |"
    for title, table, users in (
        ("Last basket", result["models"], result["users"]),
        (
            f"Temporal (train before {result['details']['temporal']['cut']})",
            result["details"]["temporal"]["models"],
            result["details"]["temporal"]["users"],
        ),
    ):
        lines += [f"## {title}: {users} households", "", header, "|---|---|---|---|---|---|---|---|"]
        for name, row in table.items():
            cells = " | ".join(f"{row[m]:.4f}" for m in METRICS)
            lines.append(f"| {name} | {row['kind']} | {cells} | {row['train_seconds']} |")
        lines.append("")
    tifu = result["details"]["last_basket"]["models"].get("tifu-knn", {})
    if tifu:
        lines += [f"TIFU-KNN chosen on the validation baskets: `{json.dumps(tifu.get('params'))}`.", ""]
    lines += ["## Protocol", "", result["details"]["protocol"], ""]
    return "\n".join(lines)


def write_chart(result: dict, path: Path) -> Path:
    """Bars of every metric per model, one panel per protocol."""
    from recflow.charts import pyplot, save_figure

    plt = pyplot()

    panels = (("last basket", result["models"]), ("temporal", result["details"]["temporal"]["models"]))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, (title, table) in zip(axes, panels, strict=True):
        names = list(table)
        width = 0.8 / len(names)
        for n, name in enumerate(names):
            values = [table[name][m] for m in METRICS]
            ax.bar(np.arange(len(METRICS)) + n * width, values, width, label=name)
        ax.set_xticks(
            np.arange(len(METRICS)) + 0.4 - width / 2, [m.replace("@10", "") for m in METRICS], rotation=20
        )
        ax.set_title(title)
    axes[0].set_ylabel("@10")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"next-basket quality, {result['dataset']}")
    fig.tight_layout()
    save_figure(fig, path)
    return path
