"""The DCN-v2 ranker: real fits on candidate features built by hand."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models.ranker import RankerConfig, fit_ranker, ranker_logits, scale_numeric


def test_scale_numeric_compresses_and_zeroes_missing_values():
    out = scale_numeric(np.array([0.0, np.e - 1, -(np.e - 1), np.nan, np.inf]))
    np.testing.assert_allclose(out, [0.0, 1.0, -1.0, 0.0, 0.0], atol=1e-6)
    assert out.dtype == np.float32


def test_ranker_learns_to_follow_the_feature_that_predicts_the_target():
    # 30 candidates with 3 features; the positive is always the one with the largest 2nd feature
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(300, 30, 3)).astype(np.float32)
    target = feats[:, :, 1].argmax(axis=1)
    labels = np.zeros((300, 30), np.float32)
    labels[np.arange(300), target] = 1.0
    model, _ = fit_ranker(feats, labels, RankerConfig(learning_rate=1e-2, batch_size=32), epochs=15)
    top = ranker_logits(model, feats).argmax(axis=1)
    assert (top == target).mean() > 0.9
    assert isinstance(model(tf.constant(feats[:2])), tf.Tensor)


def test_early_stopping_keeps_the_best_epoch_and_no_positive_is_an_error():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(64, 10, 2)).astype(np.float32)
    labels = np.zeros((64, 10), np.float32)
    labels[:, 0] = 1.0
    scores = iter([0.1, 0.4, 0.3, 0.2, 0.1, 0.0])
    _, history = fit_ranker(
        feats, labels, RankerConfig(max_epochs=6, patience=2), validate=lambda m: next(scores)
    )
    assert history["best_epoch"] == 2 and [e for e, _ in history["evaluations"]] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="nothing to train the ranker on"):
        fit_ranker(feats, np.zeros_like(labels), RankerConfig())


def test_a_feature_constant_in_training_cannot_scramble_the_order_later():
    """Every user's tenure was 6 days at training time; 8 days at serving time must change nothing."""
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(200, 20, 2)).astype(np.float32)
    feats[:, :, 1] = np.log1p(6.0)  # constant in training
    target = feats[:, :, 0].argmax(axis=1)
    labels = np.zeros((200, 20), np.float32)
    labels[np.arange(200), target] = 1.0
    model, _ = fit_ranker(feats, labels, RankerConfig(learning_rate=1e-2, batch_size=32), epochs=10)
    later = feats.copy()
    later[:, :, 1] = np.log1p(8.0)
    np.testing.assert_allclose(ranker_logits(model, later), ranker_logits(model, feats), rtol=1e-5, atol=1e-5)
    assert (ranker_logits(model, later).argmax(axis=1) == target).mean() > 0.9


def test_a_feature_that_grows_with_time_cannot_leave_the_range_it_was_trained_on():
    """A time proxy (the grocery log's tenure: every household 'signed up' on the log's first day, so a
    household's tenure is the calendar; missing for a few) takes values at serving time that training
    never saw. Months later it is clipped to the training range instead of being extrapolated."""
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(200, 20, 2)).astype(np.float32)
    feats[:, :, 1] = np.log1p(180.0)
    feats[:20, :, 1] = 0.0  # missing: the feature varies in training, so it is standardised, not ignored
    target = feats[:, :, 0].argmax(axis=1)
    labels = np.zeros((200, 20), np.float32)
    labels[np.arange(200), target] = 1.0
    model, _ = fit_ranker(feats, labels, RankerConfig(learning_rate=1e-2, batch_size=32), epochs=10)
    np.testing.assert_allclose(model.feature_max, feats.reshape(-1, 2).max(axis=0))
    later = feats.copy()
    later[20:, :, 1] = np.log1p(340.0)  # five months on: beyond anything training saw
    np.testing.assert_allclose(ranker_logits(model, later), ranker_logits(model, feats), rtol=1e-5, atol=1e-5)
    # its unclipped twin (same weights) agrees inside the range and extrapolates outside it
    twin = model.unclipped()
    np.testing.assert_allclose(ranker_logits(twin, feats), ranker_logits(model, feats), rtol=1e-5, atol=1e-5)
    assert not np.allclose(ranker_logits(twin, later), ranker_logits(model, later), atol=1e-3)
