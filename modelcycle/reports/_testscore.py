"""The ML Test Score (Breck, Cai, Nielsen, Salib, Sculley: "The ML Test Score: A Rubric for ML
Production Readiness and Technical Debt Reduction", IEEE Big Data 2017), scored from what
modelcycle recorded about one version.

The rubric's 28 tests, 7 in each of four sections (data, model, infrastructure, monitoring).
Each scores 0 (no evidence), 0.5 (done by hand, with the result documented) or 1 (run
automatically, repeatedly); a section's score is the sum of its tests, and the final score is
the minimum of the four sections (the paper: every section matters, so the weakest one counts).

A test scores only what the records show for this version, with the evidence cited: what
modelcycle does not measure (a feature's cost, the time to add a feature, a simpler baseline)
scores 0 and says so, rather than being credited because the code could.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelcycle.reports._evidence import Evidence, VersionRecords

AUTOMATED, MANUAL, NONE = 1.0, 0.5, 0.0
SECTIONS = ("data", "model", "infrastructure", "monitoring")


@dataclass(frozen=True)
class TestResult:
    section: str
    number: int
    title: str
    score: float
    how: str
    evidence: tuple[Evidence, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.section}-{self.number}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.key,
            "title": self.title,
            "score": self.score,
            "how": self.how,
            "evidence": [e.to_dict() for e in self.evidence],
        }


@dataclass(frozen=True)
class TestScore:
    tests: tuple[TestResult, ...]

    @property
    def sections(self) -> dict[str, float]:
        return {s: sum(t.score for t in self.tests if t.section == s) for s in SECTIONS}

    @property
    def final(self) -> float:
        """The rubric's final score: the minimum of the four section sums."""
        return min(self.sections.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "rubric": "ML Test Score (Breck et al. 2017)",
            "final": self.final,
            "sections": self.sections,
            "tests": [t.to_dict() for t in self.tests],
        }


Scorer = Callable[[VersionRecords], tuple[float, str, list[Evidence]]]


def _result(score: float, how: str, *evidence: Evidence) -> tuple[float, str, list[Evidence]]:
    """A score stands only on verified evidence: unverified evidence scores 0."""
    if score and any(not e.verified for e in evidence):
        bad = "; ".join(e.cite() for e in evidence if not e.verified)
        return NONE, f"{how} -- but the evidence does not verify: {bad}", list(evidence)
    return score, how, list(evidence)


def _checks(r: VersionRecords, kind: str) -> list[dict[str, Any]]:
    return [c for c in r.version.gate.get("checks", []) if c.get("kind") == kind]


def _judged(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in checks if c.get("judged", True)]


def _not_recorded(what: str) -> tuple[float, str, list[Evidence]]:
    return NONE, f"not recorded: {what}", []


# -- data ----------------------------------------------------------------------------------


