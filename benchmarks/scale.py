"""Cost growth, measured: each stage of the platform timed on synthetic worlds of growing size.

`recflow bench scale --json OUT` runs, for every size (users, items and events growing together):
synthetic generation, Great Expectations validation, Feast feature computation and materialization,
point-in-time training data, one epoch of the TFRS two-tower model and the faiss index over its items.
Then, apart from the data sizes, the serving index alone as the catalogue grows 10k -> 1M items: build
seconds, recall@10 and p99 latency of in-process queries at a fixed request rate. Every figure printed
comes from a timer around the platform's own functions; a stage that could not run is reported as not
measured, with the reason, never estimated.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from recflow.settings import Settings

console = Console(stderr=True)

# Each size multiplies users and items; events grow with users (same days, same behaviour per user).
SIZES: dict[str, dict] = {
    "xs": {"n_users": 300, "n_items": 150, "n_days": 7, "holdout_days": 2},
    "s": {"n_users": 1500, "n_items": 750, "n_days": 7, "holdout_days": 2},
    "m": {"n_users": 4700, "n_items": 2400, "n_days": 7, "holdout_days": 2},
    "l": {"n_users": 15000, "n_items": 7500, "n_days": 7, "holdout_days": 2},
}
DEFAULT_SIZES: tuple[str, ...] = ("s", "m", "l")
CATALOGUES: tuple[int, ...] = (10_000, 100_000, 1_000_000)
SERVING_RATE = 200.0  # requests per second, open loop
SERVING_REQUESTS = 2000
GIVE_UP_S = 2.0  # an open-loop latency above this means the index cannot keep up with the rate
FULL_BUILD_MAX_ITEMS = 200_000  # above, the IVF's k-means runs on a sample (see bench_catalogue)


def _timed(fn: Callable, *args, **kwargs) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def _not_measured(reason: str) -> dict:
    return {"measured": False, "reason": reason}


def _peak_rss_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def size_settings(settings: Settings, name: str, root: Path) -> Settings:
    """`settings` with the data shape of size `name` and its own home (and Feast project) under `root`.

    Training data and epochs are measured on every example of the size.
    """
    if name not in SIZES:
        raise ValueError(f"Unknown size {name!r}: expected one of {sorted(SIZES)}")
    data = settings.data.model_copy(update=SIZES[name])
    features = settings.features.model_copy(update={"project": f"recflow_scale_{name}"})
    update = {"home": root / name, "data": data, "features": features}
    return settings.model_copy(update=update)


# ---------------------------------------------------------------- stages of one size


def bench_generation(settings: Settings) -> dict:
    """Synthetic generation, written as immutable raw daily batches."""
    from recflow.data.sources import land_batches

    batches, seconds = _timed(land_batches, settings)
    rows = {t: sum(len(b.read(t)) for b in batches) for t in ("events", "items", "users")}
    total = sum(rows.values())
    return {
        "measured": True,
        "batches": len(batches),
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(total / seconds),
        "_batches": batches,
    }


def bench_validation(settings: Settings, batches: list) -> dict:
    """Great Expectations on every raw batch (routing rows to the validated store or quarantine)."""
    try:
        from features.validation import Validator, validate_batch
    except ImportError as e:
        return _not_measured(f"features.validation is not importable: {e}")
    validator, setup = _timed(Validator, settings)
    t = time.perf_counter()
    outcomes = [validate_batch(validator, b, settings) for b in batches]
    seconds = time.perf_counter() - t
    rows_in = sum(o.rows_in for o in outcomes)
    return {
        "measured": True,
        "setup_seconds": round(setup, 2),
        "seconds": round(seconds, 2),
        "rows": rows_in,
        "rows_valid": sum(o.rows_valid for o in outcomes),
        "batches_quarantined": sum(not o.success for o in outcomes),
        "rows_per_s": round(rows_in / seconds),
    }


def bench_features(settings: Settings) -> tuple[dict, dict, object]:
    """Feast: feature tables computed + definitions applied, then materialization to the online store."""
    try:
        from features.compute import TABLE_NAMES, table_path
        from features.store import materialize, prepare_feature_store
    except ImportError as e:
        reason = f"features.store is not importable: {e}"
        return _not_measured(reason), _not_measured(reason), None
    import pandas as pd

    from recflow.data.batches import list_batches

    store, seconds = _timed(prepare_feature_store, settings)
    rows = {name: len(pd.read_parquet(table_path(settings, name))) for name in TABLE_NAMES}
    total = sum(rows.values())
    computed = {
        "measured": True,
        "engine": settings.features.engine,
        "seconds": round(seconds, 2),
        "rows": rows,
        "rows_per_s": round(total / seconds),
    }
    last = list_batches(settings.validated_dir)[-1].day
    end = datetime.combine(last, datetime.min.time(), tzinfo=UTC) + pd.Timedelta(days=1)
    _, seconds = _timed(materialize, settings, store, end=end)
    materialized = {
        "measured": True,
        "online_store": settings.features.online_store,
        "seconds": round(seconds, 2),
        "offline_rows_read": total,
        "rows_per_s": round(total / seconds),
    }
    return computed, materialized, store


def bench_training(settings: Settings, store, epochs: int = 2) -> tuple[dict, dict, dict, np.ndarray | None]:
    """Point-in-time training data from Feast, then the platform's two-tower fitted for `epochs`.

    Seconds per epoch are those of the last epoch (the first one also traces the graph).

    Returns:
        (training data, training, faiss index) results and the item embeddings.
    """
    try:
        import tensorflow as tf

        from models.bundle import item_vectors
        from models.config import PipelineConfig
        from models.data import build_training_data
        from models.sequential import SequentialRetrieval, training_dataset
    except ImportError as e:
        reason = f"models are not importable: {e}"
        return _not_measured(reason), _not_measured(reason), _not_measured(reason), None

    (data, _), seconds = _timed(build_training_data, settings, store)
    interactions = sum(len(h) for h in data.refit)
    pit = {
        "measured": True,
        "seconds": round(seconds, 2),
        "rows": {"interactions": interactions, "validation_users": len(data.valid_users)},
        "rows_per_s": round(interactions / seconds),
    }

    config = PipelineConfig.from_settings(settings).two_tower
    tf.keras.utils.set_random_seed(settings.seed)
    model = SequentialRetrieval(data.catalogue.attributes, config)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    dataset = training_dataset(data.fit, config, settings.seed, data.fit_weights)
    windows = sum(1 for _ in dataset.unbatch())
    clock = _epoch_clock()
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[clock])
    per_epoch = clock.seconds[-1]
    training = {
        "measured": True,
        "model": "the platform's sequential two-tower (models.sequential), full softmax over the catalogue",
        "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
        "examples": windows,
        "batch_size": config.batch_size,
        "embedding_dim": config.dim,
        "epoch_seconds": [round(s, 2) for s in clock.seconds],
        "seconds_per_epoch": round(per_epoch, 2),
        "examples_per_s": round(windows / per_epoch),
    }

    from models.index import build_index

    embeddings = item_vectors(model)
    index, seconds = _timed(build_index, embeddings, settings.serving)
    faiss_result = {
        "measured": True,
        "items": int(len(embeddings)),
        "kind": index.kind,
        "seconds": round(seconds, 3),
        "recall_at_10": round(index.recall_at_10, 3),
    }
    return pit, training, faiss_result, embeddings


def _epoch_clock():
    """A Keras callback that records the wall time of every epoch in its `seconds` list."""
    import tensorflow as tf

    class EpochClock(tf.keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return EpochClock()


def bench_size(settings: Settings, name: str, root: Path, keep: bool = False) -> dict:
    """Every data-size-dependent stage on the synthetic world of size `name`."""
    s = size_settings(settings, name, root)
    if s.home.exists():
        shutil.rmtree(s.home)
    console.print(f"[bold]size {name}[/]: {SIZES[name]}")
    result: dict = {"size": name, "data": SIZES[name]}
    t0 = time.perf_counter()
    gen = bench_generation(s)
    batches = gen.pop("_batches")
    result["generation"] = gen
    result["events"] = gen["rows"]["events"]
    console.print(f"  generation: {gen['rows']} in {gen['seconds']} s")
    result["validation"] = bench_validation(s, batches)
    console.print(f"  validation: {_brief(result['validation'])}")
    result["features"], result["materialization"], store = bench_features(s)
    console.print(
        f"  features: {_brief(result['features'])}; materialize: {_brief(result['materialization'])}"
    )
    if store is None:
        reason = "no Feast store (features stage not measured)"
        result["training_data"] = result["training"] = result["faiss"] = _not_measured(reason)
    else:
        result["training_data"], result["training"], result["faiss"], _ = bench_training(s, store)
    console.print(f"  training: {_brief(result['training'])}; faiss: {_brief(result['faiss'])}")
    result["seconds_total"] = round(time.perf_counter() - t0, 1)
    result["peak_rss_gib"] = _peak_rss_gib()
    if not keep:
        shutil.rmtree(s.home, ignore_errors=True)
    return result


def _brief(stage: dict) -> str:
    if not stage.get("measured"):
        return f"not measured ({stage.get('reason')})"
    keys = ("seconds", "rows_per_s", "seconds_per_epoch", "examples_per_s", "kind", "recall_at_10")
    return ", ".join(f"{k}={stage[k]}" for k in keys if k in stage)


# ---------------------------------------------------------------- serving index vs catalogue size


def clustered_embeddings(
    n_items: int, n_queries: int, dim: int, seed: int, clusters: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Item and query vectors shaped like a trained two-tower's: taste clusters shared by both, float32.

    Items and queries (users) scatter around the same cluster centres, so a query's best items sit in
    a few clusters, as they do for a user whose taste the model learned.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)

    def draw(n: int) -> np.ndarray:
        return centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)

    return draw(n_items), draw(n_queries)


def open_loop_latencies(
    search: Callable[[np.ndarray], object], queries: np.ndarray, rate: float, give_up: float | None = None
) -> np.ndarray:
    """Latency (s) of each query sent at a fixed rate, measured from its scheduled send time.

    Open loop: when the index is slower than the rate, the queueing delay is part of the latency.
    With `give_up`, stops at the first latency above it (the queue only grows from there) and returns
    the latencies measured so far.
    """
    out = np.empty(len(queries))
    t0 = time.perf_counter()
    for i, q in enumerate(queries):
        due = t0 + i / rate
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        search(q[None, :])
        out[i] = time.perf_counter() - due
        if give_up is not None and out[i] > give_up:
            return out[: i + 1]
    return out


def bench_catalogue(settings: Settings, n_items: int, rate: float, requests: int) -> dict:
    """Build the serving index over `n_items` items and query it at `rate` requests/s, in process."""
    import faiss

    from models.index import build_index

    dim = settings.train.dim
    k = settings.train.candidates
    items, queries = clustered_embeddings(n_items, max(requests, 500), dim, settings.seed)
    ivf_settings = settings.serving.model_copy(update={"index": "ivf"})
    builder = "models.index.build_index"
    try:
        if n_items > FULL_BUILD_MAX_ITEMS:
            nlist = max(1, min(int(4 * np.sqrt(n_items)), n_items // 39))
            builder = (
                f"benchmarks.scale._ivf_index: serving.index's recipe (nlist {nlist}) with k-means on a sample of "
                f"{40 * nlist:,} items and 10 iterations; build_index's k-means on all {n_items:,} items "
                f"(~{2 * 25 * n_items * nlist * dim:.1e} flops) is beyond this benchmark's time budget"
            )
            index, build_seconds = _timed(
                _ivf_index, items, ivf_settings, queries[:500], train_sample=40 * nlist, niter=10
            )
        else:
            index, build_seconds = _timed(build_index, items, ivf_settings, queries[:500])
    except AttributeError as e:  # a serving.index bug must not hide the measurement: say so in the JSON
        console.print(f"[yellow]models.index.build_index failed ({e}); timing the same IVF recipe here[/]")
        builder = f"benchmarks.scale._ivf_index (models.index.build_index raised AttributeError: {e})"
        index, build_seconds = _timed(_ivf_index, items, ivf_settings, queries[:500])
    exact = faiss.IndexFlatIP(dim)
    _, flat_seconds = _timed(exact.add, items)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one request, one core: what a serving worker gets
    try:
        ivf = open_loop_latencies(lambda q: index.search(q, k), queries[:requests], rate, GIVE_UP_S)
        flat = open_loop_latencies(lambda q: exact.search(q, k), queries[:requests], rate, GIVE_UP_S)
    finally:
        faiss.omp_set_num_threads(threads)
    return {
        "items": n_items,
        "dim": dim,
        "k": k,
        "rate_rps": rate,
        "requests": requests,
        "ivf": {
            "built_by": builder,
            "build_seconds": round(build_seconds, 2),
            "recall_at_10": round(index.recall_at_10, 3),
            **index.params,
            "nlist": int(index.index.nlist),
            **_percentiles(ivf, requests),
        },
        "flat": {
            "build_seconds": round(flat_seconds, 3),
            "recall_at_10": 1.0,
            **_percentiles(flat, requests),
        },
    }


def _ivf_index(
    items: np.ndarray, settings, queries: np.ndarray, train_sample: int | None = None, niter: int = 25
):
    """serving.index's IVF recipe (nlist ~ 4 sqrt(n), nprobe doubled until recall@10 meets the target).

    With `train_sample`, k-means runs on that many random items (`niter` iterations) instead of all.
    """
    import faiss

    from models.index import ItemIndex, _ladder, recall_at_k

    n, d = items.shape
    exact = faiss.IndexFlatIP(d)
    exact.add(items)
    _, truth = exact.search(queries, min(10, n))
    nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = niter
    if train_sample is not None and train_sample < n:
        index.train(items[np.random.default_rng(0).choice(n, train_sample, replace=False)])
    else:
        index.train(items)
    index.add(items)
    recall = 0.0
    for nprobe in _ladder(settings.nprobe, nlist):
        index.nprobe = nprobe
        _, found = index.search(queries, truth.shape[1])
        recall = recall_at_k(found, truth)
        if recall >= settings.min_index_recall:
            return ItemIndex(index, "ivf", recall, {"nprobe": nprobe})
    raise ValueError(f"IVF recall@10 {recall:.3f} < {settings.min_index_recall} even at nprobe={nlist}")


def _percentiles(latencies: np.ndarray, requests: int) -> dict:
    ms = latencies * 1000
    out = {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}
    if len(latencies) < requests:  # gave up: the index cannot keep up with the rate
        out |= {"saturated": True, "given_up_after_requests": len(latencies), "p99_ms": None}
    return out


def _latency_cell(point: dict) -> str:
    if point.get("saturated"):
        return f"saturated: > {GIVE_UP_S * 1000:g} ms at request {point['given_up_after_requests']}"
    return f"{point['p50_ms']} / {point['p99_ms']}"


# ---------------------------------------------------------------- the command


def run_scale_bench(
    settings: Settings,
    json_out: Path,
    sizes: list[str] | None = None,
    catalogues: list[int] | None = None,
    rate: float = SERVING_RATE,
    requests: int = SERVING_REQUESTS,
    keep: bool = False,
    docs: Path | None = None,
    warmup: bool = True,
    resume: bool = False,
) -> dict:
    """Measure every stage at growing sizes; write the JSON to `json_out` and the curves beside it (.png).

    Args:
        settings: platform settings (online store, engine, model hyperparameters are used as they are).
        json_out: where the JSON goes; the PNG is `json_out` with the suffix `.png`.
        sizes: names from `SIZES`, smallest first (default s, m, l: 10x users, items and events).
        catalogues: catalogue sizes for the serving index (default 10k, 100k, 1M).
        rate: request rate of the serving measurement, requests/s.
        requests: requests per catalogue size.
        keep: keep each size's generated data under `settings.home / "scale"`.
        docs: a Markdown file whose block between `<!-- scale-bench:begin -->` and
            `<!-- scale-bench:end -->` is replaced by the tables, exponents and figure of this run.
        warmup: run size xs once first, untimed in the curves (imports, first Feast/GX/TF calls).
        resume: reuse the sizes and catalogue points of `<json_out>.partial.json` (written after each
            one) that have the same parameters; measure the rest.

    Returns:
        The results written to the JSON.
    """
    sizes = list(sizes or DEFAULT_SIZES)
    catalogues = list(catalogues or CATALOGUES)
    root = (settings.home / "scale").resolve()
    started = time.perf_counter()
    results = {
        "command": f"recflow bench scale --json {json_out} --sizes {','.join(sizes)} "
        f"--catalogues {','.join(str(c) for c in catalogues)}" + (f" --docs {docs}" if docs else ""),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": _cpus(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "online_store": settings.features.online_store,
            "feature_engine": settings.features.engine,
            "embedding_dim": settings.train.dim,
            "batch_size": settings.train.batch_size,
            "nprobe": settings.serving.nprobe,
            "min_index_recall": settings.serving.min_index_recall,
        },
    }
    partial = json_out.with_suffix(".partial.json")
    done = json.loads(partial.read_text()) if resume and partial.exists() else {}
    done_sizes = {(r["size"], json.dumps(r["data"])): r for r in done.get("sizes", [])}
    done_points = {(c["items"], c["rate_rps"], c["requests"]): c for c in done.get("catalogue", [])}
    todo = [n for n in sizes if (n, json.dumps(SIZES[n])) not in done_sizes]
    if warmup and todo:  # first calls pay imports, registry and context creation: keep them out of the curves
        console.print("[dim]warm-up run on size xs (reported under 'warmup', not in the curves)[/]")
        results["warmup"] = bench_size(settings, "xs", root / "warmup")
    results["sizes"], results["catalogue"] = [], []
    for name in sizes:
        reused = done_sizes.get((name, json.dumps(SIZES[name])))
        results["sizes"].append(reused or bench_size(settings, name, root, keep=keep))
        _checkpoint(partial, results)
    for n in catalogues:
        reused = done_points.get((n, rate, requests))
        if reused is None:
            console.print(f"[bold]catalogue {n:,} items[/]: index build + {requests} queries at {rate:g}/s")
        results["catalogue"].append(reused or bench_catalogue(settings, n, rate, requests))
        _checkpoint(partial, results)
    if done:
        results["resumed_from"] = {"file": str(partial), "started": done.get("started")}
    results["serving_http"] = _not_measured(
        "the HTTP path needs a packaged model per catalogue size; `recflow bench serving` measures "
        "POST /recommend on the packaged bento, the index alone is measured here in-process"
    )
    results["growth_exponents"] = growth_exponents(results["sizes"])
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds_total"] = round(time.perf_counter() - started, 1)
    results["peak_rss_gib"] = _peak_rss_gib()
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(results, indent=2))
    png = json_out.with_suffix(".png")
    plot_curves(results, png)
    print_tables(results)
    console.print(f"wrote {json_out} and {png}")
    if docs is not None:
        update_docs(docs, markdown_report(results, Path(os.path.relpath(png, docs.parent))))
        console.print(f"updated the generated block of {docs}")
    partial.unlink(missing_ok=True)
    return results


def _checkpoint(path: Path, results: dict) -> None:
    """Write what is measured so far, so a run cut short can go on with `resume`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


