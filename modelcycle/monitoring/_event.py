"""The name of the event a drifting window emits.

Deployed automations (prefect.yaml's `retrain-on-drift` trigger) match on this string, so
renaming it silently disconnects retraining from monitoring.
"""

DRIFT_EVENT = "modelcycle.model.drift-detected"
