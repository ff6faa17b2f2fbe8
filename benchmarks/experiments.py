"""A simulated market for online experiments: do the readout's error rates hold what they claim?

Synthetic users belong to taste clusters that only the generator knows (the hidden preference). A
recommender shows each user one list of `k` items; the user answers it through the market's response
model (`recflow.data.market.ResponseModel`, the one `recflow simulate --experiment` uses): a click
probability that falls with the position and is five times higher for an item of the user's cluster,
a clicked item carted and a carted item bought with probability 0.5 each. Two recommenders: **good**
fills the list from the user's cluster, **weak** fills only `weak_share` of it from the cluster and
the rest at random.

Each simulated day brings `users_per_day` new users; each is assigned by the experiment's own salted
hash (`recflow.experiments.Experiment.variant`), answered by the variant's recommender, and the logs
(assignments, impressions, attributed clicks and purchases) go through the real readout
(`monitoring.experiment_readout.readout`), as the service's logs would.

- **A/A**: both variants use the good recommender; over `runs` seeds the share of readouts that name a
  winner is the false-positive rate, which should be about `alpha`.
- **A/B**: good challenger against weak champion. The number of days is planned before any run, from the
  true conversion rates the generator knows, for 80% power at `alpha` (statsmodels `NormalIndPower`);
  over `runs` seeds, `power` is the share of readouts after those days that name the challenger, and
  `wrong_winner_rate` the share that name the champion.

This is the readout's statistics against users with a known truth, not the service over HTTP (that is
`tests/serving/test_experiments.py`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.experiment_readout import readout
from recflow.data.market import Response, ResponseModel
from recflow.experiments import Experiment


@dataclass(frozen=True)
class Market:
    """The hidden preference (items in `n_clusters` taste clusters), the toy recommenders' lists and
    the market's response model."""

    n_items: int = 400
    n_clusters: int = 8
    k: int = 10
    users_per_day: int = 400
    share: float = 0.5
    weak_share: float = 0.5
    response: ResponseModel = ResponseModel()

    def item_clusters(self) -> np.ndarray:
        return np.arange(self.n_items) % self.n_clusters

    def show(self, rng: np.random.Generator, cluster: int, model: str) -> np.ndarray:
        """The list a recommender shows a user of `cluster`."""
        mine = np.flatnonzero(self.item_clusters() == cluster)
        n_mine = self.k if model == "good" else round(self.weak_share * self.k)
        chosen = list(rng.choice(mine, n_mine, replace=False))
        others = np.setdiff1d(np.arange(self.n_items), chosen)
        chosen += list(rng.choice(others, self.k - n_mine, replace=False))
        return np.array(chosen)

    def respond(self, rng: np.random.Generator, cluster: int, items: np.ndarray) -> Response:
        """What a user of `cluster` does with the shown `items` (the response model)."""
        return self.response.respond(rng, self.item_clusters()[items] == cluster)

    def conversion(self, model: str, samples: int = 200_000, seed: int = 0) -> float:
        """The true share of users who buy from `model`'s list (Monte Carlo over the generator)."""
        rng = np.random.default_rng(seed)
        bought = 0
        for _ in range(samples // 100):
            cluster = int(rng.integers(self.n_clusters))
            for _ in range(100):
                bought += bool(self.respond(rng, cluster, self.show(rng, cluster, model)).purchases.any())
        return bought / samples


def run_experiment(market: Market, models: dict[str, str], days: int, seed: int, alpha: float) -> dict:
    """One experiment over `days` simulated days; the readout at the end."""
    rng = np.random.default_rng(seed)
    experiment = Experiment(f"sim{seed}", "challenger", "champion", market.share, False, f"salt-{seed}", "t")
    assignments, impressions, outcomes = [], [], []
    for day in range(days):
        for n in range(market.users_per_day):
            user = f"sim-{seed}-{day}-{n}"
            variant = experiment.variant(user)
            cluster = int(rng.integers(market.n_clusters))
            items = market.show(rng, cluster, models[variant])
            response = market.respond(rng, cluster, items)
            request = f"{user}-r"
            assignments.append((user, variant))
            impressions += [(request, p, f"i{i}", user, variant) for p, i in enumerate(items)]
            for kind, done in (
                ("view", response.clicks),
                ("add_to_cart", response.carts),
                ("purchase", response.purchases),
            ):
                outcomes += [(request, user, f"i{items[p]}", kind, variant, p) for p in np.flatnonzero(done)]
    logs = {
        "assignments": pd.DataFrame(assignments, columns=["user_id", "variant"]),
        "impressions": pd.DataFrame(
            impressions, columns=["request_id", "position", "item_id", "user_id", "variant"]
        ),
        "outcomes": pd.DataFrame(
            outcomes, columns=["request_id", "user_id", "item_id", "event_type", "variant", "position"]
        ),
    }
    logs["impressions"]["latency_ms"] = 1.0
    return readout(experiment, logs, alpha=alpha)


def planned_days(
    market: Market, p_champion: float, p_challenger: float, alpha: float, power: float = 0.8
) -> int:
    """Days of traffic for `power` at `alpha` on conversion, two-sided (statsmodels NormalIndPower)."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    effect = proportion_effectsize(p_challenger, p_champion)
    ratio = market.share / (1 - market.share)
    n_champion = NormalIndPower().solve_power(effect, alpha=alpha, power=power, ratio=ratio)
    return math.ceil(n_champion / (market.users_per_day * (1 - market.share)))


def run_bench(
    json_out: Path, runs: int = 200, alpha: float = 0.05, market: Market | None = None, samples: int = 200_000
) -> dict:
    """A/A false-positive rate and A/B power over `runs` seeds each; printed and written as JSON.

    `samples`: simulated users of the Monte Carlo that gives the true conversion rates for the plan.
    """
    market = market or Market()
    p_weak, p_good = market.conversion("weak", samples), market.conversion("good", samples)
    days = planned_days(market, p_weak, p_good, alpha)
    aa = [
        run_experiment(market, {"champion": "good", "challenger": "good"}, days, s, alpha)
        for s in range(runs)
    ]
    ab = [
        run_experiment(market, {"champion": "weak", "challenger": "good"}, days, 10_000 + s, alpha)
        for s in range(runs)
    ]
    result = {
        "alpha": alpha,
        "aa": {"runs": runs, "false_positive_rate": sum(r["winner"] != "none" for r in aa) / runs},
        "ab": {
            "runs": runs,
            "power": sum(r["winner"] == "challenger" for r in ab) / runs,
            "wrong_winner_rate": sum(r["winner"] == "champion" for r in ab) / runs,
            "days": days,
            "planned_power": 0.8,
            "true_conversion": {"champion": p_weak, "challenger": p_good},
            "users_per_day": market.users_per_day,
        },
    }
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result
