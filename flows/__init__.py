"""Prefect flows: orchestration only; each reads as a story of task calls."""
