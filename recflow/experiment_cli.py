"""`recflow experiment start|stop|status`: run an online experiment on the serving models (recflow/experiments.py).

The commands write the experiments database; a running service follows it within
`serving.reload_interval_s` (it loads the challenger beside the champion, then switches).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from recflow.settings import Profile, Settings, load_settings

experiment_app = typer.Typer(
    help="Online experiments: a challenger for a share of users.", no_args_is_help=True
)

ProfileOpt = Annotated[Profile | None, typer.Option(help="data/training size: tiny, small or default")]
HomeOpt = Annotated[Path | None, typer.Option(help="artefact root (RECFLOW_HOME), default .recflow")]


def _settings(profile: Profile | None, home: Path | None) -> Settings:
    from recflow.cli import prepare_environment

    settings = load_settings(profile, **({"home": home} if home is not None else {}))
    prepare_environment(settings)
    return settings


@experiment_app.command("start")
def start(
    challenger: Annotated[str, typer.Option(help="BentoML tag of the packaged challenger model")],
    share: Annotated[float, typer.Option(help="share of users shown the challenger, 0-1 exclusive")] = 0.1,
    shadow: Annotated[
        bool, typer.Option(help="score the share unseen; every user is shown the champion")
    ] = False,
    profile: ProfileOpt = None,
    home: HomeOpt = None,
) -> None:
    """Start an experiment: users are assigned by a salted hash of their id, sticky for the experiment."""
    from recflow.experiments import ExperimentError, ExperimentStore
    from serving.package import champion_tag, model_info

    settings = _settings(profile, home)
    try:
        model_info(settings, challenger)
        experiment = ExperimentStore(settings).start(challenger, share, shadow, champion_tag(settings))
    except (LookupError, ValueError, ExperimentError) as e:
        raise typer.BadParameter(str(e)) from e
    mode = "shadow (scored, not shown)" if shadow else "shown"
    print(
        f"Experiment {experiment.id} started: challenger {challenger} for {share:.0%} of users, {mode}; "
        f"champion {experiment.champion}."
    )


@experiment_app.command("stop")
def stop(profile: ProfileOpt = None, home: HomeOpt = None) -> None:
    """Stop the running experiment: every user gets the champion again (its logs are kept)."""
    from recflow.experiments import ExperimentError, ExperimentStore

    try:
        experiment = ExperimentStore(_settings(profile, home)).stop()
    except ExperimentError as e:
        raise typer.BadParameter(str(e)) from e
    print(f"Experiment {experiment.id} stopped at {experiment.stopped_at}.")


@experiment_app.command("status")
def status(
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the status here")] = None,
    profile: ProfileOpt = None,
    home: HomeOpt = None,
) -> None:
    """The running (or last) experiment and, per variant, users, answers, impressions and outcomes."""
    from recflow.experiments import ExperimentStore

    store = ExperimentStore(_settings(profile, home))
    experiment = store.latest()
    if experiment is None:
        print("No experiment has run.")
        raise typer.Exit(0)
    data = {
        "experiment": {k: v for k, v in experiment.__dict__.items() if k != "salt"},
        "running": experiment.stopped_at is None,
        "variants": store.summary(experiment.id),
    }
    print(json.dumps(data, indent=2))
    if json_out is not None:
        json_out.write_text(json.dumps(data, indent=2))
