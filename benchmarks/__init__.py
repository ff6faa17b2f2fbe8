"""Studies and benchmark harnesses (`recflow bench ...`): never imported by the platform, never shipped in the bento."""
