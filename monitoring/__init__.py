"""Evidently drift reports, dashboards and the champion/challenger gate."""
