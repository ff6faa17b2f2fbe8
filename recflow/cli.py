"""The `recflow` command line: run the pipeline, serve, benchmark, simulate, replay, bring the platform up.

Settings are loaded once here (profile, then `RECFLOW_*` environment, then these options) and passed
down. Heavy libraries are imported inside the commands, after the process environment is prepared.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import typer

from recflow.experiment_cli import experiment_app
from recflow.quiet import quiet_library_warnings, without_banners
from recflow.settings import REPLAY_HOLDOUT_DAYS, Profile, Settings, load_settings

app = typer.Typer(help="recflow: workflow-orchestrated recommendations.", no_args_is_help=True)
bench = typer.Typer(help="Benchmarks that print figures and write JSON.", no_args_is_help=True)
app.add_typer(bench, name="bench")
app.add_typer(experiment_app, name="experiment")

ProfileOpt = Annotated[Profile | None, typer.Option(help="data/training size: tiny, small or default")]
HomeOpt = Annotated[Path | None, typer.Option(help="artefact root (RECFLOW_HOME), default .recflow")]
DataOpt = Annotated[
    str | None,
    typer.Option("--data", help="'synthetic', 'amazon:PATH', 'completejourney' or 'completejourney:DIR'"),
]
HoldoutDaysOpt = Annotated[
    int,
    typer.Option(
        help="newest days of a training window held out for its validation package's choices and the "
        "gate (a week: every weekday, about four times one day's households)",
        min=1,
    ),
]
RequireOnlineWinOpt = Annotated[
    bool,
    typer.Option(
        "--require-online-win",
        help="a challenger that passes the offline gate is not promoted but started as an online "
        "experiment, promoted only if it wins (experiments.require_online_win)",
    ),
]


def prepare_environment(settings: Settings) -> None:
    """Process-wide switches the libraries read at import time. Call before importing them."""
    quiet_library_warnings()  # the stack's deprecation chatter would bury the progress lines
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home.resolve()))
    prefect_home = (settings.home / "prefect").resolve()
    prefect_home.mkdir(parents=True, exist_ok=True)  # the temporary server's SQLite database lives here
    os.environ.setdefault("PREFECT_HOME", str(prefect_home))
    # the temporary server migrates a fresh database on first start: 20 s is short on a busy 2-core box
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _settings(
    profile: Profile | None, home: Path | None, data: str | None = None, require_online_win: bool = False
) -> Settings:
    settings = cli_settings(profile, home, data, require_online_win)
    prepare_environment(settings)
    return settings


def _parse_date(value: str, option: str) -> date:
    """`value` as a date, or a usage error naming `option`."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option) from None


def cli_settings(
    profile: Profile | None, home: Path | None, data: str | None = None, require_online_win: bool = False
) -> Settings:
    """The settings of a command: the profile, then `RECFLOW_*` environment, then these options."""
    overrides: dict = {}
    if home is not None:
        overrides["home"] = home
    if data is not None:
        overrides["data"] = {"source": data}
    if require_online_win:  # without the flag, the setting (RECFLOW_EXPERIMENTS__REQUIRE_ONLINE_WIN) holds
        overrides["experiments"] = {"require_online_win": True}
    return load_settings(profile, **overrides)


@app.command()
def run(
    summary: Annotated[Path | None, typer.Option(help="write the run summary as JSON here")] = None,
    profile: ProfileOpt = None,
    home: HomeOpt = None,
    data: DataOpt = None,
    require_online_win: RequireOnlineWinOpt = False,
) -> None:
    """Run the whole pipeline once: land -> validate -> features -> train -> package -> drift check."""
    # the terminal shows the stages, their progress and the summary; Prefect's per-task INFO lines
    # still reach the flow run's logs in the Prefect UI (its API handler), only not the console
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    settings = _settings(profile, home, data, require_online_win)
    from flows.pipeline import run_pipeline

    with without_banners():
        result = run_pipeline(settings, summary_path=summary)
    raise typer.Exit(0 if result.get("status") == "ok" else 1)


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="port (RECFLOW_SERVING__PORT, default 3000)")] = None,
    profile: ProfileOpt = None,
    home: HomeOpt = None,
) -> None:
    """Serve the latest packaged models over HTTP (POST /recommend)."""
    settings = _settings(profile, home)
    if port is not None:
        settings.serving.port = port
    from serving.server import serve as serve_http

    serve_http(settings)


