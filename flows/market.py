"""An online experiment on the simulated market: `recflow simulate --experiment aa|ab`.

The synthetic shop's users answer what they are shown through the market's response model
(`recflow.data.market`: they click and buy by a hidden taste that only the generator knows), so an
experiment runs end to end on packages the platform trained, with a known right answer:

1. land a synthetic history (drift from `drift_day` when given: the users' taste moves with it) and
   validate its first `window` days (Great Expectations);
2. train a package on them and put it in the model store twice: the two variants. **A/B**: the
   challenger is that package; the champion is the same package asked without the user's recent items
   (what it serves someone it knows nothing about: both candidate sources fall back to the same popular
   items for everyone, less what the user bought), a deliberately weak recommender. **A/A**: both
   variants serve the package as trained;
3. start the experiment in the experiment store (`recflow.experiments`), its salt fixed by the seed;
4. every later day: validate the day's batch, refresh the feature tables, assign each user who comes
   back that day by the experiment's salted hash (`Experiment.variant`), serve them with their
   variant through the one scoring path (`monitoring.quality.evaluate_package` over
   `models.scorer.BatchScorer`, as of the day's start, as `day_evaluation` does), let them respond,
   and write assignments, impressions and the attributed clicks, carts and purchases to the store;
5. stop the experiment and run the real readout flow (`flows.readout.experiment_readout`).

The service's latency is not simulated: impressions carry none, so the latency guardrail holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.loop import load_bundle, validate_day, validated_days
from flows.simulate import fresh_world, simulation_settings
from recflow.data.market import ResponseModel
from recflow.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

    from recflow.data.market import Shoppers
    from recflow.experiments import Experiment

KINDS = ("aa", "ab")


@dataclass(frozen=True)
class Variant:
    """What one arm of the experiment serves: a package from the model store, with or without histories."""

    tag: str
    bundle: Any
    with_history: bool = True

    @property
    def description(self) -> str:
        return "the trained package" if self.with_history else "the package without the user's history"


def serve_day(
    sim: Settings,
    features: FeatureStore,
    experiment: Experiment,
    variants: dict[str, Variant],
    shoppers: Shoppers,
    index: int,
) -> dict[str, list[dict[str, Any]]]:
    """One simulated day of the experiment: who came back, what each variant showed them, what they did.

    Returns the experiment store's rows (`assignments`, `impressions`, `outcomes`) of the day.
    """
    import numpy as np
    import pandas as pd

    from models.data import held_out, weighted_interactions
    from monitoring.quality import evaluate_package
    from recflow.data.batches import read_events

    day = validated_days(sim)[index]
    start = pd.Timestamp(day, tz="UTC")
    inter = weighted_interactions(read_events(sim.validated_dir), sim)
    held = held_out(sim, features, start, start + timedelta(days=1), inter=inter)
    arm = {user: experiment.variant(user) for user in held.users}
    lists: dict[str, list[str]] = {}
    for name, variant in variants.items():
        rows = [i for i, user in enumerate(held.users) if arm[user] == name]
        mine = held.subset(rows, with_history=variant.with_history)
        served = evaluate_package(variant.bundle, mine, sim.serving, sim.train.k).served
        lists |= {
            user: top.sort_values("rank")["item_id"].tolist() for user, top in served.groupby("user_id")
        }

    shown_at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    rng = np.random.default_rng([sim.seed, index])
    out: dict[str, list[dict[str, Any]]] = {"assignments": [], "impressions": [], "outcomes": []}
    for user in held.users:  # sorted: the draws are reproducible for a seed
        variant, items = arm[user], lists.get(user, [])
        if not items:
            continue
        request = f"{day:%Y%m%d}-{user}"[:32]
        common = {"experiment_id": experiment.id, "user_id": user, "variant": variant}
        out["assignments"].append({**common, "assigned_at": shown_at.isoformat()})
        out["impressions"] += [
            {
                **common,
                "request_id": request,
                "position": position,
                "item_id": item,
                "model": variants[variant].tag,
                "shown_at": shown_at.isoformat(),
                "latency_ms": None,
            }
            for position, item in enumerate(items)
        ]
        response = shoppers.respond(rng, user, items, index)
        for kind, done, lag in (
            ("view", response.clicks, 1),
            ("add_to_cart", response.carts, 2),
            ("purchase", response.purchases, 3),
        ):
            at = (shown_at + timedelta(minutes=lag)).isoformat()
            out["outcomes"] += [
                {
                    **common,
                    "request_id": request,
                    "item_id": items[p],
                    "event_type": kind,
                    "position": int(p),
                    "at": at,
                }
                for p in np.flatnonzero(done)
            ]
    return out


@task(name="serve the experiment's day", cache_policy=NO_CACHE)
def run_day(
    sim: Settings, experiment: Experiment, variants: dict[str, Variant], shoppers: Shoppers, index: int
) -> dict:
    """Refresh the feature tables, serve and answer the day (`serve_day`), write its rows to the store."""
    from features.store import prepare_feature_store
    from recflow.experiments import ExperimentStore

    rows = serve_day(sim, prepare_feature_store(sim), experiment, variants, shoppers, index)
    ExperimentStore(sim).write(rows)
    figures: dict[str, Any] = {"day": str(validated_days(sim)[index])}
    for variant in variants:
        done = [o for o in rows["outcomes"] if o["variant"] == variant]
        figures[variant] = {
            "users": sum(a["variant"] == variant for a in rows["assignments"]),
            "clicks": sum(o["event_type"] == "view" for o in done),
            "purchases": sum(o["event_type"] == "purchase" for o in done),
        }
    return figures


# log_prints off: Feast serialises on-demand views with dill, which disassembles their functions with
# print() (see flows.pipeline.build_features)
@flow(name="recflow-simulate-experiment", log_prints=False)
def market_flow(
    settings: Settings,
    kind: str = "ab",
    days: int = 30,
    window: int = 7,
    share: float = 0.5,
    drift_day: int | None = None,
    response: ResponseModel | None = None,
) -> dict:
    """Run an A/A or A/B experiment on the simulated market and read it out (see the module docstring).

    Args:
        settings: platform settings (profile sizes, seed, `experiments.alpha`).
        kind: "ab" (trained package against the same package without histories) or "aa" (the same
            package in both arms).
        days: simulated days; the experiment runs on the days after the first `window`.
        window: days the package trains on.
        share: the challenger's share of users.
        drift_day: first drifted day (0-based), or None for a world without drift.
        response: the users' response model (`ResponseModel()` by default).

    Returns:
        `{"experiment", "share", "window", "variants", "days": [per day and variant: users, clicks,
        purchases], "readout": the readout's JSON, "readout_json"}`.
    """
    from flows.readout import experiment_readout
    from recflow.data.market import Shoppers
    from recflow.data.synthetic import build_world
    from recflow.experiments import ExperimentStore
    from serving.package import promote, save_to_model_store

    if kind not in KINDS:
        raise ValueError(f"Unknown experiment {kind!r}: expected one of {', '.join(KINDS)}.")
    if not 2 <= window < days:
        raise ValueError(
            f"Need 2 <= window ({window}) < days ({days}): the experiment runs after the window."
        )
    sim = simulation_settings(settings, days, drift_day)
    if sim.data.source != "synthetic":
        raise ValueError(f"The simulated market needs the synthetic shop, not {sim.data.source!r}.")
    batches, validator, first, trained = fresh_world(sim, window)
    bundle = load_bundle(trained.bundle_path)
    made = {"trained_on": [d.isoformat() for d in first], "experiment": kind}
    variants = {
        arm: Variant(
            save_to_model_store(sim, trained.bundle_path, {"simulation": {**made, "variant": arm}}),
            bundle,
            with_history=kind == "aa" or arm == "challenger",
        )
        for arm in ("champion", "challenger")
    }
    promote(sim, variants["champion"].tag)
    store = ExperimentStore(sim)
    experiment = store.start(
        variants["challenger"].tag, share, False, variants["champion"].tag, salt=f"simulate-{sim.seed}"
    )
    for arm, variant in variants.items():
        get_run_logger().info("%s: %s (%s)", arm, variant.tag, variant.description)
    shoppers = Shoppers(build_world(sim.data, sim.seed), sim.data, sim.seed, response)

    per_day = []
    for index, batch in enumerate(batches[window:], start=window):
        validate_day(sim, validator, batch)
        per_day.append(run_day(sim, experiment, variants, shoppers, index))
    stopped = store.stop()
    readout_json = sim.reports_dir / "experiments" / stopped.id / "readout.json"
    readout = experiment_readout(sim, readout_json, stopped.id, sim.experiments.alpha)
    return {
        "experiment": kind,
        "share": share,
        "window": window,
        "drift_day": drift_day,
        "profile": sim.profile,
        "response": asdict(shoppers.response),
        "variants": {arm: {"tag": v.tag, "serves": v.description} for arm, v in variants.items()},
        "days": per_day,
        "readout": readout,
        "readout_json": str(readout_json),
    }


def run_market(
    settings: Settings,
    kind: str,
    days: int,
    window: int,
    share: float,
    json_out: Path,
    drift_day: int | None = None,
    response: ResponseModel | None = None,
) -> dict:
    """Run the experiment flow, write its JSON (the readout's chart beside it), print the readout."""
    import json

    from monitoring.experiment_readout import write_chart

    (settings.home / "prefect").mkdir(parents=True, exist_ok=True)  # PREFECT_HOME of the CLI
    result = market_flow(
        settings, kind=kind, days=days, window=window, share=share, drift_day=drift_day, response=response
    )
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    png = json_out.with_suffix(".png")
    write_chart(result["readout"], png)
    readout = result["readout"]
    for arm, figures in readout["variants"].items():
        shown = {
            k: figures.get(k) for k in ("users", "impressions", "clicks", "purchases", "ctr", "conversion")
        }
        print(f"{arm} ({result['variants'][arm]['serves']}): {json.dumps(shown)}")
    print(
        f"conversion p = {readout['tests']['conversion']['p_value']}; "
        f"sample ratio mismatch: {readout['guardrails']['sample_ratio']['mismatch']}; winner: {readout['winner']}"
    )
    print(f"wrote {json_out} and {png}")
    return result
