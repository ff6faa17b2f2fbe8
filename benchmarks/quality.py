"""Model quality on real data: leave-one-out full-ranking HR@K / NDCG@K of baselines and the platform.

The platform's row is the model family the platform serves, fitted by the same procedure
(`models.pipeline.fit_pipeline`) and scored through the same path (`models.scorer.BatchScorer`) as
in `recflow run` and behind `POST /recommend`; only the split differs (leave-one-out by order).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console

from models.callbacks import write_scalar, write_text
from models.catalogue import Catalogue
from models.config import PipelineConfig
from models.evaluate import KS, metrics_from_ranks, ranks_in_lists, target_ranks
from models.hardware import choose_strategy, device_description, training_precision
from models.pipeline import FitData, fit_pipeline
from models.scorer import BatchScorer
from models.sequential import SequentialConfig, fit_sequential, refit_sequential
from recflow.data.amazon import amazon_items, benchmark_sequences, find_sequence_file, read_amazon_sequences
from recflow.provenance import code_version
from recflow.settings import ServingSettings, Settings


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


def evaluate(
    score_fn: Callable[[list[np.ndarray], np.ndarray], np.ndarray],
    split: Split,
    batch_size: int = 2048,
    ks: Sequence[int] = KS,
) -> dict[str, float]:
    """Score every item for every user in batches, rank the targets (history masked), return the metrics.

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
    "model and baseline: hyperparameters and epochs are chosen on the validation targets with models "
    "fitted on the training items only; the test figures come from models REFIT with those choices on "
    "each user's sequence without its test item (training + validation items), and the query reads "
    "that same sequence. Popularity and co-occurrence are refit by recounting. The platform row is "
    "the package `recflow run` builds (models.pipeline.fit_pipeline: co-occurrence grid searched on "
    "the validation targets of up to 8000 users, the two-tower early-stopped on validation NDCG@10 "
    "and refit warm for {refit_epochs} epochs (chosen once with a nested split: `recflow bench "
    "refit-study`), the ranker trained on half of the validation users' merged candidates, its "
    "epochs and its place chosen on the other half, then trained on all of them), scored through "
    "the service's scoring path (models.scorer.BatchScorer: two-tower ANN and co-occurrence "
    "candidates, the history as the seen filter, the ranker when it earned its place). No test "
    "target is used by any fit. popularity-published counts every item of every sequence (test "
    "items included): it leaks the test item and only checks that metrics and masking match the "
    "published PopRec."
)
METRICS: tuple[str, ...] = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20")


def benchmark_catalogue(dataset: Path) -> Catalogue:
    """The platform's catalogue of an Amazon data set (the loader's items: every attribute a token),
    in the index order of `benchmark_sequences`."""
    data = read_amazon_sequences(dataset)
    return Catalogue.from_items(amazon_items(data, datetime(2000, 1, 1, tzinfo=UTC)))


def leave_one_out_fit_data(catalogue: Catalogue, train, valid: Split, refit) -> FitData:
    """The leave-one-out split as the platform's fit input: every user validates (nobody is kept out
    for a report: the test split is the report), the whole history is the seen filter."""
    n = len(catalogue)
    popular = {
        "global": catalogue.ids(np.argsort(-popularity_scores(refit, n), kind="stable")[:100]),
        "by_region": {},
    }
    return FitData(
        catalogue=catalogue,
        fit=list(train),
        refit=list(refit),
        valid_users=[str(u) for u in range(len(valid.targets))],
        valid_history=list(valid.histories),
        valid_exclude=[np.unique(h) for h in valid.histories],
        valid_relevant=[np.array([t]) for t in valid.targets],
        popular_fit=popular,
        popular_refit=popular,
    )


