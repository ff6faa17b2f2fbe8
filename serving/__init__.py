"""BentoML packaging and the recommendation service."""