@app.command()
def forget(
    user: Annotated[str, typer.Option("--user", help="the user id to erase everywhere")],
    profile: ProfileOpt = None,
    home: HomeOpt = None,
) -> None:
    """Erase a user from every store under the home and the online store; append to the audit log."""
    from recflow.erasure import forget_user

    report = forget_user(_settings(profile, home), user)
    for path, count in report.files.items():
        print(f"{count:>8}  {path}")
    print(f"{report.redis_keys:>8}  redis keys")
    print(
        f"erased user {report.user_hash[:16]}...: {report.removed} rows/lines/keys removed; audit log appended"
    )
    if report.unhandled:
        print("still containing the id (not erased):", ", ".join(report.unhandled))
        raise typer.Exit(1)


@experiment_app.command("readout")
def readout(
    json_out: Annotated[Path, typer.Option("--json", help="write the readout here (a PNG chart beside it)")],
    experiment: Annotated[
        str | None, typer.Option(help="experiment id; the running or last one by default")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="significance level (experiments.alpha)")] = None,
    conclude: Annotated[
        bool, typer.Option(help="promote a winning challenger and stop; stop if the champion wins")
    ] = False,
    profile: ProfileOpt = None,
    home: HomeOpt = None,
) -> None:
    """Per variant: users, impressions, CTR, conversion, revenue per user with intervals; tests; winner."""
    import json

    from flows.readout import experiment_readout

    settings = _settings(profile, home)
    with without_banners():
        result = experiment_readout(settings, json_out, experiment, alpha or settings.experiments.alpha)
    for variant, figures in result["variants"].items():
        shown = {
            k: figures.get(k) for k in ("users", "impressions", "clicks", "purchases", "ctr", "conversion")
        }
        print(variant, json.dumps(shown))
    tests = result["tests"]["conversion"]
    print(
        f"conversion p = {tests['p_value']}; sample ratio {result['guardrails']['sample_ratio']}; "
        f"winner: {result['winner']}"
    )
    if conclude:
        from flows.promotion import conclude_experiment

        print(conclude_experiment(settings, result))


@bench.command("experiments")
def bench_experiments(
    json_out: Annotated[Path, typer.Option("--json", help="write the rates here")],
    runs: Annotated[int, typer.Option(help="simulated experiments per kind (A/A, A/B)")] = 200,
    alpha: Annotated[float, typer.Option(help="significance level of the readout")] = 0.05,
) -> None:
    """Simulated market: the readout's A/A false-positive rate and A/B power at the planned days."""
    from benchmarks.experiments import run_bench

    run_bench(json_out, runs=runs, alpha=alpha)


@bench.command("quality")
def bench_quality(
    dataset: Annotated[
        str,
        typer.Option(
            help="leave-one-out: a folder with <Name>.txt (and <Name>_item2attributes.json); "
            "next-basket: 'completejourney' or 'completejourney:DIR'"
        ),
    ],
    json_out: Annotated[Path, typer.Option("--json", help="write results here")],
    protocol: Annotated[
        str, typer.Option(help="'leave-one-out' (Amazon format) or 'next-basket' (Complete Journey baskets)")
    ] = "leave-one-out",
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    home: HomeOpt = None,
) -> None:
    """Model quality: leave-one-out full ranking (HR@K, NDCG@K) or next-basket (Recall, NDCG, PHR @10)."""
    settings = _settings(None, home)
    if protocol == "next-basket":
        if dataset.split(":", 1)[0] != "completejourney":
            raise typer.BadParameter(
                f"--protocol next-basket reads baskets from 'completejourney' or 'completejourney:DIR', "
                f"got {dataset!r}",
                param_hint="--dataset",
            )
        from benchmarks.next_basket import run_next_basket_bench
        from benchmarks.next_basket_platform import PlatformRow

        command = f"recflow bench quality --dataset {dataset} --protocol next-basket --json {json_out}"
        run_next_basket_bench(
            dataset,
            json_out,
            seed=seed,
            command=command,
            platform_for=lambda data: PlatformRow(
                dataset, data.items, settings.model_copy(update={"seed": seed})
            ),
        )
        return
    if protocol != "leave-one-out":
        raise typer.BadParameter(
            f"unknown protocol {protocol!r}: expected 'leave-one-out' or 'next-basket'",
            param_hint="--protocol",
        )
    from benchmarks.quality import run_quality_bench

    run_quality_bench(settings, Path(dataset), json_out, seed=seed)


