"""Prefect tasks: one logical step or side effect each, thin wrappers over `modelcycle`."""