# ---------------------------------------------------------------- output


STAGES: tuple[tuple[str, str], ...] = (
    ("generation", "generate"),
    ("validation", "validate (GX)"),
    ("features", "feature tables"),
    ("materialization", "materialize"),
    ("training_data", "PIT training data"),
)


def print_tables(results: dict) -> None:
    """The two tables of the benchmark, as docs/scaling.md shows them."""
    table = Table(title="cost per stage (rows/s, seconds)")
    table.add_column("size")
    table.add_column("users/items/events")
    for _, label in STAGES:
        table.add_column(label)
    table.add_column("train s/epoch (ex/s)")
    table.add_column("faiss build s")
    for r in results["sizes"]:
        d = r["data"]
        cells = [r["size"], f"{d['n_users']:,}/{d['n_items']:,}/{r['events']:,}"]
        for key, _ in STAGES:
            st = r[key]
            cells.append(f"{st['rows_per_s']:,} ({st['seconds']} s)" if st.get("measured") else "n/m")
        tr, fx = r["training"], r["faiss"]
        cells.append(f"{tr['seconds_per_epoch']} ({tr['examples_per_s']:,})" if tr.get("measured") else "n/m")
        cells.append(f"{fx['seconds']} ({fx['kind']})" if fx.get("measured") else "n/m")
        table.add_row(*cells)
    Console(width=180).print(table)

    table = Table(title="serving index vs catalogue (in-process, 1 thread, open loop)")
    for col in (
        "items",
        "rate/s",
        "IVF build s",
        "nprobe",
        "recall@10",
        "IVF p50/p99 ms",
        "exact p50/p99 ms",
    ):
        table.add_column(col)
    for c in results["catalogue"]:
        ivf, flat = c["ivf"], c["flat"]
        table.add_row(
            f"{c['items']:,}",
            f"{c['rate_rps']:g}",
            f"{ivf['build_seconds']}",
            str(ivf.get("nprobe", "")),
            f"{ivf['recall_at_10']}",
            _latency_cell(ivf),
            _latency_cell(flat),
        )
    Console(width=180).print(table)


