"""Human approval through Prefect's pause-with-input form.

The flow pauses with `ApprovalInput` as the form; the reviewer answers in the UI (or through
`resume_flow_run(flow_run_id, run_input={...})`). No answer within the configured timeout
rejects the candidate.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_client, get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Running
from pydantic import Field, field_validator

from modelcycle.config import Approval
from modelcycle.gate import GateDecision, with_approval


class ApprovalInput(RunInput):
    """The form a reviewer fills in: the decision, who made it, and why."""

    approved: bool = Field(description="Promote this candidate to champion?")
    # The pattern makes the server refuse a blank name when the form is submitted.
    reviewer: str = Field(
        min_length=1, pattern=r"\S", description="Your name; recorded in the audit log."
    )
    comment: str = Field("", description="Why; recorded in the audit log and the model card.")

    @field_validator("reviewer")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reviewer: a name is required to approve or reject")
        return value.strip()


def _resume_after_timeout(timeout_seconds: int) -> None:
    """The server still holds the run as Paused; without this it fails the run at its end
    ("completed and never resumed") instead of letting it record the rejection and finish."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(
            context.flow_run.id,
            Running(message=f"approval timed out after {timeout_seconds} s: rejecting"),
            force=True,
        )


def request_approval(model: str, decision: GateDecision, policy: Approval) -> GateDecision:
    """Pause the running flow until a reviewer answers; a timeout rejects.

    Called from the flow body (a pause belongs to the flow run, not to a task run).
    """
    timeout_seconds, poll_seconds = policy.timeout_seconds, policy.poll_seconds
    logger = get_run_logger()
    logger.info(
        "%s waits for a reviewer (up to %d s): open the paused flow run in the Prefect UI, "
        "read the gate report artifact, and answer the form",
        model,
        timeout_seconds,
    )
    try:
        answer = pause_flow_run(
            wait_for_input=ApprovalInput, timeout=timeout_seconds, poll_interval=poll_seconds
        )
    except FlowPauseTimeout:
        logger.warning(
            "No reviewer answered within %d s: the candidate is rejected", timeout_seconds
        )
        _resume_after_timeout(timeout_seconds)
        return with_approval(
            decision,
            approved=False,
            reviewer="(nobody)",
            comment="",
            at=datetime.now(UTC).isoformat(),
            timed_out=True,
            timeout_seconds=timeout_seconds,
        )
    logger.info(
        "%s %s by %s", model, "approved" if answer.approved else "rejected", answer.reviewer
    )
    return with_approval(
        decision,
        approved=answer.approved,
        reviewer=answer.reviewer,
        comment=answer.comment,
        at=datetime.now(UTC).isoformat(),
        timeout_seconds=timeout_seconds,
    )
