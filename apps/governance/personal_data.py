"""What governance holds about a data subject, for access requests and erasure: the review cases of their decisions
(Art. 22(3)), and their own earlier data-subject requests.

The audit chain is not among them: it names people only by pseudonymous references, never by key or contact.
"""

from typing import Any

from django.db import transaction

from apps.core.personal_data import StepResult, StepState, Subject, rows_digest
from apps.governance.models import DataSubjectRequest, ReviewRequest


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def _review_subject_ids(subject: Subject) -> list[str]:
    if subject.value is not None:
        return [subject.value] if ReviewRequest.objects.filter(subject_id=subject.value).exists() else []
    stored = ReviewRequest.objects.exclude(subject_id="").order_by().values_list("subject_id", flat=True)
    return subject.pick(stored.distinct())


class ReviewCases:
    store = "governance.review_case"
    label = "Requests for human review of a decision"
    order = 50

    def targets(self, subject: Subject) -> list[str]:
        return ["all"]

    def erase(self, subject: Subject, target: str, state: StepState) -> StepResult:
        """Delete the subject's review cases (each holds its decision's snapshot, the reason and the contact). The
        result is saved in the same transaction, so a re-run after the commit reports it again."""
        if "result" in state.data:
            return StepResult(**state.data["result"])
        ids = _review_subject_ids(subject)
        with transaction.atomic():
            cases = ReviewRequest.objects.filter(subject_id__in=ids)
            before = [str(request_id) for request_id in cases.values_list("request_id", flat=True)]
            deleted, _ = cases.delete()
            after = ReviewRequest.objects.filter(subject_id__in=ids).values_list("request_id", flat=True)
            result = {
                "count": deleted,
                "before": rows_digest(before),
                "after": rows_digest(str(request_id) for request_id in after),
                "detail": {"cases": deleted},
            }
            state.save({"result": result})
        return StepResult(**result)

    def export(self, subject: Subject) -> list[dict[str, Any]]:
        cases = ReviewRequest.objects.filter(subject_id__in=_review_subject_ids(subject)).order_by("created_at", "pk")
        return [
            {
                "request_id": str(case.request_id),
                "model": case.model_name,
                "model_version": case.model_version,
                "status": case.status,
                "reason": case.reason,
                "contact": case.contact,
                "asked_at": _iso(case.created_at),
                "taken_at": _iso(case.taken_at),
                "decided_at": _iso(case.decided_at),
                "outcome_note": case.outcome_note,
                "changed_outcome": case.changed_outcome,
                "decision": case.decision,
            }
            for case in cases
        ]


CLOSED = (DataSubjectRequest.Status.COMPLETED, DataSubjectRequest.Status.REFUSED)
HELD = ("subject_id", "contact", "details")


def _holding(subject: Subject) -> Any:
    """The subject's closed requests that still hold their key, contact or what they wrote. Open ones are left:
    the erasure being carried out clears its own when it completes, and another open request is still being
    answered."""
    return (
        DataSubjectRequest.objects.filter(subject_digest=subject.digest, status__in=CLOSED)
        .exclude(subject_id="", contact="", details="")
        .order_by("pk")
    )


class SubjectRequests:
    store = "governance.subject_request"
    label = "Earlier data-subject requests (key, contact and what the person wrote)"
    order = 90

    def targets(self, subject: Subject) -> list[str]:
        return ["all"]

    def erase(self, subject: Subject, target: str, state: StepState) -> StepResult:
        if "result" in state.data:
            return StepResult(**state.data["result"])
        with transaction.atomic():
            holding = list(_holding(subject).select_for_update().values_list("pk", flat=True))
            cleared = DataSubjectRequest.objects.filter(pk__in=holding).update(subject_id="", contact="", details="")
            result = {
                "count": cleared,
                "before": rows_digest(holding),
                "after": rows_digest(_holding(subject).values_list("pk", flat=True)),
                "detail": {"requests": cleared},
            }
            state.save({"result": result})
        return StepResult(**result)

    def export(self, subject: Subject) -> list[dict[str, Any]]:
        """The person's closed requests: an open one is being answered (an access request counts what is held
        while it is open, and must not count itself)."""
        requests = DataSubjectRequest.objects.filter(subject_digest=subject.digest, status__in=CLOSED).order_by(
            "received_at", "pk"
        )
        return [
            {
                "request": request.pk,
                "kind": request.kind,
                "status": request.status,
                "received_at": _iso(request.received_at),
                "due_at": _iso(request.due_at),
                "completed_at": _iso(request.completed_at),
                "outcome": request.outcome,
            }
            for request in requests
        ]