def growth_exponents(sizes: list[dict]) -> dict[str, float]:
    """b in seconds ~ events^b per stage, between the smallest and the largest size measured.

    b = 1 is linear; below 1 a fixed cost still dominates; above 1 the stage grows faster than the data.
    """
    out = {}
    keys = [k for k, _ in STAGES] + ["training"]
    for key in keys:
        points = [
            (r["events"], r[key]["seconds_per_epoch" if key == "training" else "seconds"])
            for r in sizes
            if r[key].get("measured")
        ]
        if len(points) >= 2 and points[0][0] != points[-1][0] and points[0][1] > 0:
            (e0, t0), (e1, t1) = points[0], points[-1]
            out[key] = round(float(np.log(t1 / t0) / np.log(e1 / e0)), 2)
    return out


def markdown_report(results: dict, png: Path) -> str:
    """The run's tables, growth exponents and figure as Markdown (the block docs/scaling.md shows)."""
    lines = [
        f"Generated by `{results['command']}` on {results['started']} "
        f"({results['machine']['cpus']} CPUs, load average "
        f"{results['machine']['load_average_at_start'][0]} at start, online store {results['settings']['online_store']}, "
        f"feature engine {results['settings']['feature_engine']}); total {results['seconds_total']} s, "
        f"peak memory {results['peak_rss_gib']} GiB.",
        "",
        "| size | users / items / events | "
        + " | ".join(label for _, label in STAGES)
        + " | train s/epoch (examples/s) | faiss build s (kind) |",
        "|" + "---|" * (len(STAGES) + 4),
    ]
    for r in results["sizes"]:
        d = r["data"]
        cells = [r["size"], f"{d['n_users']:,} / {d['n_items']:,} / {r['events']:,}"]
        for key, _ in STAGES:
            st = r[key]
            cells.append(
                f"{st['rows_per_s']:,} rows/s ({st['seconds']} s)" if st.get("measured") else "not measured"
            )
        tr, fx = r["training"], r["faiss"]
        cells.append(
            f"{tr['seconds_per_epoch']} ({tr['examples_per_s']:,})" if tr.get("measured") else "not measured"
        )
        cells.append(
            f"{fx['seconds']} ({fx['kind']}, {fx['items']:,} items)" if fx.get("measured") else "not measured"
        )
        lines.append("| " + " | ".join(cells) + " |")
    exps = results.get("growth_exponents", {})
    labels = dict(STAGES) | {"training": "train epoch"}
    lines += ["", "Growth exponent b (seconds ~ events^b, smallest to largest size):", ""]
    lines += ["| " + " | ".join(labels[k] for k in exps) + " |", "|" + "---|" * len(exps)]
    lines += ["| " + " | ".join(f"{v:.2f}" for v in exps.values()) + " |", ""]
    lines += [
        "| catalogue items | rate req/s | IVF build s | nlist / nprobe | recall@10 | IVF p50 / p99 ms"
        " | exact p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in results["catalogue"]:
        ivf, flat = c["ivf"], c["flat"]
        lines.append(
            f"| {c['items']:,} | {c['rate_rps']:g} | {ivf['build_seconds']} | {ivf['nlist']} / "
            f"{ivf.get('nprobe', '')} | {ivf['recall_at_10']} | {_latency_cell(ivf)} | {_latency_cell(flat)} |"
        )
    for c in results["catalogue"]:
        if c["ivf"].get("built_by", "models.index.build_index") != "models.index.build_index":
            lines += ["", f"{c['items']:,} items: index built by {c['ivf']['built_by']}."]
    http = results.get("serving_http", {})
    if not http.get("measured", True):
        lines += ["", f"HTTP path: not measured here: {http['reason']}."]
    lines += ["", f"![cost curves]({png.as_posix()})"]
    return "\n".join(lines)


BEGIN, END = "<!-- scale-bench:begin -->", "<!-- scale-bench:end -->"


def update_docs(doc: Path, block: str) -> None:
    """Replace the generated block of `doc` (between the markers) by `block`; append it if absent."""
    text = doc.read_text() if doc.exists() else ""
    generated = f"{BEGIN}\n{block}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + generated + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + ("\n\n" if text else "") + generated + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def plot_curves(results: dict, path: Path) -> None:
    """Throughput per stage and training cost against events; index build and p99 against catalogue."""
    from recflow.charts import pyplot, save_figure

    plt = pyplot()

    sizes = results["sizes"]
    events = [r["events"] for r in sizes]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    for key, label in STAGES:
        points = [
            (e, r[key]["rows_per_s"]) for e, r in zip(events, sizes, strict=True) if r[key].get("measured")
        ]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    trained = [
        (e, r["training"]) for e, r in zip(events, sizes, strict=True) if r["training"].get("measured")
    ]
    if trained:
        ax.plot(
            [e for e, _ in trained], [t["examples_per_s"] for _, t in trained], marker="s", label="train ex/s"
        )
    ax.set(xscale="log", yscale="log", xlabel="events", ylabel="rows/s", title="throughput per stage")
    ax.legend(fontsize=8)

    ax = axes[1]
    for key, label in STAGES:
        points = [
            (e, r[key]["seconds"]) for e, r in zip(events, sizes, strict=True) if r[key].get("measured")
        ]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    if trained:
        ax.plot(
            [e for e, _ in trained], [t["seconds_per_epoch"] for _, t in trained], marker="s", label="1 epoch"
        )
    ax.set(xscale="log", yscale="log", xlabel="events", ylabel="seconds", title="wall time per stage")
    ax.legend(fontsize=8)

    ax = axes[2]
    cat = results["catalogue"]
    if cat:
        items = [c["items"] for c in cat]
        nan = float("nan")  # a saturated point has no p99: left out of the line
        ax.plot(items, [c["ivf"]["p99_ms"] or nan for c in cat], marker="o", label="IVF p99 ms")
        ax.plot(items, [c["flat"]["p99_ms"] or nan for c in cat], marker="o", label="exact p99 ms")
        ax.plot(items, [c["ivf"]["build_seconds"] for c in cat], marker="s", ls="--", label="IVF build s")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="catalogue items",
            title=f"serving at {cat[0]['rate_rps']:g} req/s",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