@bench.command("served-quality")
def bench_served_quality(
    dataset: Annotated[
        str,
        typer.Option(
            help="folder with <Name>.txt (and <Name>_item2attributes.json), or completejourney[:DIR] "
            "(next baskets after --cut)"
        ),
    ],
    json_out: Annotated[Path, typer.Option("--json", help="write results here (a PNG beside it)")],
    concurrency: Annotated[int, typer.Option(help="requests in flight against the service")] = 8,
    home: Annotated[
        Path | None, typer.Option(help="keep the trained platform here (default: a temporary home)")
    ] = None,
    cut: Annotated[
        str | None,
        typer.Option(help="completejourney: the first day the platform does not see (default 2017-12-01)"),
    ] = None,
    profile: ProfileOpt = None,
) -> None:
    """Run the platform on what it may know, ask the real service over HTTP for everyone, score the answers.

    An Amazon folder: each user's last item is held back. `completejourney[:DIR]`: the platform runs on the
    baskets before --cut and each household's first basket from it is the target, beside the next-basket
    baselines fitted on the same baskets."""
    settings = _settings(profile, None)
    if dataset.split(":", 1)[0] == "completejourney":
        from benchmarks.next_basket import TEMPORAL_CUT
        from benchmarks.served_next_basket import run_served_next_basket_bench

        first = _parse_date(cut, "--cut") if cut else TEMPORAL_CUT
        run_served_next_basket_bench(
            settings, dataset, json_out, cut=first, concurrency=concurrency, home=home
        )
        return
    if cut is not None:
        raise typer.BadParameter("--cut applies to --dataset completejourney[:DIR] only", param_hint="--cut")
    from benchmarks.served_quality import run_served_quality_bench

    run_served_quality_bench(settings, Path(dataset), json_out, concurrency=concurrency, home=home)


@bench.command("refit-study")
def bench_refit_study(
    dataset: Annotated[Path, typer.Option(help="folder with <Name>.txt (and <Name>_item2attributes.json)")],
    json_out: Annotated[Path, typer.Option("--json", help="write results here")],
    epochs: Annotated[
        int, typer.Option(help="epochs of the inner fit and of the from-scratch reference")
    ] = 16,
) -> None:
    """Choose the two-tower's warm refit epochs on validation targets (nested split; no test item is read)."""
    _settings(None, None)
    from benchmarks.quality import run_refit_study
    from models.sequential import SequentialConfig

    run_refit_study(dataset, json_out, config=SequentialConfig(max_epochs=epochs))


@bench.command("quality-doc")
def bench_quality_doc(
    json_files: Annotated[list[Path], typer.Argument(help="JSON files of `bench quality`, one per seed")],
    out: Annotated[Path, typer.Option(help="markdown file to write")] = Path("docs/benchmarks.md"),
    dataset: Annotated[
        str, typer.Option(help="data set path shown in the commands")
    ] = "../shared/datasets/amazon-beauty",
    setup: Annotated[
        str | None,
        typer.Option(help="the command that made the data set, shown first (e.g. synthetic-dataset)"),
    ] = None,
) -> None:
    """Write the quality table (mean ± spread over the seeds of the JSON files) with the commands that made it."""
    import json

    from benchmarks.quality import write_benchmark_doc

    seeds = [json.loads(p.read_text())["seed"] for p in json_files]
    lines = [setup] if setup else []
    lines += [
        f"recflow bench quality --dataset {dataset} --json {p} --seed {s}"
        for p, s in zip(json_files, seeds, strict=True)
    ]
    lines.append(f"recflow bench quality-doc {' '.join(map(str, json_files))} --out {out}")
    write_benchmark_doc(json_files, out, "\n".join(lines))
    typer.echo(f"wrote {out}")