def run_quality_bench(
    settings: Settings,
    dataset: Path,
    json_out: Path,
    seed: int = 42,
    max_users: int | None = None,
    config: PipelineConfig | None = None,
) -> dict:
    """Run the leave-one-out full-ranking benchmark of baselines and the platform's package.

    Prints one line per model, writes the JSON result, a PNG chart beside it and TensorBoard
    logs under `settings.reports_dir / "bench_quality"`.

    Args:
        settings: platform settings (hyperparameters, artefact paths).
        dataset: a folder with `<Name>.txt` (and `<Name>_item2attributes.json`).
        json_out: where the JSON result goes.
        seed: random seed of every trained model.
        max_users: evaluate on the first N users only (quick iterations; the JSON says so).
        config: the family's hyperparameters (default: what `settings.train` asks for).

    Returns:
        The JSON result as a dict.
    """
    import tensorflow as tf

    dataset = Path(dataset)
    sequences, _, item_ids = benchmark_sequences(dataset)
    catalogue = benchmark_catalogue(dataset)
    if list(catalogue.item_ids) != list(item_ids):
        raise ValueError(f"{dataset}: the catalogue and the sequences disagree on item order")
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
    report(
        "popularity",
        "baseline",
        evaluate(lambda h, u: np.tile(pop_refit, (len(u), 1)), test),
        seconds,
        validation=evaluate(lambda h, u: np.tile(pop_valid, (len(u), 1)), valid),
    )

    config = config or PipelineConfig.from_settings(settings)
    config = replace(config, seed=seed, report_share=0.0, two_tower=replace(config.two_tower, seed=seed))

    # the platform: the package recflow run builds, scored through the service's path
    t = time.perf_counter()
    strategy = choose_strategy(settings.train)
    metadata = {
        "name": "recflow-recommender",
        "version": f"bench-{dataset.name}-seed{seed}",
        "created_at": datetime.now(UTC).isoformat(),
        "data_window": {"start": "leave-one-out", "end": "leave-one-out"},
        "validation_window": {"start": "leave-one-out", "end": "leave-one-out"},
        "feature_services": {},
        "code_version": code_version(),
        "device": device_description(),
    }
    with training_precision(settings.train) as precision:  # RECFLOW_TRAIN__MIXED_PRECISION, __XLA
        fitted = fit_pipeline(
            leave_one_out_fit_data(catalogue, train, valid, refit),
            config,
            metadata,
            strategy=strategy,
            log_dir=run_dir / "tensorboard",
            progress=lambda line: console.print(f"  {line}"),
        )
    seconds = time.perf_counter() - t
    fitted.serving.save(run_dir / "package")
    scorer = BatchScorer(fitted.serving, serving=ServingSettings(index="flat"))
    ranked = scorer.rank(refit, [np.unique(h) for h in refit], None, max(KS))
    lists = np.array([r.rows for r in ranked])
    ranks = ranks_in_lists(lists, test.targets)
    stages = fitted.stages
    report(
        "platform",
        "platform",
        metrics_from_ranks(ranks),
        seconds,
        stages=stages,
        seconds_by_stage=fitted.seconds,
        config=config.to_dict(),
        candidate_recall_test=float(
            np.mean([t in r.rows for t, r in zip(test.targets, ranked, strict=True)])
        ),
    )
    # its candidate sources alone: co-occurrence (tuned on the validation targets inside the fit, the
    # classic strong baseline on these files) and the two-tower
    cooc = fitted.serving.cooccurrence
    report(
        "cooccurrence",
        "baseline",
        evaluate(lambda h, u: cooc.scores(h), test),
        fitted.seconds.get("co-occurrence", 0.0),
        params=stages["co-occurrence"]["params"],
    )
    two_tower = fitted.serving.two_tower
    items = two_tower.item_tower.all_items()
    report(
        "two-tower",
        "component",
        evaluate(lambda h, u: two_tower.scores(h, items), test),
        fitted.seconds.get("two-tower", 0.0) + fitted.seconds.get("refit", 0.0),
        best_epoch=stages["two-tower"]["best_epoch"],
    )

    table = published_results()
    published = find_sequence_file(dataset).stem == table["dataset"]  # the table is Beauty's only
    for name, metrics in table["models"].items() if published else ():
        models[f"{name} (published)"] = {"kind": "reference", **metrics, "train_seconds": None}

    result = {
        "dataset": str(dataset),
        "protocol": PROTOCOL.format(refit_epochs=config.two_tower.refit_epochs),
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
    from recflow.charts import pyplot, save_figure

    plt = pyplot()

    names = sorted(result["models"], key=lambda n: result["models"][n]["hr@10"])
    colours = {"baseline": "#888888", "component": "#9ecae1", "platform": "#1f77b4", "reference": "#d9a441"}
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
    save_figure(fig, path)
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
    """A markdown table of each run's platform training time by step, with the machine's load."""
    steps = ("co-occurrence", "two-tower", "ranker", "report", "refit")
    lines = [
        "| seed | platform s | "
        + " | ".join(f"{s} s" for s in steps)
        + " | two-tower best epoch | ranker serves | device | load |",
        "|---|---|" + "---|" * len(steps) + "---|---|---|---|",
    ]
    for r in results:
        details = r.get("details", {}).get("platform", {})
        by_step = details.get("seconds_by_stage", {})
        stages = details.get("stages", {})
        lines.append(
            f"| {r['seed']} | {r['models'].get('platform', {}).get('train_seconds', '')} | "
            + " | ".join(str(by_step.get(s, "")) for s in steps)
            + f" | {stages.get('two-tower', {}).get('best_epoch', '')} | {stages.get('ranker', {}).get('serving', '')}"
            f" | {r.get('details', {}).get('device', '')} | {_load(r)} |"
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
        "the platform's row is the whole package: co-occurrence tuning and fit, two-tower, ranker, refit. Timings from "
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
