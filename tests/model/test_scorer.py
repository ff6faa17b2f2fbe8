"""The one scoring path: seen filter with backfill, rules, sources, and one request = one row of a batch."""

from __future__ import annotations

import numpy as np
import pytest
from toys import TOY_METADATA, toy_config, toy_fit_data

from models.pipeline import fit_pipeline
from models.scorer import BatchScorer, Query, _merge
from recflow.settings import ServingSettings

N_ITEMS = 40


@pytest.fixture(scope="module")
def bundle():
    rng = np.random.default_rng(5)
    histories, targets = [], []
    for _ in range(300):
        start = rng.integers(0, N_ITEMS)
        walk = (start + np.arange(rng.integers(4, 8))) % N_ITEMS
        histories.append(walk[:-1])
        targets.append(int(walk[-1]))
    return fit_pipeline(toy_fit_data(histories, targets), toy_config(), TOY_METADATA).serving


def test_merge_interleaves_without_duplicates_and_says_where_each_came_from():
    rows, source = _merge(np.array([[5, 1, 2, 9]]), np.array([[1, 7, 5, 8]]), 5)
    assert rows.tolist() == [[5, 1, 7, 2, 9]]
    assert source.tolist() == [[2, 2, 1, 0, 0]]  # 5 and 1 in both lists, 7 co-occurrence only
    rows, _ = _merge(np.array([[3, -1]]), np.array([[-1, -1]]), 3)
    assert rows.tolist() == [[3, -1, -1]]


def test_excluded_items_never_show_and_the_list_is_backfilled(bundle):
    scorer = BatchScorer(bundle)
    history = ["i10", "i11", "i12"]
    everything_but_three = [f"i{i:02d}" for i in range(N_ITEMS - 3)]
    ranked = scorer.recommend([Query(history=history, exclude=everything_but_three)], 10)[0]
    ids = bundle.catalogue.ids(ranked.rows)
    assert sorted(ids) == ["i37", "i38", "i39"]  # all that is left: never an excluded item
    ranked = scorer.recommend([Query(history=history, exclude=["i13"])], 10)[0]
    ids = bundle.catalogue.ids(ranked.rows)
    assert len(ids) == len(set(ids)) == 10 and "i13" not in ids
    assert ids[0] == "i14"  # the walk continues past the excluded item
    assert list(ranked.scores) == sorted(ranked.scores, reverse=True)
    assert set(ranked.sources) <= {"two-tower", "co-occurrence", "both", "popular"}


def test_a_small_candidate_set_is_filled_with_popular_items(bundle):
    config = bundle.config
    bundle.metadata["hyperparameters"]["ranker"]["candidates"] = 4
    try:
        bundle._config = type(config).from_dict(bundle.metadata["hyperparameters"])
        ranked = BatchScorer(bundle).recommend([Query(history=["i01", "i02"])], 8)[0]
    finally:
        bundle.metadata["hyperparameters"] = config.to_dict()
        bundle._config = config
    assert len(ranked.rows) == 8 and ranked.sources[4:] == ["popular"] * 4
    assert list(ranked.scores[4:]) == [0.0] * 4


def test_at_most_m_items_per_category(bundle):
    scorer = BatchScorer(bundle, serving=ServingSettings(max_per_category=1))
    ranked = scorer.recommend([Query(history=["i20", "i21"])], 5)[0]
    categories = bundle.catalogue.categories[ranked.rows]
    assert len(ranked.rows) == 5 and len(set(categories)) == 5


def test_one_query_gives_the_same_list_as_its_row_in_a_batch(bundle):
    rng = np.random.default_rng(0)
    queries = [
        Query(history=bundle.catalogue.ids(rng.choice(N_ITEMS, size=rng.integers(1, 6), replace=False)))
        for _ in range(64)
    ]
    scorer = BatchScorer(bundle)
    batch = scorer.recommend(queries, 10)
    for query, row in zip(queries, batch, strict=True):
        single = scorer.recommend([query], 10)[0]
        assert single.rows.tolist() == row.rows.tolist()
        np.testing.assert_allclose(single.scores, row.scores, rtol=1e-5, atol=1e-7)


