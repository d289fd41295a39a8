"""Campaigns: creation, start/pause/stop, reports."""
