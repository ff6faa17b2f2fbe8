"""Model quality on real data: leave-one-out full-ranking HR@K / NDCG@K of baselines and platform models."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from models.cooccurrence import CooccurrenceModel, tune_cooccurrence
from models.hardware import choose_strategy, device_description, training_precision
from models.sequential import (
    RankerConfig,
    SequentialConfig,
    candidate_features,
    fit_ranker,
    fit_sequential,
    refit_sequential,
    rerank,
    save_sequential,
    write_scalar,
    write_text,
)
from recflow.data.amazon import benchmark_sequences, find_sequence_file
from recflow.settings import Settings

KS: tuple[int, ...] = (5, 10, 20)


@dataclass(frozen=True)
class Split:
    """One evaluation split: for each user the history (context and mask) and the target item."""

    name: str
    histories: list[np.ndarray]
    targets: np.ndarray


def leave_one_out(sequences: Sequence[np.ndarray]) -> tuple[list[np.ndarray], Split, Split]:
    """The README protocol: last item = test target, second-to-last = validation target.

    Returns:
        training histories (`seq[:-2]`), the validation split (history `seq[:-2]`, target
        `seq[-2]`) and the test split (history `seq[:-1]`, target `seq[-1]`).

    Raises:
        ValueError: if a user has fewer than 3 items.
    """
    short = [u for u, s in enumerate(sequences) if len(s) < 3]
    if short:
        raise ValueError(f"users {short[:5]} have fewer than 3 items: leave-one-out needs at least 3")
    train = [s[:-2] for s in sequences]
    valid = Split("valid", train, np.array([s[-2] for s in sequences]))
    test = Split("test", [s[:-1] for s in sequences], np.array([s[-1] for s in sequences]))
    return train, valid, test


def target_ranks(scores: np.ndarray, histories: Sequence[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target among all items, the user's history masked out.

    An item ties with the target only if it scores exactly the same; ties are counted in the
    target's favour (rank = number of unmasked items scoring strictly higher). `scores` (float32)
    is masked in place.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if not scores.flags.writeable:
        scores = scores.copy()
    for u, h in enumerate(histories):
        scores[u, h] = -np.inf
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets]
    return (scores > target_scores[:, None]).sum(axis=1)


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """HR@K (= Recall@K for one target) and NDCG@K, averaged over users."""
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    return out


def evaluate(
    score_fn: Callable[[list[np.ndarray], np.ndarray], np.ndarray],
    split: Split,
    batch_size: int = 2048,
    ks: Sequence[int] = KS,
) -> dict[str, float]:
    """Score every item for every user in batches, rank the targets, return the metrics.

    Args:
        score_fn: `(histories, user_indices) -> [batch, n_items]` scores; it sees the history only.
        split: histories and targets.
        batch_size: users per call to `score_fn`.
        ks: the cut-offs.
    """
    ranks = []
    for lo in range(0, len(split.targets), batch_size):
        users = np.arange(lo, min(lo + batch_size, len(split.targets)))
        hist = [split.histories[u] for u in users]
        ranks.append(target_ranks(score_fn(hist, users), hist, split.targets[users]))
    return metrics_from_ranks(np.concatenate(ranks), ks)


def subsample(split: Split, n: int, seed: int) -> Split:
    """A fixed random subset of `n` users of a split (all of them when it has fewer)."""
    if len(split.targets) <= n:
        return split
    users = np.sort(np.random.default_rng(seed).choice(len(split.targets), n, replace=False))
    return Split(f"{split.name}-subset", [split.histories[u] for u in users], split.targets[users])


def popularity_scores(items: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Interaction count of every item over `items` (the sequences the model may see)."""
    flat = np.concatenate(items) if len(items) else np.zeros(0, np.int64)
    return np.bincount(flat, minlength=n_items).astype(np.float64)


