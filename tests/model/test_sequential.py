"""The sequential TFRS two-tower and the DCN-v2 re-ranker: real fits of a few steps on toy sequences."""

from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

from models.sequential import (
    RANKER_FEATURES,
    RankerConfig,
    SequentialConfig,
    candidate_features,
    fit_ranker,
    fit_sequential,
    merge_candidates,
    pad_left,
    refit_sequential,
    rerank,
    save_sequential,
    training_dataset,
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
    folder = save_sequential(model, tmp_path / "model")
    assert json.loads((folder / "config.json").read_text())["max_len"] == 6


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
        assert configure_precision(TrainSettings(mixed_precision=True)) == "mixed_float16"
        model, _ = fit_sequential(_walks(), ATTRS, config, epochs=12)
    finally:
        configure_precision(TrainSettings())
    assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    assert model.sequence_tower.compute_dtype == "float16"
    scores = model.scores([np.array([3, 4, 5]), np.array([10, 11])])
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    assert [int(np.argmax(s)) for s in scores] == [6, 12]


def test_merge_candidates_interleaves_without_duplicates():
    merged = merge_candidates(np.array([[5, 1, 2, 9]]), np.array([[1, 7, 5, 8]]), 5)
    assert merged.tolist() == [[5, 1, 7, 2, 9]]


def test_ranker_learns_to_follow_the_better_source():
    # the target is always the top co-occurrence item, never the top retrieval item
    rng = np.random.default_rng(0)
    n_users, n = 200, 30
    histories = [np.array([i % 5]) for i in range(n_users)]
    retrieval = rng.normal(size=(n_users, n)).astype(np.float32)
    cooc = rng.random((n_users, n)).astype(np.float32)
    targets = np.array([int(np.argmax(np.where(np.arange(n) >= 5, c, -1))) for c in cooc])
    retrieval[np.arange(n_users), targets] -= 3.0
    pop = np.ones(n)
    attrs = np.ones((n, 1), np.int32)
    cand, feats = candidate_features(retrieval.copy(), cooc.copy(), histories, pop, attrs, 10)
    assert feats.shape == (n_users, 10, len(RANKER_FEATURES))
    assert not np.isin(cand[0], histories[0]).any()  # the history is masked
    labels = (cand == targets[:, None]).astype(np.float32)
    assert labels.sum(axis=1).min() == 1  # top co-occurrence item is always a candidate
    model, _ = fit_ranker(feats, labels, RankerConfig(learning_rate=1e-2, batch_size=32), epochs=8)
    ranked = rerank(model, cand, feats)
    assert (ranked[:, 0] == targets).mean() > 0.9
    assert isinstance(model(tf.constant(feats[:2])), tf.Tensor)