def _data_schema(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    declared = set(r.config.get("columns") or {})
    features = r.config.get("features") or {}
    used = set(features.get("numeric", [])) | set(features.get("categorical", []))
    if not used or not declared:
        return _not_recorded("the config declares no column schema")
    covered = len(used & declared)
    score = AUTOMATED if covered == len(used) else MANUAL
    how = (
        f"{covered} of {len(used)} features have a declared schema (type, range, categories), "
        "validated on every training run and every monitored window; profile.json records "
        "the distributions"
    )
    return _result(score, how, r.file("manifest.json"), r.file("profile.json"))


def _data_beneficial(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    if "importance.csv" not in r.files:
        return _not_recorded("no permutation importance in the run folder")
    return _result(
        AUTOMATED,
        "permutation importance of every feature on the holdout, computed by every training run",
        r.file("importance.csv"),
    )


def _data_cost(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    return _not_recorded(
        "the cost of each feature (latency, memory, upstream dependencies) is not measured; "
        "only the whole model's latency and size are (gate/budgets.json)"
    )


def _data_meta(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    pii = r.config.get("pii_columns") or []
    if not pii:
        return _not_recorded("no columns are declared unsuitable (pii_columns is empty)")
    return _result(
        AUTOMATED,
        f"columns declared unsuitable ({len(pii)} PII columns) are refused as features by "
        "the config's validation, every run",
        r.file("manifest.json"),
    )


def _data_privacy(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    pii = r.config.get("pii_columns") or []
    if not pii:
        return _not_recorded("no PII columns declared, so no privacy control applies")
    return _result(
        AUTOMATED,
        "declared PII columns are dropped when the data is read (never in the run folder), and "
        "the prediction service refuses or drops them before anything is logged",
        r.file("manifest.json"),
    )


def _data_new_features(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    return _not_recorded("the calendar time to add a feature is not measured")


def _data_feature_code(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    return _not_recorded(
        "no test results are recorded with the version (the preprocessing is one scikit-learn "
        "Pipeline shared by training and serving, but its tests' outcome is not in the record)"
    )


# -- model ---------------------------------------------------------------------------------


def _model_reviewed(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    code = r.version.code_version
    if code.endswith("-dirty") or len(code) < 40:
        return _not_recorded(f"code version {code} is not a clean commit")
    approvals = [e for e in r.audit if e.action == "approve"]
    if approvals:
        return _result(
            AUTOMATED,
            f"config and code at commit {code[:12]}, and a reviewer approved the version",
            r.file("manifest.json"),
            *(r.entry(e) for e in approvals),
        )
    return _result(
        MANUAL,
        f"config and code checked in at commit {code[:12]}; no review recorded in the audit log",
        r.file("manifest.json"),
    )


def _model_online_offline(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    with_labels = [m for m in r.monitoring if (m.quality or {}).get("realised")]
    if not with_labels:
        return _not_recorded("no monitoring window of this version with realised labels")
    return _result(
        AUTOMATED,
        f"{len(with_labels)} monitoring windows compare realised quality with the holdout's",
        *(m.evidence for m in with_labels),
    )


def _model_tuned(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    search = (r.config.get("model") or {}).get("search")
    if not search:
        return _not_recorded("no hyperparameter search in the config (parameters fixed)")
    return _result(
        AUTOMATED,
        f"cross-validated search over {sorted(search.get('space', {}))} in every training run",
        r.file("manifest.json"),
        r.file("card.json"),
    )


def _model_staleness(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    if len(r.monitoring) < 2:
        return _not_recorded("fewer than two monitoring windows of this version")
    return _result(
        AUTOMATED,
        f"{len(r.monitoring)} monitoring windows over time record how drift and quality "
        "change as the model ages",
        *(m.evidence for m in r.monitoring),
    )


def _model_simpler(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    return _not_recorded(
        "no simpler baseline model is trained for comparison (the gate compares with the "
        "champion, not with a simpler model)"
    )


def _model_slices(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    judged = _judged(_checks(r, "slices"))
    if not judged:
        return _not_recorded("no slice floors judged by the gate")
    return _result(
        AUTOMATED,
        f"{len(judged)} slice checks judged by the gate",
        r.file("slices.json"),
        r.file("gate.json"),
    )


def _model_inclusion(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    fairness = _checks(r, "fairness")
    if _judged(fairness):
        return _result(
            AUTOMATED,
            f"{len(_judged(fairness))} fairness limits judged across sensitive groups",
            r.file("gate/fairness.json"),
            r.file("gate.json"),
        )
    if fairness:
        return _result(
            MANUAL,
            "fairness measured and reported across sensitive groups, not judged by a limit",
            r.file("gate/fairness.json"),
        )
    return _not_recorded("no fairness measurement")


# -- infrastructure ------------------------------------------------------------------------


def _infra_reproducible(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    runs = [e for e in r.audit if e.action == "reproduce" and e.version == r.version.version]
    same = [e for e in runs if e.details.get("identical")]
    if not same:
        detail = "a re-run gave a different model file" if runs else "never re-run"
        return _not_recorded(f"reproduction ({detail}; `modelcycle models reproduce`)")
    return _result(
        MANUAL,
        "re-run by hand (`modelcycle models reproduce`): identical model file",
        *(r.entry(e) for e in same),
    )


def _infra_spec_unit(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    return _result(
        AUTOMATED,
        "the config is validated against its schema and the estimator pipeline is built and "
        "checked before any data is read, on every run; the config hash is registered",
        r.registry_row(),
        r.file("manifest.json"),
    )


def _infra_integration(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    return _not_recorded("no integration test result is recorded with the version")


def _infra_validated(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    judged = _judged(r.version.gate.get("checks", []))
    if not judged:
        return _not_recorded("no gate checks judged")
    return _result(
        AUTOMATED,
        f"the gate judged {len(judged)} checks before registration "
        f"(decision {r.version.gate.get('decision')})",
        r.file("gate.json"),
        r.registry_row(),
    )


def _infra_debuggable(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    needed = ("importance.csv", "reference/predictions.parquet")
    if not all(n in r.files for n in needed):
        return _not_recorded("no importance or reference predictions in the run folder")
    return _result(
        AUTOMATED,
        "permutation importance and the model's predictions on its reference rows are kept; "
        "`modelcycle trace` walks any logged prediction back to them",
        *(r.file(n) for n in needed),
    )


def _infra_canary(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    canaries = [e for e in r.audit if e.action in ("canary", "shadow", "experiment")]
    if not canaries:
        return _not_recorded("the version was not canaried or shadowed before serving")
    return _result(AUTOMATED, "canary or shadow recorded", *(r.entry(e) for e in canaries))


def _infra_rollback(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    rollbacks = [e for e in r.model_audit if e.action == "rollback"]
    if not rollbacks:
        return _not_recorded("no rollback of this model has been recorded")
    return _result(
        AUTOMATED,
        f"{len(rollbacks)} rollbacks of this model by the rollback flow (files verified first)",
        *(r.entry(e) for e in rollbacks),
    )


# -- monitoring ----------------------------------------------------------------------------


def _mon_dependencies(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    return _not_recorded(
        "package versions are recorded per version, but nothing notifies when a dependency changes"
    )


def _mon_invariants(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    if not r.monitoring:
        return _not_recorded("no monitoring window of this version")
    return _result(
        AUTOMATED,
        f"{len(r.monitoring)} production windows checked against the declared schema and the "
        "training reference (the service also refuses or flags out-of-schema requests)",
        *(m.evidence for m in r.monitoring),
    )


def _mon_skew(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    drift = [
        m for m in r.monitoring if (m.decision or {}).get("status") not in (None, "no_verdict")
    ]
    if not drift:
        return _not_recorded("no production window compared with the training reference")
    return _result(
        AUTOMATED,
        f"{len(drift)} windows' feature and prediction distributions compared with the "
        "training reference (drift tests)",
        *(m.evidence for m in drift),
    )


def _mon_stale(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    deployments = (r.deployments or {}).get("deployments") or []
    scheduled = [
        d
        for d in deployments
        if str(d.get("entrypoint", "")).endswith(":training") and (d.get("schedules") or [])
    ]
    if not scheduled or r.deployments_evidence is None:
        return _not_recorded("no scheduled retraining deployment in prefect.yaml")
    triggered = any(d.get("triggers") for d in scheduled)
    return _result(
        AUTOMATED,
        f"retraining deployment(s) {[d.get('name') for d in scheduled]} on a schedule"
        + (" and on the drift event" if triggered else ""),
        r.deployments_evidence,
    )


def _mon_numeric(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    judged = _judged(_checks(r, "robustness"))
    if not judged:
        return _not_recorded("no robustness checks judged (noise, missing, unseen, out of range)")
    return _result(
        AUTOMATED,
        f"{len(judged)} robustness checks judged (noise, missing values, unseen categories, "
        "out-of-range values); non-finite inputs are refused by the service",
        r.file("gate/robustness.json"),
    )


def _mon_compute(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    budgets = _checks(r, "budgets")
    latency = [c for c in budgets if "latency" in c.get("name", "")]
    if _judged(latency):
        return _result(
            AUTOMATED, "prediction latency judged against a budget", r.file("gate/budgets.json")
        )
    if latency:
        return _result(
            MANUAL,
            "prediction latency measured and reported, not judged against a budget",
            r.file("gate/budgets.json"),
        )
    return _not_recorded("no latency measurement")


def _mon_quality(r: VersionRecords) -> tuple[float, str, list[Evidence]]:
    judged = [m for m in r.monitoring if (m.quality or {}).get("realised")]
    if not judged:
        return _not_recorded("no production window of this version with realised quality")
    return _result(
        AUTOMATED,
        f"{len(judged)} windows' realised quality judged against the holdout's",
        *(m.evidence for m in judged),
    )


RUBRIC: tuple[tuple[str, int, str, Scorer], ...] = (
    ("data", 1, "Feature expectations are captured in a schema.", _data_schema),
    ("data", 2, "All features are beneficial.", _data_beneficial),
    ("data", 3, "No feature's cost is too much.", _data_cost),
    ("data", 4, "Features adhere to meta-level requirements.", _data_meta),
    ("data", 5, "The data pipeline has appropriate privacy controls.", _data_privacy),
    ("data", 6, "New features can be added quickly.", _data_new_features),
    ("data", 7, "All input feature code is tested.", _data_feature_code),
    ("model", 1, "Model specs are reviewed and submitted.", _model_reviewed),
    ("model", 2, "Offline and online metrics correlate.", _model_online_offline),
    ("model", 3, "All hyperparameters have been tuned.", _model_tuned),
    ("model", 4, "The impact of model staleness is known.", _model_staleness),
    ("model", 5, "A simpler model is not better.", _model_simpler),
    ("model", 6, "Model quality is sufficient on important data slices.", _model_slices),
    ("model", 7, "The model is tested for considerations of inclusion.", _model_inclusion),
    ("infrastructure", 1, "Training is reproducible.", _infra_reproducible),
    ("infrastructure", 2, "Model specs are unit tested.", _infra_spec_unit),
    ("infrastructure", 3, "The ML pipeline is integration tested.", _infra_integration),
    ("infrastructure", 4, "Model quality is validated before serving.", _infra_validated),
    ("infrastructure", 5, "The model is debuggable.", _infra_debuggable),
    ("infrastructure", 6, "Models are canaried before serving.", _infra_canary),
    ("infrastructure", 7, "Serving models can be rolled back.", _infra_rollback),
    ("monitoring", 1, "Dependency changes result in notification.", _mon_dependencies),
    ("monitoring", 2, "Data invariants hold for inputs.", _mon_invariants),
    ("monitoring", 3, "Training and serving are not skewed.", _mon_skew),
    ("monitoring", 4, "Models are not too stale.", _mon_stale),
    ("monitoring", 5, "Models are numerically stable.", _mon_numeric),
    ("monitoring", 6, "Computing performance has not regressed.", _mon_compute),
    ("monitoring", 7, "Prediction quality has not regressed.", _mon_quality),
)


def ml_test_score(records: VersionRecords) -> TestScore:
    results = []
    for section, number, title, scorer in RUBRIC:
        score, how, evidence = scorer(records)
        results.append(TestResult(section, number, title, score, how, tuple(evidence)))
    return TestScore(tuple(results))


def test_score_markdown(score: TestScore) -> list[str]:
    """The card's and the documentation's section: every test, its score and its evidence."""
    sections = ", ".join(f"{s} {v:g}" for s, v in score.sections.items())
    lines = [
        f"Final score **{score.final:g}** (the minimum of the section sums: {sections}); "
        "1 = automated and recorded, 0.5 = done by hand and documented, 0 = no evidence.",
        "",
        "| test | title | score | how | evidence |",
        "|---|---|---|---|---|",
    ]
    for t in score.tests:
        cited = "; ".join(e.cite() for e in t.evidence) or "-"
        lines.append(f"| {t.key} | {t.title} | {t.score:g} | {t.how} | {cited} |")
    return [*lines, ""]