def ranks_from_lists(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target in its ranked candidate list [B, C]; C when it is absent."""
    hit = ranked == targets[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), ranked.shape[1])


# ---------------------------------------------------------------- the benchmark command

PUBLISHED_FILE = Path(__file__).parent / "published" / "beauty.json"
"""Published full-ranking results on Amazon Beauty, with their source (a data file, not code)."""


def published_results() -> dict:
    """`{"dataset", "source", "url", "protocol", "models": {name: {metric: value}}}` from `PUBLISHED_FILE`."""
    return json.loads(PUBLISHED_FILE.read_text())


PROTOCOL = (
    "Leave-one-out by order: each user's last item is the test target, the second-to-last the "
    "validation target, the rest is training history. Full ranking over every item of the catalogue "
    "with the user's history (every item before the target) masked; HR@K and NDCG@K (K = 5, 10, 20) "
    "averaged over all users; ties counted in the target's favour. Fitting rule, the same for every "
    "model and baseline: hyperparameters and epochs (co-occurrence grid searched on the validation "
    "targets of a fixed random 8000 users, two-tower epochs by early stopping, ranker epochs) are "
    "chosen on the validation targets with models fitted on the "
    "training items only; the test figures come from models REFIT with those choices on each "
    "user's sequence without its test item (training + validation items), and the query reads "
    "that same sequence. Popularity and co-occurrence are refit by recounting; the two-tower is "
    "refit warm: the chosen model trains {refit_epochs} more epochs on those sequences (a number set "
    "in its config, chosen once with a nested split of the validation targets: fit without each "
    "user's last 3 items, refit without the last 2, score the second-to-last). The re-ranker is trained on (context, next item) examples whose features "
    "come from models that never saw that next item: for choosing, on half of the users' "
    "validation examples (scored on the other half); for the test, on all validation examples, "
    "applied to candidates of the refit models. No test target is used by any fit. "
    "popularity-published counts every item of every sequence (test items included): it leaks "
    "the test item and only checks that metrics and masking match the published PopRec."
)
TUNING_USERS = 8000  # validation users scored per co-occurrence grid trial (the grid is large)
METRICS: tuple[str, ...] = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20")


def run_quality_bench(
    settings: Settings,
    dataset: Path,
    json_out: Path,
    seed: int = 42,
    max_users: int | None = None,
    sequential: SequentialConfig | None = None,
    ranker: RankerConfig | None = None,
) -> dict:
    """Run the leave-one-out full-ranking benchmark of baselines and the platform's models.

    Prints one line per model, writes the JSON result, a PNG chart beside it and TensorBoard
    logs under `settings.reports_dir / "bench_quality"`.

    Args:
        settings: platform settings (artefact paths).
        dataset: a folder with `<Name>.txt` (and `<Name>_item2attributes.json`).
        json_out: where the JSON result goes.
        seed: random seed of every trained model.
        max_users: evaluate on the first N users only (quick iterations; the JSON says so).
        sequential: two-tower hyperparameters (default `SequentialConfig(seed=seed)`).
        ranker: re-ranker hyperparameters (default `RankerConfig(seed=seed)`).

    Returns:
        The JSON result as a dict.
    """
    import tensorflow as tf

    dataset = Path(dataset)
    sequences, attrs, item_ids = benchmark_sequences(dataset)
    if max_users:
        sequences = sequences[:max_users]
    n_items = len(item_ids)
    train, valid, test = leave_one_out(sequences)
    refit = test.histories  # each user's sequence without its test item
    run_dir = settings.reports_dir / "bench_quality" / f"{dataset.name}-seed{seed}"
    console = Console()
    models: dict[str, dict] = {}
    details: dict[str, dict] = {}

    def report(name: str, kind: str, metrics: dict[str, float], seconds: float, **extra) -> None:
        models[name] = {
            "kind": kind,
            **{m: round(metrics[m], 6) for m in METRICS},
            "train_seconds": round(seconds, 1),
        }
        details[name] = extra
        console.print(
            f"{name:28s} {kind:9s} HR@10 {metrics['hr@10']:.4f}  NDCG@10 {metrics['ndcg@10']:.4f}  "
            f"HR@20 {metrics['hr@20']:.4f}  train {seconds:6.1f}s"
        )

    # reference: popularity over every item, test included (reproduces the published PopRec)
    pop_all = popularity_scores(sequences, n_items)
    report(
        "popularity-published", "reference", evaluate(lambda h, u: np.tile(pop_all, (len(u), 1)), test), 0.0
    )

    # baseline: popularity, counted honestly
    t = time.perf_counter()
    pop_refit = popularity_scores(refit, n_items)
    seconds = time.perf_counter() - t
    pop_valid = popularity_scores(train, n_items)
    valid_pop = evaluate(lambda h, u: np.tile(pop_valid, (len(u), 1)), valid)
    report(
        "popularity",
        "baseline",
        evaluate(lambda h, u: np.tile(pop_refit, (len(u), 1)), test),
        seconds,
        validation=valid_pop,
    )

    # baseline: item-to-item co-occurrence, tuned on the validation targets
    t = time.perf_counter()
    search = subsample(valid, TUNING_USERS, seed)
    params, trials = tune_cooccurrence(
        train, n_items, lambda m: evaluate(lambda h, u: m.scores(h), search)["ndcg@10"]
    )
    cooc_valid = CooccurrenceModel(params, n_items).fit(train)
    cooc_test = CooccurrenceModel(params, n_items).fit(refit)
    seconds = cooc_seconds = time.perf_counter() - t
    report(
        "cooccurrence",
        "baseline",
        evaluate(lambda h, u: cooc_test.scores(h), test),
        seconds,
        params=asdict(params),
        validation=evaluate(lambda h, u: cooc_valid.scores(h), valid),
        trials=len(trials),
    )

    # platform: sequential two-tower retrieval (epochs chosen on validation, then refit)
    config = sequential or SequentialConfig(seed=seed)
    t = time.perf_counter()

    def validate_retrieval(model, epoch: int) -> float:
        items = model.item_tower.all_items()
        score = evaluate(lambda h, u: model.scores(h, items), valid)["ndcg@10"]
        console.print(
            f"  two-tower epoch {epoch:3d}  validation NDCG@10 {score:.4f}  ({time.perf_counter() - t:5.0f}s)"
        )
        return score

    strategy = choose_strategy(settings.train)
    with training_precision(settings.train) as precision:  # RECFLOW_TRAIN__MIXED_PRECISION, __XLA
        nn_valid, history = fit_sequential(
            train,
            attrs,
            config,
            validate=validate_retrieval,
            log_dir=run_dir / "tensorboard" / "retrieval-choose",
            strategy=strategy,
        )
        nn_test = refit_sequential(
            nn_valid, refit, attrs, log_dir=run_dir / "tensorboard" / "retrieval-refit", strategy=strategy
        )
    seconds = time.perf_counter() - t
    save_sequential(nn_test, run_dir / "retrieval")
    items_test = nn_test.item_tower.all_items()
    report(
        "two-tower-sasrec",
        "platform",
        evaluate(lambda h, u: nn_test.scores(h, items_test), test),
        seconds,
        config=asdict(config),
        best_epoch=history["best_epoch"],
        validation_ndcg10=history["best_score"],
    )

    # platform: two-tower + co-occurrence candidates, re-ranked by the DCN-v2 ranker
    t = time.perf_counter()
    ranker_config = ranker or RankerConfig(seed=seed)
    n_candidates = min(ranker_config.candidates, n_items - 1)
    items_valid = nn_valid.item_tower.all_items()

    def features(nn, items, cooc, split, pop) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cands, feats = [], []
        for lo in range(0, len(split.targets), 2048):
            hist = split.histories[lo : lo + 2048]
            c, f = candidate_features(
                nn.scores(hist, items), cooc.scores(hist), hist, pop, attrs, n_candidates
            )
            cands.append(c)
            feats.append(f)
        cand = np.concatenate(cands)
        return cand, np.concatenate(feats), (cand == split.targets[:, None]).astype(np.float32)

    cand_v, feats_v, labels_v = features(nn_valid, items_valid, cooc_valid, valid, pop_valid)
    rng = np.random.default_rng(seed)
    half = rng.permutation(len(cand_v)) < len(cand_v) // 2

    def validate_ranker(model) -> float:
        ranked = rerank(model, cand_v[~half], feats_v[~half])
        return metrics_from_ranks(ranks_from_lists(ranked, valid.targets[~half]))["ndcg@10"]

    _, ranker_history = fit_ranker(feats_v[half], labels_v[half], ranker_config, validate=validate_ranker)
    ranker_model, _ = fit_ranker(feats_v, labels_v, ranker_config, epochs=ranker_history["best_epoch"])
    cand_t, feats_t, _ = features(nn_test, items_test, cooc_test, test, pop_refit)
    ranked = rerank(ranker_model, cand_t, feats_t)
    stages = {"cooccurrence": cooc_seconds, "two-tower": seconds, "ranker": time.perf_counter() - t}
    seconds = sum(stages.values())  # the whole pipeline: both candidate sources and the ranker
    ranker_model.save_weights(str(run_dir / "ranker" / "weights"))
    (run_dir / "ranker" / "config.json").write_text(ranker_config.to_json())
    report(
        "two-tower+cooc->dcn-ranker",
        "platform",
        metrics_from_ranks(ranks_from_lists(ranked, test.targets)),
        seconds,
        config=asdict(ranker_config),
        best_epoch=ranker_history["best_epoch"],
        validation_ndcg10_half=ranker_history["best_score"],
        candidate_recall_test=float(ranks_from_lists(cand_t, test.targets).__lt__(n_candidates).mean()),
        seconds_by_stage={k: round(v, 1) for k, v in stages.items()},
    )

    table = published_results()
    published = find_sequence_file(dataset).stem == table["dataset"]  # the table is Beauty's only
    for name, metrics in table["models"].items() if published else ():
        models[f"{name} (published)"] = {"kind": "reference", **metrics, "train_seconds": None}

    result = {
        "dataset": str(dataset),
        "protocol": PROTOCOL.format(refit_epochs=config.refit_epochs),
        "users": len(sequences),
        "items": n_items,
        "seed": seed,
        "models": models,
        "details": {
            **details,
            "published_source": table["source"] if published else None,
            "subsample_users": max_users,
            "device": device_description(),
            "replicas": strategy.num_replicas_in_sync,
            "precision": precision,
            "xla": settings.train.xla,
            "load_average": round(os.getloadavg()[0], 2),
            "tf_version": tf.__version__,
        },
    }
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    write_chart(result, json_out.with_suffix(".png"))
    write_tensorboard_summary(result, run_dir / "tensorboard" / "results")
    console.print(
        f"wrote {json_out} and {json_out.with_suffix('.png')}; TensorBoard logs in {run_dir / 'tensorboard'}"
    )
    return result


def run_refit_study(
    dataset: Path,
    json_out: Path,
    refit_epochs: Sequence[int] = (0, 2, 4),
    learning_rates: Sequence[float] = (5e-3, 1e-3),
    config: SequentialConfig | None = None,
    max_users: int | None = None,
) -> dict:
    """How many warm refit epochs the two-tower needs, chosen on validation targets only.

    A nested split of the benchmark protocol: fit on each user's sequence without its last 3 items
    for `config.max_epochs` epochs, refit warm on the sequence without its last 2 (with each number
    of epochs and learning rate), and score the validation target (the second-to-last item) with
    that sequence as history. Test items are never read. The model retrained from scratch on the
    longer sequences is the reference.

    Returns (and writes as JSON): `{"dataset", "config", "variants": [{"refit_epochs",
    "learning_rate", "seconds", "hr@10", "ndcg@10"}], "scratch": {...}}`.
    """
    sequences, attrs, _ = benchmark_sequences(Path(dataset))
    sequences = sequences[:max_users] if max_users else sequences
    if any(len(s) < 4 for s in sequences):
        raise ValueError("the refit study needs every user to have at least 4 items")
    config = config or SequentialConfig()
    inner = [s[:-3] for s in sequences]
    outer = Split("valid", [s[:-2] for s in sequences], np.array([s[-2] for s in sequences]))
    console = Console()

    def score(model) -> dict[str, float]:
        items = model.item_tower.all_items()
        metrics = evaluate(lambda h, u: model.scores(h, items), outer)
        return {"hr@10": round(metrics["hr@10"], 4), "ndcg@10": round(metrics["ndcg@10"], 4)}

    t = time.perf_counter()
    chosen, _ = fit_sequential(inner, attrs, config, epochs=config.max_epochs)
    console.print(f"fitted on the inner split in {time.perf_counter() - t:.0f}s")
    variants = []
    for lr in learning_rates:
        for epochs in refit_epochs:
            if epochs == 0 and lr != learning_rates[0]:
                continue  # no refit does not depend on the learning rate
            t = time.perf_counter()
            model = refit_sequential(chosen, outer.histories, attrs, epochs=epochs, learning_rate=lr)
            row = {"refit_epochs": epochs, "learning_rate": lr, "seconds": round(time.perf_counter() - t, 1)}
            row.update(score(model))
            variants.append(row)
            console.print(f"warm refit {epochs} epochs at lr {lr:g}: {row}")
    t = time.perf_counter()
    scratch, _ = fit_sequential(outer.histories, attrs, config, epochs=config.max_epochs)
    reference = {"epochs": config.max_epochs, "seconds": round(time.perf_counter() - t, 1), **score(scratch)}
    console.print(f"retrained from scratch: {reference}")
    result = {"dataset": str(dataset), "config": asdict(config), "variants": variants, "scratch": reference}
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    return result


def write_chart(result: dict, path: Path) -> Path:
    """A bar chart of HR@10 and NDCG@10 per model (measured and published), coloured by kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(result["models"], key=lambda n: result["models"][n]["hr@10"])
    colours = {"baseline": "#888888", "platform": "#1f77b4", "reference": "#d9a441"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.4 * len(names) + 1.5), sharey=True)
    for ax, metric in zip(axes, ("hr@10", "ndcg@10"), strict=True):
        values = [result["models"][n][metric] for n in names]
        ax.barh(names, values, color=[colours[result["models"][n]["kind"]] for n in names])
        ax.set_xlabel(metric.upper())
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.4f}", va="center", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    fig.legend(handles, list(colours), loc="lower center", ncol=3, frameon=False)
    fig.suptitle(f"{Path(result['dataset']).name}: leave-one-out full ranking (seed {result['seed']})")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_tensorboard_summary(result: dict, log_dir: Path) -> None:
    """Every model's metrics as TensorBoard scalars (one run per model) and the table as text."""
    import tensorflow as tf

    for name, row in result["models"].items():
        writer = tf.summary.create_file_writer(str(log_dir / name.replace(" ", "_").replace("/", "_")))
        for metric in METRICS:
            write_scalar(writer, f"test/{metric}", row[metric], result["seed"])
        writer.close()
    writer = tf.summary.create_file_writer(str(log_dir / "table"))
    write_text(writer, "results", markdown_table([result]), result["seed"])
    writer.close()


