"""Prefect flows: orchestrate the stages in features/, models/, serving/ and monitoring/."""
