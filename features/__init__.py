"""Feature store (Feast) and the data contract (Great Expectations)."""