@bench.command("synthetic-dataset")
def bench_synthetic_dataset(
    out: Annotated[Path, typer.Option(help="folder to write <name>.txt and <name>_item2attributes.json")],
    name: Annotated[str, typer.Option(help="data set name")] = "Synthetic",
    users: Annotated[int, typer.Option(help="users simulated (before the 5-core filter)")] = 20000,
    items: Annotated[int, typer.Option(help="catalogue size")] = 8000,
    days: Annotated[int, typer.Option(help="days simulated")] = 30,
    seed: Annotated[int, typer.Option(help="generator seed")] = 7,
) -> None:
    """Write a synthetic data set in the Amazon benchmark format (add-to-carts and purchases, 5-core).

    A second data set for `bench quality`, with a different shape from Beauty, to check that the
    platform's lead does not depend on one data set.
    """
    from recflow.data.amazon import read_amazon_sequences, write_amazon_sequences
    from recflow.data.synthetic import generate

    settings = _settings(None, None)
    cfg = settings.data.model_copy(update={"n_users": users, "n_items": items, "n_days": days})
    _, batches = generate(cfg, seed)
    import pandas as pd

    events = pd.concat([b["events"] for b in batches], ignore_index=True)
    catalogue = pd.concat([b["items"] for b in batches], ignore_index=True)
    txt = write_amazon_sequences(events, catalogue, out, name)
    written = read_amazon_sequences(txt)  # what `bench quality` will read
    interactions = sum(len(s) for s in written.sequences)
    typer.echo(
        f"wrote {txt}: {len(written.users)} users, {len(written.items)} items, "
        f"{interactions} interactions ({interactions / len(written.users):.1f} per user)"
    )