def markdown_table(results: list[dict]) -> str:
    """The models of one or more runs (seeds) as a markdown table: mean, and spread when several."""
    names = list(results[0]["models"])
    header = "| Model | kind | " + " | ".join(m.upper() for m in METRICS) + " | train s |"
    lines = [header, "|" + "---|" * (len(METRICS) + 3)]
    for name in names:
        rows = [r["models"][name] for r in results if name in r["models"]]
        cells = []
        for metric in METRICS:
            values = np.array([row[metric] for row in rows])
            spread = f" ± {values.std(ddof=1):.4f}" if len(values) > 1 and np.ptp(values) > 0 else ""
            cells.append(f"{values.mean():.4f}{spread}")
        seconds = [row["train_seconds"] for row in rows if row["train_seconds"] is not None]
        lines.append(
            f"| {name} | {rows[0]['kind']} | " + " | ".join(cells) + f" | {np.mean(seconds):.0f} |"
            if seconds
            else f"| {name} | {rows[0]['kind']} | " + " | ".join(cells) + " | |"
        )
    return "\n".join(lines)


def _load(result: dict) -> str:
    value = result.get("details", {}).get("load_average")
    return f"{value:.2f}" if isinstance(value, int | float) else "not recorded"


def training_time_lines(results: list[dict]) -> list[str]:
    """A markdown table of each run's pipeline training time by stage, with the machine's load."""
    lines = [
        "| seed | pipeline s | co-occurrence s | two-tower s | ranker s | two-tower best epoch | device | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        details = r.get("details", {})
        pipeline = next((n for n, row in r["models"].items() if "->" in n), None)
        stages = details.get(pipeline, {}).get("seconds_by_stage", {}) if pipeline else {}
        tower = next((details[n] for n in r["models"] if n.startswith("two-tower") and "->" not in n), {})
        lines.append(
            f"| {r['seed']} | {r['models'][pipeline]['train_seconds'] if pipeline else ''} | "
            f"{stages.get('cooccurrence', '')} | {stages.get('two-tower', '')} | {stages.get('ranker', '')} | "
            f"{tower.get('best_epoch', '')} | {details.get('device', '')} | {_load(r)} |"
        )
    return lines


def write_benchmark_doc(json_paths: Sequence[Path], out: Path, command: str) -> Path:
    """`docs/benchmarks.md`: the table of one or more benchmark JSON files (seeds), with the command."""
    results = [json.loads(Path(p).read_text()) for p in json_paths]
    seeds = [r["seed"] for r in results]
    text = [
        f"# Model quality benchmark: {Path(results[0]['dataset']).name}",
        "",
        "Generated by `recflow bench quality-doc` from the JSON written by `recflow bench quality`; "
        "do not edit by hand.",
        "",
        f"Data set: `{results[0]['dataset']}` ({results[0]['users']} users, {results[0]['items']} items). "
        f"Seeds: {seeds}" + (" (mean ± standard deviation over seeds)." if len(results) > 1 else "."),
        "",
        "Commands:",
        "",
        "```bash",
        command,
        "```",
        "",
        markdown_table(results),
        "",
        (
            f"Published rows: {source}. "
            if (source := results[0].get("details", {}).get("published_source"))
            else "No published results exist for this data set. "
        )
        + "`popularity-published` leaks the test item (see protocol).",
        "",
        "`train s` is wall-clock time on the machine that ran the command, validation passes included; "
        "the re-ranker's row is the whole pipeline: co-occurrence tuning and fit, two-tower, ranker. Timings from "
        "a shared machine are noisy; 1-minute load average when each run ended: "
        + ", ".join(_load(r) for r in results)
        + ".",
        "",
        f"![HR@10 and NDCG@10 per model](benchmarks/{Path(json_paths[0]).with_suffix('.png').name})",
        "",
        "## Training time",
        "",
        *training_time_lines(results),
        "",
        "## Protocol",
        "",
        results[0]["protocol"],
        "",
        "## Details",
        "",
        "```json",
        json.dumps(results[0].get("details", {}), indent=2, default=str)[:6000],
        "```",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text))
    return out