def test_unknown_history_items_are_ignored(bundle):
    scorer = BatchScorer(bundle)
    with_unknown = scorer.recommend([Query(history=["i05", "not-an-item", "i06"])], 10)[0]
    without = scorer.recommend([Query(history=["i05", "i06"])], 10)[0]
    assert with_unknown.rows.tolist() == without.rows.tolist()


def test_item_features_must_match_the_catalogue(bundle):
    with pytest.raises(ValueError, match="catalogue order"):
        BatchScorer(bundle).set_item_features(np.zeros((3, 2)))


def test_sparse_cooccurrence_top_equals_the_dense_path():
    """The co-occurrence source's top lists and values without a dense [users, items] matrix are those
    of the dense scores plus the tie-break with excluded items at -inf (`dense_top`)."""
    from scipy import sparse

    from models.scorer import sparse_top

    rng = np.random.default_rng(3)
    n_users, n_items, n = 40, 500, 30
    scores = sparse.random(n_users, n_items, density=0.03, random_state=4, format="csr", dtype=np.float32)
    scores.data[scores.indptr[5] : scores.indptr[6]] = 0  # a user without any co-occurrence: all backfill
    scores.eliminate_zeros()
    tie_break = 1e-6 * rng.random(n_items)
    exclude = [rng.choice(n_items, size=rng.integers(0, 60), replace=False) for _ in range(n_users)]
    exclude[7] = scores[7].indices[:3]  # excluded items that do co-occur
    dense = scores.toarray() + tie_break[None, :]
    for u in range(n_users):
        dense[u, exclude[u]] = -np.inf
    got = sparse_top(scores, tie_break, np.lexsort((np.arange(n_items), -tie_break)), exclude, n)
    np.testing.assert_array_equal(got.top, dense_top(dense, n))
    rows = rng.integers(0, n_items, size=(n_users, 50))
    np.testing.assert_array_equal(got.values(rows), np.take_along_axis(dense, rows, axis=1))
    assert (got.top[5] >= 0).all() and not np.isin(got.top[7], exclude[7]).any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_cooccurrence_top_breaks_ties_by_row_as_the_dense_path(seed):
    """Many equal scores (small integer counts, a tie-break that is zero for most items): the n best
    still come in the dense path's order, ties by row, whether they co-occur or are backfilled."""
    from scipy import sparse

    from models.scorer import sparse_top

    rng = np.random.default_rng(seed)
    n_users, n_items, n = 30, 300, 25
    scores = sparse.random(n_users, n_items, density=0.2, random_state=seed, format="csr", dtype=np.float32)
    scores.data = rng.integers(1, 3, size=len(scores.data)).astype(np.float32)
    tie_break = np.where(rng.random(n_items) < 0.1, 1e-6 * rng.integers(1, 3, size=n_items), 0.0)
    exclude = [rng.choice(n_items, size=rng.integers(0, 250), replace=False) for _ in range(n_users)]
    dense = scores.toarray() + tie_break[None, :]
    for u in range(n_users):
        dense[u, exclude[u]] = -np.inf
    got = sparse_top(scores, tie_break, np.lexsort((np.arange(n_items), -tie_break)), exclude, n)
    columns = np.arange(n_items)
    for u in range(n_users):  # the exact order: every column by value, ties by column
        order = np.lexsort((columns, -dense[u]))[:n]
        np.testing.assert_array_equal(got.top[u], np.where(np.isfinite(dense[u, order]), order, -1))


def dense_top(scores: np.ndarray, n: int) -> np.ndarray:
    """The reference the sparse path must equal: the `n` best finite columns per row, best first, ties
    by column, -1 where fewer are finite (what the scorer ranked before it went sparse)."""
    n = min(n, scores.shape[1])
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    picked = np.take_along_axis(scores, part, axis=1)
    top = np.take_along_axis(part, np.lexsort((part, -picked), axis=1), axis=1)
    return np.where(np.isfinite(np.take_along_axis(scores, top, axis=1)), top, -1)
