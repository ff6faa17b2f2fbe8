"""The sequential TFRS two-tower: real fits of a few steps on toy sequences."""

from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

from models.sequential import (
    SequentialConfig,
    fit_sequential,
    pad_left,
    refit_sequential,
    training_dataset,
    training_windows,
)

N_ITEMS = 24
ATTRS = np.array([[1 + i % 4, 5 + i // 8] for i in range(N_ITEMS)], dtype=np.int32)


def _walks(n_users: int = 120, seed: int = 0) -> list[np.ndarray]:
    """Users walk through consecutive items: the next item is always last + 1."""
    rng = np.random.default_rng(seed)
    return [np.arange(s, s + rng.integers(4, 8)) for s in rng.integers(0, N_ITEMS - 8, n_users)]


def test_pad_left_keeps_the_newest_items():
    out = pad_left([np.array([1, 2, 3, 4]), np.array([7])], 3)
    assert out.tolist() == [[2, 3, 4], [0, 0, 7]]


def test_training_dataset_shifts_targets_by_one():
    config = SequentialConfig(max_len=4, batch_size=8)
    batch = next(iter(training_dataset([np.array([0, 1, 2])], config, seed=0)))
    assert batch["inputs"].numpy().tolist() == [[0, 0, 1, 2]]  # model indices are item + 1
    assert batch["targets"].numpy().tolist() == [[0, 0, 2, 3]]
    assert batch["weights"].numpy().tolist() == [[0, 0, 1, 1]]


def test_windows_cut_long_histories_from_the_end_and_weigh_targets_by_event_type():
    config = SequentialConfig(max_len=3, max_windows=2)
    history = np.arange(7)  # 7 interactions: windows [3..6] and [0..3] (sharing item 3)
    weights = np.array([1, 1, 1, 3, 1, 1, 3], np.float32)  # purchases of items 3 and 6
    out = training_windows([history, np.array([5])], config, [weights, np.ones(1)])
    assert out["inputs"].tolist() == [[4, 5, 6], [1, 2, 3]]  # the one-item history gives no window
    assert out["targets"].tolist() == [[5, 6, 7], [2, 3, 4]]
    raw = np.array([[1, 1, 3], [1, 1, 3]], np.float32)
    np.testing.assert_allclose(out["weights"], raw / raw.mean())  # normalised to mean 1
    one = training_windows([history], SequentialConfig(max_len=3))  # max_windows=1: the newest only
    assert one["inputs"].tolist() == [[4, 5, 6]]


def test_sequential_model_learns_the_next_item(tmp_path):
    config = SequentialConfig(
        max_len=6, dim=16, heads=2, blocks=1, dropout=0.0, learning_rate=1e-2, batch_size=32
    )
    histories = _walks()
    before = fit_sequential(histories, ATTRS, config, epochs=1)[0]
    model, history = fit_sequential(histories, ATTRS, config, epochs=12, log_dir=tmp_path / "tb")
    queries = [np.array([3, 4, 5]), np.array([10, 11])]
    scores = model.scores(queries)
    assert scores.shape == (2, N_ITEMS)
    hits = [int(np.argmax(s)) for s in scores]
    assert hits == [6, 12], hits
    assert scores[0, 6] - scores[0].mean() > before.scores(queries)[0, 6] - before.scores(queries)[0].mean()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    assert json.loads(model.config.to_json())["max_len"] == 6
    assert SequentialConfig.from_dict({**json.loads(config.to_json()), "unknown": 1}) == config


def test_sampled_softmax_learns_the_next_item_and_masks_accidental_hits():
    """8 uniform negatives of 24 items per batch: the same walks are learned as with the full softmax."""
    config = SequentialConfig(
        max_len=6, dim=16, heads=2, blocks=1, dropout=0.0, learning_rate=1e-2, batch_size=32, negatives=8
    )
    model, _ = fit_sequential(_walks(), ATTRS, config, epochs=12)
    hits = [int(np.argmax(s)) for s in model.scores([np.array([3, 4, 5]), np.array([10, 11])])]
    assert hits == [6, 12], hits

    batch = next(iter(training_dataset(_walks(), config, seed=0)))
    tf.random.set_seed(0)
    sampled = model.compute_loss(batch, training=True)
    full = model.compute_loss(batch, training=False)  # evaluation keeps the full softmax
    # 1 positive against 8 negatives: a smaller partition function than against all 24 items
    assert 0.0 < float(sampled) < float(full)
    # every position's target is item 1: a sampled item 1 is an accidental hit and must be masked
    only_targets = {**batch, "targets": tf.where(batch["targets"] > 0, 1, 0)}
    wide = SequentialConfig(**{**json.loads(config.to_json()), "negatives": N_ITEMS - 1})
    model.config = wide
    assert float(model.compute_loss(only_targets, training=True)) > 0.0  # 22 true negatives remain
    narrow = SequentialConfig(**{**json.loads(config.to_json()), "negatives": 1})
    model.config = narrow
    tf.random.set_seed(1)  # the draws are seeded: P(item 1 never drawn in 300) = (23/24)^300 < 1e-5
    losses = [float(model.compute_loss(only_targets, training=True)) for _ in range(300)]
    assert min(losses) == 0.0  # the one sampled negative was item 1 (the target): masked, nothing to beat


def test_early_stopping_restores_the_best_epoch():
    config = SequentialConfig(
        max_len=6, dim=8, heads=1, blocks=1, batch_size=64, max_epochs=5, eval_every=1, patience=1
    )
    scores = iter([0.3, 0.5, 0.4, 0.2, 0.1])
    _, history = fit_sequential(_walks(40), ATTRS, config, validate=lambda m, epoch: next(scores))
    assert history["best_epoch"] == 2
    assert [e for e, _ in history["evaluations"]] == [1, 2, 3]  # stopped after one evaluation without gain


def test_warm_refit_continues_from_the_chosen_model_and_leaves_it_untouched(tmp_path):
    config = SequentialConfig(
        max_len=6, dim=16, heads=2, blocks=1, dropout=0.0, learning_rate=1e-2, batch_size=32, refit_epochs=8
    )
    histories = _walks()
    chosen, _ = fit_sequential(histories, ATTRS, config, epochs=4)
    queries = [np.array([3, 4, 5]), np.array([10, 11])]
    before = chosen.scores(queries)
    np.testing.assert_allclose(refit_sequential(chosen, histories, ATTRS, epochs=0).scores(queries), before)
    refit = refit_sequential(chosen, histories, ATTRS, log_dir=tmp_path / "tb")  # config.refit_epochs more
    np.testing.assert_array_equal(chosen.scores(queries), before)
    after = refit.scores(queries)
    assert not np.allclose(after, before)
    assert [int(np.argmax(s)) for s in after] == [6, 12]
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())


def test_mixed_precision_trains_in_float16_with_float32_scores():
    from models.hardware import configure_precision
    from recflow.settings import TrainSettings

    config = SequentialConfig(
        max_len=6, dim=16, heads=2, blocks=1, dropout=0.0, learning_rate=1e-2, batch_size=32
    )
    try:
        assert (
            configure_precision(TrainSettings(mixed_precision=True, mixed_dtype="float16")) == "mixed_float16"
        )
        model, _ = fit_sequential(_walks(), ATTRS, config, epochs=12)
    finally:
        configure_precision(TrainSettings(mixed_precision=False))
    assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    assert model.sequence_tower.compute_dtype == "float16"
    scores = model.scores([np.array([3, 4, 5]), np.array([10, 11])])
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    assert [int(np.argmax(s)) for s in scores] == [6, 12]


def test_mixed_bfloat16_trains_without_loss_scaling_and_scores_in_float32():
    """What mixed precision means on a CPU: bfloat16 compute, float32 variables and softmax."""
    from models.hardware import configure_precision
    from recflow.settings import TrainSettings

    config = SequentialConfig(
        max_len=6, dim=16, heads=2, blocks=1, dropout=0.0, learning_rate=1e-2, batch_size=32
    )
    try:
        assert (
            configure_precision(TrainSettings(mixed_precision=True, mixed_dtype="bfloat16"))
            == "mixed_bfloat16"
        )
        model, _ = fit_sequential(_walks(), ATTRS, config, epochs=12)
    finally:
        configure_precision(TrainSettings(mixed_precision=False))
    assert not isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    assert (
        model.sequence_tower.compute_dtype == "bfloat16" and model.sequence_tower.variable_dtype == "float32"
    )
    scores = model.scores([np.array([3, 4, 5]), np.array([10, 11])])
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    assert [int(np.argmax(s)) for s in scores] == [6, 12]
