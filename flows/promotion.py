"""Champion / challenger: store a trained package, gate it against the serving champion, promote a winner."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger

from recflow.settings import Settings


def gate_and_promote(settings: Settings, bundle_path: Path, provenance: dict) -> dict:
    """Put a trained package in the model store and promote it only if it beats the champion.

    The gate (`monitoring.gate.compare_packages`) scores the challenger's validation package and the
    champion through the one scoring path on the challenger's held-out days that the champion never
    learned, and compares NDCG@K. The decision and both evaluations are written into the
    challenger's metadata; a losing challenger stays in the store, unpromoted. With no champion
    yet, the first package is promoted.

    Returns:
        {"tag", "promoted", "reason", "gate"} (gate: the decision as a dict, or None for a first model).
    """
    from features.store import open_store
    from models.bundle import ModelBundle
    from models.train import VALIDATION_DIR
    from monitoring.gate import compare_packages
    from serving.package import champion_tag, model_info, promote, save_to_model_store

    current = champion_tag(settings)
    if current is None:
        tag = save_to_model_store(settings, bundle_path, provenance)
        promote(settings, tag)
        return {"tag": tag, "promoted": True, "reason": "no champion yet", "gate": None}
    champion = ModelBundle.load(model_info(settings, current)[0])
    challenger = ModelBundle.load(Path(bundle_path) / VALIDATION_DIR)
    decision = compare_packages(settings, open_store(settings), champion, challenger)
    tag = save_to_model_store(
        settings, bundle_path, provenance | {"gate": decision.to_dict(), "champion": current}
    )
    get_run_logger().info("challenger %s against champion %s: %s", tag, current, decision.reason)
    if decision.promote and settings.experiments.require_online_win:
        reason = start_online_trial(settings, tag, current)
        get_run_logger().info(reason)
        return {"tag": tag, "promoted": False, "reason": reason, "gate": decision.to_dict()}
    if decision.promote:
        promote(settings, tag)
    return {"tag": tag, "promoted": decision.promote, "reason": decision.reason, "gate": decision.to_dict()}


def start_online_trial(settings: Settings, tag: str, champion: str) -> str:
    """The offline gate passed and an online win is required: start the experiment instead of promoting."""
    from recflow.experiments import ExperimentError, ExperimentStore

    try:
        experiment = ExperimentStore(settings).start(tag, settings.experiments.share, False, champion)
    except ExperimentError as e:
        return f"passed the offline gate, not promoted: an online win is required and {e}"
    return (
        f"passed the offline gate; experiment {experiment.id} started for {experiment.share:.0%} of users; "
        "`recflow experiment readout --conclude` promotes it if it wins online"
    )


def conclude_experiment(settings: Settings, result: dict) -> str:
    """After a readout: promote a winning challenger and stop; stop when the champion wins; else keep running."""
    from recflow.experiments import ExperimentStore
    from serving.package import promote

    experiment = result["experiment"]
    if experiment["stopped_at"] is not None:
        return f"experiment {experiment['id']} already stopped: nothing to conclude"
    store = ExperimentStore(settings)
    if result["winner"] == "challenger":
        promote(settings, experiment["challenger"])
        store.stop()
        return f"challenger {experiment['challenger']} won online: promoted, experiment stopped"
    if result["winner"] == "champion":
        store.stop()
        return f"champion won online: challenger {experiment['challenger']} not promoted, experiment stopped"
    return "no significant difference yet: the experiment keeps running"
