"""Champion / challenger: store a trained bundle, gate it against the serving champion, promote a winner."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from prefect import get_run_logger

from recflow.settings import Settings


def gate_and_promote(settings: Settings, bundle_path: Path, provenance: dict) -> dict:
    """Put a trained bundle in the model store and promote it only if it beats the champion.

    The gate (`monitoring.gate.decide_promotion`) compares the hit rate of the lists each model
    serves on the newest validated day (held out from the challenger's training) and on the golden
    day, fixed at the first promotion (`<home>/monitoring/golden.json`). Both evaluations and the
    decision are written into the challenger's metadata; a losing challenger stays in the store,
    unpromoted. With no champion yet, the first model is promoted.

    Returns:
        {"tag", "promoted", "reason", "gate"} (gate: the decision as a dict, or None for a first model).
    """
    from flows.simulate import day_quality
    from models.bundle import ModelBundle
    from monitoring.gate import decide_promotion
    from recflow.data.batches import list_batches
    from serving.package import champion_tag, model_info, promote, save_to_model_store

    days = [b.day for b in list_batches(settings.validated_dir)]
    newest, train_days = days[-1], days[: -settings.data.holdout_days]
    golden_file = settings.home / "monitoring" / "golden.json"
    current = champion_tag(settings)
    if current is None:
        tag = save_to_model_store(settings, bundle_path, provenance)
        promote(settings, tag)
        golden_file.parent.mkdir(parents=True, exist_ok=True)
        golden_file.write_text(json.dumps({"day": newest.isoformat()}))
        return {"tag": tag, "promoted": True, "reason": "no champion yet", "gate": None}
    golden = json.loads(golden_file.read_text())["day"] if golden_file.exists() else newest.isoformat()
    golden_day = date.fromisoformat(golden)
    champion = ModelBundle.load(model_info(settings, current)[0])
    challenger = ModelBundle.load(bundle_path)
    decision = decide_promotion(
        day_quality(champion, settings, newest, train_days).to_dict(),
        day_quality(challenger, settings, newest, train_days).to_dict(),
        day_quality(champion, settings, golden_day, train_days).to_dict(),
        day_quality(challenger, settings, golden_day, train_days).to_dict(),
        settings.monitoring.promotion_margin,
        metric=f"hit_rate@{settings.train.k}",
        golden_tolerance=settings.monitoring.golden_tolerance,
    )
    tag = save_to_model_store(
        settings, bundle_path, provenance | {"gate": decision.to_dict(), "champion": current}
    )
    get_run_logger().info("challenger %s against champion %s: %s", tag, current, decision.reason)
    if decision.promote:
        promote(settings, tag)
    return {"tag": tag, "promoted": decision.promote, "reason": decision.reason, "gate": decision.to_dict()}