@bench.command("validation")
def bench_validation(
    json_out: Annotated[Path, typer.Option("--json", help="write results here")],
    data: DataOpt = None,
    days: Annotated[int | None, typer.Option(help="validate only the first N batches")] = None,
    profile: Annotated[bool, typer.Option(help="report where the time goes (cProfile)")] = False,
    days_per_run: Annotated[
        int | None,
        typer.Option(help="days per Great Expectations run (RECFLOW_DATA__VALIDATION_DAYS_PER_RUN)"),
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="an earlier run's JSON, compared with in the Markdown beside --json")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Great Expectations throughput (rows/s per table) on every daily batch of a source."""
    settings = _settings(None, home, data)
    if days_per_run is not None:
        settings.data.validation_days_per_run = days_per_run
    from benchmarks.validation import run_validation_bench

    command = " ".join(
        ["recflow bench validation", f"--json {json_out}"]
        + ([f"--data {data}"] if data else [])
        + ([f"--days {days}"] if days else [])
        + (["--profile"] if profile else [])
        + ([f"--days-per-run {days_per_run}"] if days_per_run else [])
        + ([f"--home {home}"] if home else [])
        + ([f"--baseline {baseline}"] if baseline else [])
    )
    run_validation_bench(settings, json_out, days=days, profile=profile, command=command, baseline=baseline)


@bench.command("features")
def bench_features(
    json_out: Annotated[Path, typer.Option("--json", help="write results here")],
    lookups: Annotated[int, typer.Option(help="lookups per measurement")] = 2000,
    home: HomeOpt = None,
) -> None:
    """Online feature latency (user, user + 100 items) on SQLite and Redis."""
    settings = _settings(None, home)
    from benchmarks.features import run_feature_bench

    run_feature_bench(settings, json_out, lookups=lookups)


@bench.command("serving")
def bench_serving(
    json_out: Annotated[Path, typer.Option("--json", help="write results here")],
    rate: Annotated[float, typer.Option(help="steady request rate, req/s")] = 100.0,
    duration: Annotated[float, typer.Option(help="seconds at the steady rate")] = 60.0,
    home: HomeOpt = None,
) -> None:
    """Open-loop load test of POST /recommend on loopback, then the highest rate meeting the p99 target."""
    settings = _settings(None, home)
    from benchmarks.serving import run_serving_bench

    run_serving_bench(settings, json_out, rate=rate, duration=duration)


@bench.command("scale")
def bench_scale(
    json_out: Annotated[Path, typer.Option("--json", help="write results here (the PNG goes beside it)")],
    sizes: Annotated[str, typer.Option(help="comma-separated sizes from benchmarks.scale.SIZES")] = "s,m,l",
    catalogues: Annotated[str, typer.Option(help="comma-separated catalogue sizes for the index")] = (
        "10000,100000,1000000"
    ),
    docs: Annotated[Path | None, typer.Option(help="Markdown file to write the results block into")] = None,
    resume: Annotated[bool, typer.Option(help="reuse <json>.partial.json of a cut-short run")] = False,
    home: HomeOpt = None,
) -> None:
    """Cost growth: every stage timed at growing users/items/events, serving p99 as the catalogue grows."""
    settings = _settings(None, home)
    from benchmarks.scale import run_scale_bench

    run_scale_bench(
        settings,
        json_out,
        sizes=[s.strip() for s in sizes.split(",") if s.strip()],
        catalogues=[int(c) for c in catalogues.split(",") if c.strip()],
        docs=docs,
        resume=resume,
    )


@app.command()
def simulate(
    json_out: Annotated[Path, typer.Option("--json", help="write the per-day results here (PNG beside it)")],
    days: Annotated[int, typer.Option(help="simulated days")] = 30,
    drift_day: Annotated[
        int | None,
        typer.Option(help="first day (0-based) with injected drift (default 15; none with --experiment)"),
    ] = None,
    window: Annotated[int, typer.Option(help="days a model trains on")] = 7,
    experiment: Annotated[
        Literal["aa", "ab"] | None,
        typer.Option(
            help="instead of the closed loop, an online experiment on the simulated market: 'aa' (the "
            "trained package in both arms) or 'ab' (the trained package against itself without histories)"
        ),
    ] = None,
    share: Annotated[float, typer.Option(help="--experiment: the challenger's share of users")] = 0.5,
    click_rate: Annotated[
        float, typer.Option(help="--experiment: click probability of the first, out-of-taste item")
    ] = 0.04,
    profile: ProfileOpt = None,
    home: HomeOpt = None,
) -> None:
    """Replay daily synthetic batches through the closed loop: drift -> retrain -> gate -> promote.

    With --experiment, the synthetic users answer what two variants show them instead (they click and
    buy by a hidden taste the generator knows), and the experiment readout says which variant wins.
    """
    settings = _settings(profile, home)
    if experiment is not None:
        from flows.market import run_market
        from recflow.data.market import ResponseModel

        with without_banners():
            run_market(
                settings,
                experiment,
                days,
                window,
                share,
                json_out,
                drift_day=drift_day,
                response=ResponseModel(p_click=click_rate),
            )
        return
    from flows.simulate import run_simulation

    with without_banners():
        run_simulation(settings, days, 15 if drift_day is None else drift_day, json_out, window=window)


@app.command("replay")
def replay(
    json_out: Annotated[Path, typer.Option("--json", help="write the summary and per-day records here")],
    policy: Annotated[
        str,
        typer.Option(help="retraining policy: drift, weekly, daily, never, or all (the four side by side)"),
    ] = "drift",
    start: Annotated[
        str | None, typer.Option(help="first replayed day, YYYY-MM-DD (default: after --train-days)")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="last replayed day, YYYY-MM-DD (default: the source's last)")
    ] = None,
    train_days: Annotated[
        int, typer.Option(help="days a model trains on (the newest, up to its retraining day)")
    ] = 28,
    cooldown: Annotated[
        int, typer.Option(help="days after a retrain during which drift does not retrain again")
    ] = 7,
    max_age: Annotated[
        int | None,
        typer.Option(
            help="days without a retrain after which drift retrains anyway (default: the setting "
            "monitoring.max_champion_age_days; 0: on alarms only)",
            min=0,
        ),
    ] = None,
    feature_days: Annotated[
        int,
        typer.Option(
            help="newest days the serving feature tables are computed from each day (30-day windows)"
        ),
    ] = 31,
    holdout_days: HoldoutDaysOpt = REPLAY_HOLDOUT_DAYS,
    prepare_ahead: Annotated[
        bool,
        typer.Option(
            help="validate the coming days, build their serving stores and find their households in a "
            "second process, up to sixteen days ahead, while the day is scored, checked and retrained on "
            "(two cores)"
        ),
    ] = True,
    profile: ProfileOpt = None,
    home: HomeOpt = None,
    data: DataOpt = None,
) -> None:
    """Replay a dated source day by day under a retraining policy: validate, score the champion before it
    learns the day (next-basket Recall@10 / NDCG@10), check drift, retrain, gate, promote.

    The world lives in <home>/policy-replay (replaced on each run). With --policy all, a Markdown table, a
    PNG chart and the Evidently dashboards (`recflow up --home <home>/policy-replay`) come too.
    """

    # one progress line per day on the terminal; Prefect's per-task lines still reach the flow run's logs
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    settings = _settings(profile, home, data)
    from flows.policies import policy_names

    try:
        policy_names(policy)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--policy") from None
    from flows.policies import check_holdout

    try:
        check_holdout(holdout_days, train_days)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--holdout-days") from None
    days = [
        _parse_date(value, name) if value else None for name, value in (("--start", start), ("--end", end))
    ]
    from flows.policies import run_replay

    asked = settings.serving.exclude_purchased  # None: the source's default seen filter
    seen = [] if asked is None else [f"RECFLOW_SERVING__EXCLUDE_PURCHASED={str(asked).lower()}"]
    command = " ".join(
        [*seen, "recflow replay", f"--data {settings.data.source}", f"--policy {policy}"]
        + ([f"--start {start}"] if start else [])
        + ([f"--end {end}"] if end else [])
        + ([f"--train-days {train_days}"] if train_days != 28 else [])
        + ([f"--cooldown {cooldown}"] if cooldown != 7 else [])
        + ([f"--max-age {max_age}"] if max_age is not None else [])
        + ([f"--feature-days {feature_days}"] if feature_days != 31 else [])
        + ([f"--holdout-days {holdout_days}"] if holdout_days != REPLAY_HOLDOUT_DAYS else [])
        + ([] if prepare_ahead else ["--no-prepare-ahead"])
        + ([f"--profile {profile}"] if profile else [])
        + ([f"--home {home}"] if home else [])
        + [f"--json {json_out}"]
    )
    with without_banners():
        run_replay(
            settings,
            policy,
            json_out,
            start=days[0],
            end=days[1],
            train_days=train_days,
            cooldown=cooldown,
            max_age=(settings.monitoring.max_champion_age_days if max_age is None else max_age) or None,
            feature_days=feature_days,
            holdout_days=holdout_days,
            command=command,
            prepare_ahead=prepare_ahead,
        )


@app.command()
def up(
    prefect_port: Annotated[int, typer.Option(help="Prefect server and UI port")] = 4200,
    evidently_port: Annotated[int, typer.Option(help="Evidently UI port")] = 8000,
    serving_port: Annotated[
        int | None, typer.Option(help="BentoML service port (RECFLOW_SERVING__PORT, default 3000)")
    ] = None,
    replay: Annotated[
        bool, typer.Option(help="land the next day's batch every --day-seconds (a world in <home>/replay)")
    ] = False,
    day_seconds: Annotated[float, typer.Option(help="--replay: seconds between two days")] = 20.0,
    drift_day: Annotated[int, typer.Option(help="--replay: first drifted day of the synthetic shop")] = 10,
    profile: ProfileOpt = None,
    home: HomeOpt = None,
    data: DataOpt = None,
    require_online_win: RequireOnlineWinOpt = False,
) -> None:
    """Start Prefect (UI), the BentoML service and the Evidently UI; serve the scheduled deployments.

    SIGINT or SIGTERM stops everything it started. With --replay, a day lands every --day-seconds and
    runs the daily deployment; drift alarms retrain and promote into the running service.
    """
    settings = _settings(profile, home, None if replay else data)
    options = None
    if replay:
        from flows.replay import ReplayOptions, replay_environment, replay_settings

        options = ReplayOptions(day_seconds=day_seconds, drift_day=drift_day, data=data or "synthetic")
        os.environ.update(replay_environment(settings, options))  # every process reads the same world
        settings = replay_settings(settings, options)
    if require_online_win:  # the retraining deployments carry it (flows.deployments.build_deployments)
        settings.experiments.require_online_win = True
    if serving_port is not None:
        settings.serving.port = serving_port
    from flows.deployments import platform_up
    from flows.lifecycle import PortInUse

    try:
        code = platform_up(settings, prefect_port=prefect_port, evidently_port=evidently_port, replay=options)
    except (PortInUse, RuntimeError) as e:
        typer.echo(f"recflow up: {e}", err=True)
        raise typer.Exit(1) from None
    # everything it started is stopped; leave now: at interpreter exit Prefect's background workers (the
    # replay's API client) retry flushing to the server that just stopped, for seconds
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@bench.command("champion-age")
def bench_champion_age(
    json_out: Annotated[Path, typer.Option("--json", help="write results here (Markdown and PNG beside it)")],
    trained_on: Annotated[str, typer.Option(help="the package's last training day (YYYY-MM-DD)")],
    days: Annotated[str, typer.Option(help="the days to serve it on, after --trained-on: YYYY-MM-DD,...")],
    data: DataOpt = None,
    train_days: Annotated[int, typer.Option(help="days the package trains on, ending --trained-on")] = 28,
    holdout_days: HoldoutDaysOpt = REPLAY_HOLDOUT_DAYS,
    profile: ProfileOpt = None,
    home: HomeOpt = None,
) -> None:
    """One package trained once, served on later days: as trained, with its ranker unclipped, without it."""

    parsed = [
        _parse_date(value, name)
        for name, value in [("--trained-on", trained_on), *(("--days", d.strip()) for d in days.split(","))]
    ]
    settings = _settings(profile, home, data)
    from benchmarks.champion_age import run_champion_age

    command = " ".join(
        ["recflow bench champion-age", f"--data {settings.data.source}", f"--trained-on {trained_on}"]
        + [f"--days {days}"]
        + ([f"--train-days {train_days}"] if train_days != 28 else [])
        + ([f"--holdout-days {holdout_days}"] if holdout_days != REPLAY_HOLDOUT_DAYS else [])
        + ([f"--profile {profile}"] if profile else [])
        + ([f"--home {home}"] if home else [])
        + [f"--json {json_out}"]
    )
    try:
        with without_banners():
            run_champion_age(
                settings,
                parsed[0],
                parsed[1:],
                json_out,
                train_days=train_days,
                holdout_days=holdout_days,
                command=command,
            )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@bench.command("drift-calibration")
def bench_drift_calibration(
    json_out: Annotated[Path, typer.Option("--json", help="write results here (a Markdown table beside it)")],
    drift_day: Annotated[int, typer.Option(help="day the drifted history starts drifting")] = 15,
    profile: ProfileOpt = None,
    home: HomeOpt = None,
) -> None:
    """Per-column drift distances on simulated days without and with drift, next to the thresholds."""
    settings = _settings(profile, home)
    from benchmarks.drift_calibration import run_calibration

    command = f"recflow bench drift-calibration --json {json_out} --drift-day {drift_day}"
    run_calibration(
        settings, json_out, drift_day, command=command + (f" --profile {profile}" if profile else "")
    )


if __name__ == "__main__":
    app()
