"""What the features app holds about a data subject, for access requests and erasure: the online store's latest
values of the subject's entity (entity ids are subject keys), in every dataset that names a subject key column.

The configured store is searched, and with Redis configured the database table too: a store is upserted and never
cleared, so rows written before a switch to Redis are still there.
"""

from typing import Any

from django.db import transaction

from apps.core.personal_data import StepResult, StepState, Subject, rows_digest
from apps.data.models import Dataset
from apps.features.models import OnlineStoreKind
from apps.features.online import DatabaseStore, OnlineStore, store_for_settings


def _stores() -> list[OnlineStore]:
    configured = store_for_settings()
    return [configured] if configured.name == OnlineStoreKind.DATABASE else [DatabaseStore(), configured]


def _datasets() -> Any:
    return Dataset.objects.exclude(subject_key_column="").order_by("pk")


def _held(store: OnlineStore, dataset: Dataset, subject: Subject) -> list[str]:
    """The subject's entity ids in `dataset`'s part of `store`: one lookup with the key, a scan with the digest."""
    if subject.value is not None:
        return sorted(store.get_many(dataset, [subject.value]))
    return subject.pick(store.entity_ids(dataset))


class OnlineFeatures:
    store = "features.online"
    label = "Online feature store (latest values per entity)"
    order = 20

    def targets(self, subject: Subject) -> list[str]:
        return [str(pk) for pk in _datasets().values_list("pk", flat=True)]

    def erase(self, subject: Subject, target: str, state: StepState) -> StepResult:
        """Delete the subject's entity from every store. The result is saved with the database deletion, before
        Redis is touched (Redis is outside the transaction): a re-run deletes again whatever is left and reports
        the saved result."""
        dataset = Dataset.objects.filter(pk=int(target)).first()
        if dataset is None:
            return StepResult(count=0, detail={"skipped": "gone"})
        stores = _stores()
        held = {store.name: _held(store, dataset, subject) for store in stores}
        result = state.data.get("result") or {
            "count": sum(len(ids) for ids in held.values()),
            "before": rows_digest({entity for ids in held.values() for entity in ids}),
            "after": rows_digest([]),
            "detail": {"dataset": dataset.name},
        }
        with transaction.atomic():
            if "result" not in state.data:
                state.save({"result": result})
            for store in stores:
                if store.name == OnlineStoreKind.DATABASE:
                    store.delete_many(dataset, held[store.name])
        for store in stores:
            if store.name != OnlineStoreKind.DATABASE:
                store.delete_many(dataset, held[store.name])
        return StepResult(**result)

    def export(self, subject: Subject) -> list[dict[str, Any]]:
        rows = []
        for dataset in _datasets():
            for store in _stores():
                found = store.get_many(dataset, _held(store, dataset, subject))
                for entity_id, (values, event_time, materialised_at) in sorted(found.items()):
                    rows.append(
                        {
                            "dataset": dataset.name,
                            "store": store.name,
                            "entity_id": entity_id,
                            "values": values,
                            "event_time": event_time.isoformat() if event_time else None,
                            "materialised_at": materialised_at.isoformat() if materialised_at else None,
                        }
                    )
        return rows
