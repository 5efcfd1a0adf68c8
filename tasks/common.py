"""Options every modelcycle task shares."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

# Tasks pass DataFrames and fitted models in memory: hashing them for a cache key would cost
# seconds at 1M rows and persisting them would copy them to disk. The artifact store and
# the registry are the persistence boundaries.
TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
