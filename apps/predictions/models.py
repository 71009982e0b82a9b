"""The prediction log: every acknowledged decision, written before the response is sent."""

import uuid

from django.db import models

from apps.registry.models import ModelVersion


class PredictionRecord(models.Model):
    """One scored row: who it was about (if the client said), what went in, what came out."""

    class Channel(models.TextChoices):
        API = "api", "REST API"
        PAGE = "page", "Web page"
        MLFLOW = "mlflow", "MLflow-compatible API"

    request_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    row = models.PositiveIntegerField(default=0)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    subject_id = models.CharField(max_length=200, blank=True, db_index=True)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    inputs = models.JSONField()
    output = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "row"]

    def __str__(self) -> str:
        return f"{self.request_id}#{self.row}"
