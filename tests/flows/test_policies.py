"""`recflow replay`: the retraining policies, the summary and outputs, and a short replay of a dated log."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd
import pytest
from completejourney_data import COMPLETEJOURNEY_FIRST_DAY, write_completejourney_folder
from typer.testing import CliRunner

from flows.policies import (
    DayRecord,
    Policy,
    history_before,
    markdown_table,
    policy_settings,
    replay_days,
    replay_settings,
    summarise,
    write_chart,
)
from recflow.settings import load_settings

DAY0 = date(2017, 3, 1)


def _retrain_days(policy: Policy, alarms: set[int], n: int = 21) -> list[int]:
    """The days (0-based) a policy retrains on over `n` days, the first champion trained on day -1."""
    last, out = DAY0 - timedelta(days=1), []
    for i in range(n):
        day = DAY0 + timedelta(days=i)
        if policy.retrain_reason(day, i in alarms, last) is not None:
            out.append(i)
            last = day
    return out


def test_weekly_retrains_every_seven_days_and_daily_every_day():
    assert _retrain_days(Policy("weekly"), alarms={2, 3}) == [6, 13, 20]
    assert _retrain_days(Policy("daily"), alarms=set()) == list(range(21))
    assert _retrain_days(Policy("never"), alarms=set(range(21))) == []


def test_drift_retrains_on_an_alarm_outside_the_cooldown_after_its_last_retrain():
    # the first champion learned day -1: an alarm on day 3 is inside the 7-day cool-down, day 8 is not;
    # days 9..15 are the cool-down of the day-8 retrain, day 16 alarms again after it
    assert _retrain_days(Policy("drift", cooldown=7), alarms={3, 8, 9, 12, 16}) == [8, 16]
    assert _retrain_days(Policy("drift", cooldown=0), alarms={3, 4}) == [3, 4]
    assert _retrain_days(Policy("drift"), alarms=set()) == []


def test_drift_with_a_maximum_age_retrains_after_that_many_days_without_a_retrain():
    # the first champion learned day -1: age 7 on day 6; the alarm on day 9 is in the cool-down of that
    # retrain (neither retrains nor resets the clock), the one on day 11 retrains and resets it (day 18)
    assert _retrain_days(Policy("drift", max_age=7), alarms=set()) == [6, 13, 20]
    assert _retrain_days(Policy("drift", max_age=0), alarms=set()) == []  # 0: alarms only
    assert _retrain_days(Policy("drift", cooldown=3, max_age=7), alarms={9, 11}) == [6, 11, 18]
    reasons = [
        Policy("drift", max_age=7).retrain_reason(DAY0 + timedelta(days=6), a, DAY0 - timedelta(days=1))
        for a in (False, True)
    ]
    assert reasons == ["age", "age"]  # an alarm inside the cool-down on the age day: still `age`
    assert (
        Policy("drift", cooldown=3, max_age=7).retrain_reason(
            DAY0 + timedelta(days=6), True, DAY0 - timedelta(days=1)
        )
        == "drift"
    )


def test_an_unknown_policy_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="drift, weekly, daily, never"):
        Policy("monthly")


def test_replay_days_leave_room_for_the_first_training_window():
    days = [DAY0 + timedelta(days=i) for i in range(30)]
    assert replay_days(days, None, None, 7) == days[7:]
    assert replay_days(days, days[10], days[12], 7) == days[10:13]
    with pytest.raises(ValueError, match="fewer than 7 days"):
        replay_days(days, days[3], None, 7)
    with pytest.raises(ValueError, match="No day"):
        replay_days(days, days[10], days[9], 7)


def test_the_replay_and_each_policy_live_in_homes_of_their_own(tiny_settings):
    sim = replay_settings(tiny_settings)
    assert sim.home == tiny_settings.home / "policy-replay"
    assert sim.data.holdout_days == 7  # a challenger holds out the week up to its retraining day
    assert replay_settings(tiny_settings, holdout_days=1).data.holdout_days == 1
    own = policy_settings(sim, "weekly")
    assert own.bentoml_home == sim.home / "policies" / "weekly" / "bentoml"
    assert tiny_settings.data.holdout_days == 2  # the caller's settings are untouched


def test_a_holdout_that_leaves_nothing_to_learn_is_refused(tmp_path):
    from recflow.cli import app

    args = ["replay", "--data", "completejourney", "--policy", "weekly", "--train-days", "7"]
    args += ["--holdout-days", "7", "--home", str(tmp_path), "--json", str(tmp_path / "out.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())  # the error box, unwrapped
    assert "--holdout-days 7 must be at least 1 and fewer than --train-days 7" in said
    assert not (tmp_path / "out.json").exists()


def _record(day: int, ndcg, alarm: bool = False, **kw) -> DayRecord:
    return DayRecord(
        "drift", (DAY0 + timedelta(days=day)).isoformat(), 5, ndcg, ndcg, 0.1, alarm, seconds=1.5, **kw
    )


def test_summary_counts_retrains_alarms_and_false_alarms():
    records = [
        _record(0, 0.2),
        _record(
            1,
            0.4,
            alarm=True,
            retrained=True,
            retrain_reason="drift",
            false_alarm=True,
            retrain_seconds={"co-occurrence": 2.0, "gate": 1.0},
        ),
        _record(2, None, alarm=True),  # no returning household: not in the means; alarm not judged
        _record(
            3,
            0.3,
            alarm=True,
            retrained=True,
            promoted=True,
            false_alarm=False,
            retrain_seconds={"store": 0.5, "co-occurrence": 0.25},
        ),
    ]
    summary = summarise(records, 10)
    assert summary["mean_ndcg@10"] == pytest.approx(0.3)
    assert summary["mean_recall@10"] == pytest.approx(0.3)
    assert (summary["retrains"], summary["promotions"], summary["alarms"]) == (2, 1, 3)
    assert (summary["judged_alarms"], summary["false_alarms"]) == (2, 1)
    assert summary["seconds"] == pytest.approx(6.0)
    assert (summary["days"], summary["scored_days"]) == (4, 3)
    assert summary["retrain_seconds"] == {"co-occurrence": 2.2, "gate": 1.0, "store": 0.5}


def test_table_and_chart_are_written(tmp_path):
    names = ("drift", "never")
    days = [
        {**_record(i, 0.1 + 0.01 * i, alarm=i == 2, retrained=i == 2).to_dict(10), "policy": name}
        for name in names
        for i in range(6)
    ]
    result = {
        "source": "completejourney",
        "start": "2017-03-01",
        "end": "2017-03-06",
        "k": 10,
        "train_days": 7,
        "cooldown": 7,
        "policies": {n: summarise([_record(0, 0.1)], 10) for n in names},
        "days": days,
    }
    table = markdown_table(result, "recflow replay --policy all --json x.json")
    assert "| drift | 0.1000 | 0.1000 | 0 |" in table
    assert "recflow replay --policy all" in table
    png = write_chart(result, tmp_path / "replay.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_replay_command_writes_the_policies_and_scores_before_learning(tmp_path, monkeypatch):
    from recflow.cli import app
    from serving.package import model_info

    # daily retrains keep their champion's searched hyperparameters (by default only age retrains do)
    monkeypatch.setenv("RECFLOW_TRAIN__KEEP_TUNING_ON", '["daily"]')

    folder = tmp_path / "cj"
    write_completejourney_folder(folder, households=30, days=14)
    first = date.fromisoformat(COMPLETEJOURNEY_FIRST_DAY)
    start, end = first + timedelta(days=10), first + timedelta(days=11)
    home, out = tmp_path / "home", tmp_path / "replay.json"
    args = ["replay", "--data", f"completejourney:{folder}", "--policy", "drift,daily,never"]
    args += [
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        "--train-days",
        "7",
        "--holdout-days",
        "2",
    ]
    result = CliRunner().invoke(app, [*args, "--profile", "tiny", "--home", str(home), "--json", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["exclude_purchased"] in (True, False) and written["validation"]["rows"] > 0
    assert written["holdout_days"] == 2
    assert out.with_suffix(".md").exists() and out.with_suffix(".png").exists()  # several policies
    sim = replay_settings(load_settings("tiny", home=home))
    for policy in ("drift", "daily", "never"):
        summary = written["policies"][policy]
        assert {"mean_recall@10", "mean_ndcg@10", "retrains", "alarms", "false_alarms", "seconds"} <= set(
            summary
        )
        days = [d for d in written["days"] if d["policy"] == policy]
        assert [d["day"] for d in days] == [(start + timedelta(days=i)).isoformat() for i in range(2)]
        keys = {"day", "recall@10", "ndcg@10", "drift_share", "alarm", "retrained", "promoted", "seconds"}
        assert all(keys <= set(d) for d in days)
        assert summary["retrains"] == sum(d["retrained"] for d in days)
        shared, own_stages = {"validate", "features", "households"}, {"score", "drift"}
        assert all(shared | own_stages <= set(d["stage_seconds"]) for d in days)
        assert all(("retrain" in d["stage_seconds"]) == d["retrained"] for d in days)
        steps = {"store", "data", "co-occurrence", "two-tower", "ranker", "refit", "save", "gate"}
        assert all(steps <= set(d["retrain_seconds"]) for d in days if d["retrained"])
        assert summary["retrain_seconds"].keys() == {k for d in days for k in d["retrain_seconds"]}
        assert set(summary["stage_seconds"]) >= shared | own_stages
        assert summary["alarms"] == sum(d["alarm"] for d in days)
        assert any(d["ndcg@10"] is not None for d in days)
        # prequential: the model that scored a day (yesterday's serving model) never learned that day
        own = policy_settings(sim, policy)
        scorer = None
        for d in days:
            if scorer is not None:
                learned = model_info(own, scorer)[1]["data_window"]["end"][:10]
                assert learned < d["day"], (scorer, learned, d["day"])
            scorer = d["serving_model"]
    never = [d for d in written["days"] if d["policy"] == "never"]
    assert written["policies"]["never"]["retrains"] == 0
    assert written["policies"]["daily"]["retrains"] == 2
    # the last daily challenger held out two days; its gate compared on the one its champion never saw
    from serving.package import latest_tag

    daily = policy_settings(sim, "daily")
    metadata = model_info(daily, latest_tag(daily))[1]
    assert metadata["validation_window"]["start"][:10] == (end - timedelta(days=1)).isoformat()
    assert metadata["validation_window"]["end"][:10] == end.isoformat()
    assert metadata["gate"]["days"] == [end.isoformat(), end.isoformat()]
    first = model_info(policy_settings(sim, "never"), never[0]["serving_model"])[1]
    assert first["stages"]["co-occurrence"]["kept"] is False  # the first champion searched them
    assert metadata["stages"]["co-occurrence"]["kept"] is True
    assert metadata["hyperparameters"]["cooccurrence"] == first["hyperparameters"]["cooccurrence"]
    assert len({d["serving_model"] for d in never}) == 1


def test_days_prepared_ahead_in_a_second_process_score_as_prepared_in_turn(tmp_path, monkeypatch):
    """The coming days validated, their stores built and their households found while the day is
    scored (two days ahead here, so the serving folders are reused): the same figures, and the first
    replayed day (validated while the first champion trains) is not in its own history."""
    import flows.policies
    from flows.policies import replay_flow

    monkeypatch.setattr(flows.policies, "PREPARE_DAYS_AHEAD", 2)

    folder = tmp_path / "cj"
    write_completejourney_folder(folder, households=30, days=12)
    start = date.fromisoformat(COMPLETEJOURNEY_FIRST_DAY) + timedelta(days=8)
    runs = {}
    for ahead in (True, False):
        settings = load_settings(
            "tiny", home=tmp_path / f"home-{ahead}", data={"source": f"completejourney:{folder}"}
        )
        runs[ahead] = replay_flow(
            settings, ["never"], start=start, train_days=7, holdout_days=2, prepare_ahead=ahead
        )
    figures = {
        ahead: [(d["day"], d["users"], d["recall@10"], d["ndcg@10"], d["drift_share"]) for d in r["days"]]
        for ahead, r in runs.items()
    }
    assert len(figures[True]) == 4 and any(f[3] is not None for f in figures[True])
    assert figures[True] == figures[False]
    assert runs[True]["validation"]["rows"] == runs[False]["validation"]["rows"] > 0
    assert (runs[True]["validation"]["days_per_pass"], runs[False]["validation"]["days_per_pass"]) == (2, 1)
    # the replay's history starts before the first replayed day even once that day is validated
    sim = replay_settings(load_settings("tiny", home=tmp_path / "home-True"))
    history = history_before(sim, start, 91)
    assert len(history) and history["timestamp"].max() < pd.Timestamp(start, tz="America/New_York")
    assert len(history_before(sim, start + timedelta(days=3), 91)) > len(history)  # the replayed days
    waited = [d["stage_seconds"]["wait"] for d in runs[True]["days"]]
    assert all(w >= 0 for w in waited)
    assert all({"features", "households", "history"} <= set(d["stage_seconds"]) for d in runs[True]["days"])
    assert sorted(p.name for p in sim.home.glob("serving-*")) == ["serving-0", "serving-1", "serving-2"]
