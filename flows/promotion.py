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
    if decision.promote:
        promote(settings, tag)
    return {"tag": tag, "promoted": decision.promote, "reason": decision.reason, "gate": decision.to_dict()}
