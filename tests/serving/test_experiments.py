"""Online experiments over real HTTP: sticky variants from both loaded models, attribution, shadow mode, stores."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
from pydantic import SecretStr

from recflow.experiments import ExperimentError, ExperimentStore
from recflow.settings import load_settings
from serving.package import save_to_model_store
from serving.server import running_server


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"RECFLOW_HOME": str(settings.home), "RECFLOW_PROFILE": "tiny"}
    proc = subprocess.run(
        [sys.executable, "-m", "recflow.cli", "experiment", *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_an_experiment_on_the_running_service(served, tmp_path):
    shutil.copytree(served.settings.home, tmp_path / "home", symlinks=True)
    cfg = load_settings(
        "tiny",
        home=tmp_path / "home",
        serving={"reload_interval_s": 0.3},
        experiments={"flush_interval_s": 0.2},
    )
    challenger = save_to_model_store(cfg, served.bundle_path, {"note": "challenger"})
    users = [f"u{i:06d}" for i in range(40)]
    with running_server(cfg) as url, httpx.Client(base_url=url, timeout=10) as client:

        def answer(user: str) -> dict:
            r = client.post("/recommend", json={"user_id": user, "k": 5})
            assert r.status_code == 200, r.text
            return r.json()

        before = answer(users[0])
        assert (
            before["variant"] == "champion" and before["experiment"] == "" and len(before["request_id"]) == 32
        )

        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:  # requests throughout start and stop: none may fail
            with httpx.Client(base_url=url, timeout=10) as c:
                while not stop.is_set():
                    statuses.append(c.post("/recommend", json={"user_id": "u000003", "k": 5}).status_code)

        thread = threading.Thread(target=hammer)
        thread.start()
        out = cli(cfg, "start", "--challenger", challenger, "--share", "0.5").stdout
        assert "started" in out and challenger in out
        wait_for(lambda: answer(users[0])["experiment"] != "")

        experiment = ExperimentStore(cfg).active()
        first = {u: answer(u) for u in users}
        second = {u: answer(u) for u in users}
        for u in users:
            assert first[u]["variant"] == second[u]["variant"] == experiment.variant(u)  # sticky, by hash
            expected_model = challenger if first[u]["variant"] == "challenger" else served.tag
            assert first[u]["model"] == second[u]["model"] == expected_model  # both models answer
            assert first[u]["experiment"] == experiment.id
        assert {a["variant"] for a in first.values()} == {"champion", "challenger"}

        # attribution: a purchase of the third item shown, a view of an item not shown, another user's id
        user = next(u for u in users if first[u]["variant"] == "challenger" and len(first[u]["items"]) >= 3)
        shown = first[user]
        other = next(u for u in users if u != user)
        not_shown = next(
            i["item_id"]
            for a in first.values()
            for i in a["items"]
            if i["item_id"] not in {s["item_id"] for s in shown["items"]}
        )
        events = [
            {
                "user_id": user,
                "item_id": shown["items"][2]["item_id"],
                "event_type": "purchase",
                "request_id": shown["request_id"],
            },
            {"user_id": user, "item_id": not_shown, "event_type": "view", "request_id": shown["request_id"]},
            {
                "user_id": other,
                "item_id": shown["items"][0]["item_id"],
                "event_type": "add_to_cart",
                "request_id": shown["request_id"],
            },
            {"user_id": user, "item_id": shown["items"][0]["item_id"], "event_type": "view"},
        ]
        r = client.post("/events", json={"events": events})
        assert r.status_code == 200 and r.json()["accepted"] == 4 and r.json()["attributed"] == 1, r.text
        bad = client.post("/events", json={"events": [{**events[0], "request_id": "x" * 65}]})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "request_id"

        store = ExperimentStore(cfg)
        wait_for(lambda: store.summary(experiment.id)["challenger"].get("purchases") == 1)
        summary = store.summary(experiment.id)
        assert summary["champion"]["users"] + summary["challenger"]["users"] == len(users)
        assert summary["challenger"]["users"] == sum(a["variant"] == "challenger" for a in first.values())
        with store.engine.connect() as db:
            outcome = db.exec_driver_sql("SELECT variant, position, event_type, user_id FROM outcomes").all()
        assert [tuple(o) for o in outcome] == [("challenger", 2, "purchase", user)]
        status = json.loads(cli(cfg, "status").stdout)
        assert status["running"] and status["variants"]["challenger"]["purchases"] == 1
        assert "salt" not in status["experiment"]
        assert client.get("/experiment").status_code == 403  # no admin key configured: closed

        assert "stopped" in cli(cfg, "stop").stdout
        wait_for(lambda: answer(users[0])["experiment"] == "")
        assert {answer(u)["variant"] for u in users} == {"champion"}

        # shadow: everyone is shown the champion, the challenger scores its share unseen
        cli(cfg, "start", "--challenger", challenger, "--share", "0.5", "--shadow")
        wait_for(lambda: answer(users[0])["experiment"] != "")
        shadowed = ExperimentStore(cfg).active()
        assert shadowed.id != experiment.id and shadowed.shadow
        answers = [answer(u) for u in users]
        assert {a["variant"] for a in answers} == {"champion"} and {a["model"] for a in answers} == {
            served.tag
        }
        expected = sum(shadowed.variant(u) == "challenger" for u in users)
        wait_for(
            lambda: store.summary(shadowed.id)["challenger"].get("shadow", {}).get("requests", 0) >= expected
        )
        figures = store.summary(shadowed.id)["challenger"]["shadow"]
        assert figures["overlap_mean"] == pytest.approx(1.0)  # the same bundle under two tags
        assert figures["latency_ms_mean"] > 0
        cli(cfg, "stop")
        stop.set()
        thread.join()
    assert len(statuses) > 20 and set(statuses) == {200}  # starting and stopping failed no request


def test_store_rules_and_durability_on_postgresql(tiny_settings):
    """The same store on the real PostgreSQL: one running experiment at a time, rows survive a new engine,
    and erasure deletes a user's rows there."""
    import psycopg

    from recflow.erasure import forget_user

    name = f"recflow_exp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        url = SecretStr(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
        settings = tiny_settings.model_copy(
            update={"experiments": tiny_settings.experiments.model_copy(update={"database_url": url})}
        )
        store = ExperimentStore(settings)
        experiment = store.start("recflow-recommender:b", 0.2, False, "recflow-recommender:a")
        with pytest.raises(ExperimentError, match="stop it first"):
            store.start("recflow-recommender:c", 0.2, False, "recflow-recommender:a")
        assert ExperimentStore(settings).stop().id == experiment.id
        with pytest.raises(ValueError, match="share"):
            store.start("x", 1.5, False, None)
        restarted = store.start("recflow-recommender:b", 0.2, False, "recflow-recommender:a")
        row = {
            "experiment_id": restarted.id,
            "user_id": "u-pg-erase-77",
            "variant": "challenger",
            "assigned_at": "t",
        }
        shown = {
            "request_id": "r1",
            "position": 0,
            "item_id": "i1",
            "user_id": "u-pg-erase-77",
            "experiment_id": restarted.id,
            "variant": "challenger",
            "model": "m",
            "shown_at": "t",
        }
        store.write({"assignments": [row, row], "impressions": [shown]})
        store.write({"assignments": [row]})  # the first assignment is kept, never a second
        again = ExperimentStore(settings)  # a new engine, as after a restart
        assert again.summary(restarted.id)["challenger"] == {"users": 1, "responses": 1, "impressions": 1}
        assert again.shown("r1")[0]["item_id"] == "i1" and experiment.id != restarted.id

        report = forget_user(settings, "u-pg-erase-77")
        assert report.files["experiments database"] == 2
        assert again.summary(restarted.id)["challenger"] == {"users": 0, "responses": 0, "impressions": 0}
        again.engine.dispose()
        store.engine.dispose()
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_assignment_is_sticky_salted_and_near_the_share():
    from recflow.experiments import Experiment

    one = Experiment("e1", "c", "a", 0.1, False, "salt-one", "t")
    two = Experiment("e2", "c", "a", 0.1, False, "salt-two", "t")
    users = [f"u{i:06d}" for i in range(20000)]
    first = [one.variant(u) for u in users]
    assert first == [one.variant(u) for u in users]
    share = first.count("challenger") / len(users)
    assert abs(share - 0.1) < 4 * (0.1 * 0.9 / len(users)) ** 0.5  # within 4 standard errors
    moved = sum(a != b for a, b in zip(first, (two.variant(u) for u in users), strict=True))
    assert moved > 0.1 * len(users)  # a new salt reshuffles (independent: ~18% change)


