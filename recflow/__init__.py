"""recflow: a workflow-orchestrated MLOps platform for e-commerce recommendations."""

__version__ = "0.1.0"
