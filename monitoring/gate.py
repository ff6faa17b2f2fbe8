"""The champion/challenger gate: a retrained package is promoted only if it serves better on days neither saw.

The challenger is judged by its *validation package* (fitted before its held-out days; see
`models.pipeline`), the champion by the package that serves. Both are scored through the one scoring
path (`monitoring.quality.evaluate_package`: candidates, seen filter, ranker, as served) on the
challenger's held-out days that the champion never trained on either, for the users of those days
whose targets the challenger's fitting never chose on (its *report* users, `unseen_users`), and
compared on NDCG@K of the full pipeline. When the champion has seen every held-out day there is no fair comparison and the
champion stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta

from recflow.settings import Settings


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote the challenger, why, and both evaluations (recorded in the challenger's metadata).

    Attributes:
        promote: True when the challenger should replace the champion.
        reason: one sentence a person can read in a log or a dashboard.
        metric: the metric the gate compared (e.g. `ndcg@10`).
        champion: the champion's metrics on the compared days (None: there is no champion yet).
        challenger: the challenger's metrics on the same days and users.
        margin: relative gain the challenger needed.
        days: the compared days `[first, last]` (None when there were none).
    """

    promote: bool
    reason: str
    metric: str
    champion: dict | None
    challenger: dict | None
    margin: float
    days: list[str] | None = None

    def to_dict(self) -> dict:
        """JSON-ready view, for the model's metadata."""
        return asdict(self)


def decide_promotion(
    champion: Mapping[str, float] | None,
    challenger: Mapping[str, float],
    margin: float,
    metric: str = "ndcg@10",
    days: list[str] | None = None,
) -> GateDecision:
    """Promote only if the challenger beats the champion on `metric` by more than `margin` (relative).

    Args:
        champion: the serving package's metrics on the compared days, or None when nothing serves yet.
        challenger: the challenger's metrics on the same days and users.
        margin: relative gain needed, e.g. 0.02 = 2% better (`settings.monitoring.promotion_margin`).
        metric: the metric compared, present in both mappings.
        days: the compared days, recorded with the decision.

    Raises:
        KeyError: if `metric` is missing from an evaluation.
        ValueError: if `margin` is negative.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    for name, values in (("champion", champion), ("challenger", challenger)):
        if values is not None and metric not in values:
            raise KeyError(f"{name} has no {metric!r}: got {sorted(values)}")

    def decision(promote: bool, reason: str) -> GateDecision:
        return GateDecision(
            promote=promote,
            reason=reason,
            metric=metric,
            champion=None if champion is None else dict(champion),
            challenger=dict(challenger),
            margin=margin,
            days=days,
        )

    if champion is None:
        return decision(True, "no champion is serving: the challenger is promoted")
    old, new = champion[metric], challenger[metric]
    needed = old * (1 + margin)
    if not new > needed:
        return decision(
            False,
            f"{metric} {new:.4f} does not beat the champion's {old:.4f} by the margin {margin:.0%} "
            f"(needs > {needed:.4f})",
        )
    return decision(True, f"{metric} {new:.4f} beats the champion's {old:.4f} by more than {margin:.0%}")


def fair_days(champion_metadata: Mapping, challenger_metadata: Mapping) -> tuple[date, date] | None:
    """The challenger's held-out days that the champion did not train on either, or None.

    The challenger's `validation_window` holds its held-out days; the champion's `data_window` ends
    with the newest day it learned.
    """
    window = challenger_metadata.get("validation_window") or {}
    if not window.get("start") or not window.get("end"):
        raise ValueError(
            "the challenger's metadata has no validation_window: it was not trained by models.train"
        )
    start, end = date.fromisoformat(window["start"][:10]), date.fromisoformat(window["end"][:10])
    seen = (champion_metadata.get("data_window") or {}).get("end")
    if seen:
        start = max(start, date.fromisoformat(seen[:10]) + timedelta(days=1))
    return (start, end) if start <= end else None


def compare_packages(settings: Settings, store, champion, challenger_validation) -> GateDecision:
    """Score champion and challenger on the fair days (`fair_days`) and decide.

    Every returning user is scored once, as of the first fair day's start, on what they did from then to
    the last fair day's end.

    Args:
        settings: platform settings (the validated store, serving settings, margin, k).
        store: the Feast store the features as of the first fair day are read from, or a function of
            that day returning one (a store that keeps only its newest days' rows, as the replay's).
        champion: the serving package (`models.bundle.ModelBundle`), or None.
        challenger_validation: the challenger's validation package.
    """
    from models.data import held_out
    from monitoring.quality import evaluate_package
    from recflow.data.batches import day_bounds

    k = settings.train.k
    metric = f"ndcg@{k}"
    margin = settings.monitoring.promotion_margin
    if champion is None:
        return decide_promotion(None, {metric: float("nan")}, margin, metric)
    days = fair_days(champion.metadata, challenger_validation.metadata)
    if days is None:
        return GateDecision(
            promote=False,
            reason="the champion has already learned every held-out day: no fair comparison, the champion stays",
            metric=metric,
            champion=None,
            challenger=None,
            margin=margin,
        )
    first, last = days
    if callable(store):
        store = store(first)
    zone = settings.data.shop_timezone  # the days are the shop's calendar days
    notes: list[str] = []

    def report_users(returning: list[str]) -> list[str]:
        kept, note = unseen_users(returning, challenger_validation)
        notes.append(note)
        return kept

    start, end = day_bounds(first, zone)[0], day_bounds(last, zone)[1]
    held = held_out(settings, store, start, end, pick=report_users)
    if not len(held):
        return GateDecision(
            False, f"no returning user on {first}..{last}: nothing to compare", metric, None, None, margin
        )
    old = evaluate_package(champion, held, settings.serving, k).metrics
    new = evaluate_package(challenger_validation, held, settings.serving, k).metrics
    decision = decide_promotion(old, new, margin, metric, days=[first.isoformat(), last.isoformat()])
    return replace(decision, reason=f"{decision.reason} {notes[0]}")


def unseen_users(users: list[str], challenger_validation) -> tuple[list[str], str]:
    """The held-out users the challenger's validation package learned nothing from, and a note saying so.

    Fitting chooses everything (co-occurrence, half-life, two-tower epochs, the ranker, which also
    learns from their targets) on the *choose* users of its held-out days and keeps the *report* users
    out (`models.pipeline.split_users`: a stable hash of the user id, the package's `report_share` and
    `seed`). Judged on the choose users too, a challenger is scored on targets it was fitted to, and
    wins against a champion that never saw them more often than it should; the gate scores both on the
    report users alone. A package fitted with `report_share` 0 has none: every user is kept, and the
    note says the comparison favours the challenger.

    Args:
        users: the held-out days' returning users (before their histories and features are looked up).
        challenger_validation: the challenger's validation package (its `config` has the split).
    """
    from models.pipeline import split_users

    config = challenger_validation.config
    _, report = split_users(users, config.report_share, config.seed)
    if not len(report):
        return users, "(on users the challenger chose on: report_share is 0, the comparison favours it)"
    kept = [users[i] for i in report]
    return kept, f"(on the {len(kept)} of {len(users)} users the challenger never learned from)"