def test_an_online_win_is_required_before_promotion(private_settings, served):
    """With experiments.require_online_win, a challenger that passed the offline gate starts an experiment;
    the readout's conclusion promotes it only when it wins (no difference: the experiment keeps running)."""
    from flows.promotion import conclude_experiment, start_online_trial
    from monitoring.experiment_readout import read_logs, readout
    from serving.package import champion_tag

    challenger = save_to_model_store(private_settings, served.bundle_path, {"note": "challenger"})
    message = start_online_trial(private_settings, challenger, served.tag)
    store = ExperimentStore(private_settings)
    experiment = store.active()
    assert experiment.challenger == challenger and experiment.id in message
    assert "not promoted" in start_online_trial(private_settings, challenger, served.tag)  # one at a time

    def log(n_users: int, rates: dict[str, float]) -> None:
        # a user converts by its rank within its variant (the split's salt is random): each variant's
        # conversion rate is its rate in `rates`, whichever users the split sends where
        rows: dict[str, list] = {"assignments": [], "impressions": [], "outcomes": []}
        rank = {"champion": 0, "challenger": 0}
        for u in range(n_users):
            user, request = f"user-{u:05d}", f"req-{u:05d}-{n_users}"
            variant = experiment.variant(user)
            rank[variant] += 1
            rows["assignments"].append(
                {"experiment_id": experiment.id, "user_id": user, "variant": variant, "assigned_at": "t"}
            )
            rows["impressions"].append(
                {
                    "request_id": request,
                    "position": 0,
                    "item_id": "i000001",
                    "user_id": user,
                    "experiment_id": experiment.id,
                    "variant": variant,
                    "model": "m",
                    "shown_at": "t",
                    "latency_ms": 5.0,
                }
            )
            if (rank[variant] * 7919 % 100) < 100 * rates[variant]:
                rows["outcomes"].append(
                    {
                        "request_id": request,
                        "user_id": user,
                        "item_id": "i000001",
                        "event_type": "purchase",
                        "experiment_id": experiment.id,
                        "variant": variant,
                        "position": 0,
                        "at": "t",
                    }
                )
        store.write(rows)

    log(200, {"champion": 0.1, "challenger": 0.1})
    even = readout(store.active(), read_logs(store, experiment.id))
    assert even["winner"] == "none" and "keeps running" in conclude_experiment(private_settings, even)
    assert champion_tag(private_settings) == served.tag and store.active() is not None

    log(3000, {"champion": 0.05, "challenger": 0.5})
    won = readout(store.active(), read_logs(store, experiment.id))
    assert won["winner"] == "challenger", won["tests"]
    assert "promoted" in conclude_experiment(private_settings, won)
    assert champion_tag(private_settings) == challenger and store.active() is None
