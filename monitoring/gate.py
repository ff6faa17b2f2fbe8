"""The champion/challenger gate: a retrained model is promoted only if it clearly wins and breaks nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote the challenger, why, and both evaluations (to record in model metadata).

    Attributes:
        promote: True when the challenger should replace the champion.
        reason: one sentence a person can read in a log or a dashboard.
        metric: the metric the gate compared (e.g. `recall@10`).
        champion_holdout: champion's metrics on the latest holdout (None: there is no champion yet).
        challenger_holdout: challenger's metrics on the latest holdout.
        champion_golden: champion's metrics on the fixed golden set.
        challenger_golden: challenger's metrics on the fixed golden set.
        margin: relative gain the challenger needed on the holdout.
    """

    promote: bool
    reason: str
    metric: str
    champion_holdout: dict | None
    challenger_holdout: dict
    champion_golden: dict | None
    challenger_golden: dict
    margin: float

    def to_dict(self) -> dict:
        """JSON-ready view, for the model's metadata."""
        return asdict(self)


def decide_promotion(
    champion_metrics: Mapping[str, float] | None,
    challenger_metrics: Mapping[str, float],
    golden_champion: Mapping[str, float] | None,
    golden_challenger: Mapping[str, float],
    margin: float,
    metric: str = "recall@10",
    golden_tolerance: float = 0.0,
) -> GateDecision:
    """Promote only if the challenger beats the champion on the holdout by `margin` and holds on golden.

    The holdout is the newest data (where drift shows); the golden set is fixed, so a model that
    chases the newest days at the cost of what already worked is caught there.

    Args:
        champion_metrics: serving model's metrics on the latest holdout, or None when nothing serves yet.
        challenger_metrics: retrained model's metrics on the same holdout.
        golden_champion: serving model's metrics on the golden set (None when nothing serves yet).
        golden_challenger: retrained model's metrics on the golden set.
        margin: relative gain needed on the holdout, e.g. 0.02 = 2% better than the champion
            (`settings.monitoring.promotion_margin`).
        metric: the metric compared, present in every mapping.
        golden_tolerance: relative drop on the golden set still accepted (`monitoring.golden_tolerance`).

    Raises:
        KeyError: if `metric` is missing from one of the evaluations.
        ValueError: if `margin` or `golden_tolerance` is negative.
    """
    if margin < 0 or golden_tolerance < 0:
        raise ValueError(f"margin and golden_tolerance must be >= 0, got {margin} and {golden_tolerance}")
    evaluations = {
        "champion_metrics": champion_metrics,
        "challenger_metrics": challenger_metrics,
        "golden_champion": golden_champion,
        "golden_challenger": golden_challenger,
    }
    for name, values in evaluations.items():
        if values is not None and metric not in values:
            raise KeyError(f"{name} has no {metric!r}: got {sorted(values)}")

    def decision(promote: bool, reason: str) -> GateDecision:
        return GateDecision(
            promote=promote,
            reason=reason,
            metric=metric,
            champion_holdout=None if champion_metrics is None else dict(champion_metrics),
            challenger_holdout=dict(challenger_metrics),
            champion_golden=None if golden_champion is None else dict(golden_champion),
            challenger_golden=dict(golden_challenger),
            margin=margin,
        )

    if champion_metrics is None:
        return decision(True, "no champion is serving: the challenger is promoted")
    champion, challenger = champion_metrics[metric], challenger_metrics[metric]
    needed = champion * (1 + margin)
    if not challenger > needed:
        return decision(
            False,
            f"holdout {metric} {challenger:.4f} does not beat the champion's {champion:.4f} "
            f"by the margin {margin:.0%} (needs > {needed:.4f})",
        )
    if golden_champion is not None:
        floor = golden_champion[metric] * (1 - golden_tolerance)
        if golden_challenger[metric] < floor:
            return decision(
                False,
                f"golden-set {metric} {golden_challenger[metric]:.4f} regresses below the champion's "
                f"{golden_champion[metric]:.4f} (floor {floor:.4f})",
            )
    return decision(
        True,
        f"holdout {metric} {challenger:.4f} beats the champion's {champion:.4f} by more than {margin:.0%} "
        "and the golden set does not regress",
    )
