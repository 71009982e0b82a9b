"""Monitoring over the API: drift and quality reports of a registered model (list: read scope; run one now:
write scope), its SLOs, and alerts (list: read scope; acknowledge or resolve: write scope)."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import error_responses
from apps.core.errors import InvalidInput
from apps.governance.models import ApiToken
from apps.governance.permissions import HasScope
from apps.monitoring import alerts as alert_services
from apps.monitoring.models import Alert, DriftReport, QualityReport, SloReport
from apps.monitoring.selectors import alert_list
from apps.monitoring.services import drift_report_run, quality_report_run, slo_report_run
from apps.registry.selectors import registered_model_get

LIST_LIMIT = 100


class DriftReportSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="model_version.version")

    class Meta:
        model = DriftReport
        fields = [
            "id",
            "version",
            "reference",
            "reference_start",
            "reference_end",
            "window_start",
            "window_end",
            "rows",
            "status",
            "verdict",
            "features",
            "prediction",
            "excluded",
            "requested_by",
            "created_at",
        ]


class DriftRunSerializer(serializers.Serializer):
    hours = serializers.FloatField(required=False, help_text="The window: the last N hours (default 24).")
    version = serializers.IntegerField(required=False, help_text="Default: the champion.")
    reference = serializers.ChoiceField(
        choices=DriftReport.Reference.choices, required=False, help_text="training (default) or window."
    )
    reference_start = serializers.DateTimeField(
        required=False, help_text="With reference=window; default: the window of the same length just before."
    )
    reference_end = serializers.DateTimeField(required=False)


def _body(request, allowed: set[str]) -> dict:
    """The JSON object body with only `allowed` keys (an empty body is {}); a clear 400 otherwise."""
    body = request.data if request.data else {}
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object.", extra={"fields": {"body": ["Expected an object."]}})
    unknown = sorted(body.keys() - allowed)
    if unknown:
        raise InvalidInput("Invalid request body.", extra={"fields": {key: ["Unknown field."] for key in unknown}})
    version = body.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise InvalidInput("Invalid request body.", extra={"fields": {"version": ["Must be an integer."]}})
    return body


class ReadOrWrite(APIView):
    """GET needs the read scope, every other method the write scope."""

    permission_classes = [HasScope]

    def get_permissions(self):
        self.required_scope = ApiToken.Scope.READ if self.request.method == "GET" else ApiToken.Scope.WRITE
        return super().get_permissions()


class DriftReportsApi(ReadOrWrite):
    @extend_schema(
        responses={200: DriftReportSerializer(many=True), **error_responses(401, 403, 404)},
        description=f"The newest {LIST_LIMIT} reports, newest first.",
    )
    def get(self, request, name: str):
        model = registered_model_get(name=name)
        reports = DriftReport.objects.filter(model_version__registered_model=model).select_related("model_version")
        return Response(DriftReportSerializer(reports[:LIST_LIMIT], many=True).data)

    @extend_schema(
        request=DriftRunSerializer,
        responses={201: DriftReportSerializer, **error_responses(400, 401, 403, 404)},
        description="Run a drift report now: the version's served inputs in the window against its training data.",
    )
    def post(self, request, name: str):
        body = _body(request, {"hours", "version", "reference", "reference_start", "reference_end"})
        for field in ("reference", "reference_start", "reference_end"):
            if field in body and not isinstance(body[field], str):
                raise InvalidInput("Invalid request body.", extra={"fields": {field: ["Must be a string."]}})
        report = drift_report_run(
            model_name=registered_model_get(name=name).name,
            version=body.get("version"),
            hours=body.get("hours", settings.FARO_DRIFT_WINDOW_HOURS),
            actor=request.user,
            reference=body.get("reference", DriftReport.Reference.TRAINING),
            reference_start=body.get("reference_start"),
            reference_end=body.get("reference_end"),
        )
        return Response(DriftReportSerializer(report).data, status=201)


class QualityReportSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="model_version.version")

    class Meta:
        model = QualityReport
        fields = [
            "id",
            "version",
            "window_start",
            "window_end",
            "rows",
            "labelled",
            "label_delay_seconds",
            "metric",
            "value",
            "estimated_value",
            "status",
            "measured",
            "estimated",
            "reason",
            "requested_by",
            "created_at",
        ]


class QualityRunSerializer(serializers.Serializer):
    hours = serializers.FloatField(required=False, help_text="The window: the last N hours (default 168).")
    version = serializers.IntegerField(required=False, help_text="Default: the champion.")


class QualityReportsApi(ReadOrWrite):
    @extend_schema(
        responses={200: QualityReportSerializer(many=True), **error_responses(401, 403, 404)},
        description=f"The newest {LIST_LIMIT} live-quality reports, newest first.",
    )
    def get(self, request, name: str):
        model = registered_model_get(name=name)
        reports = QualityReport.objects.filter(model_version__registered_model=model).select_related("model_version")
        return Response(QualityReportSerializer(reports[:LIST_LIMIT], many=True).data)

    @extend_schema(
        request=QualityRunSerializer,
        responses={201: QualityReportSerializer, **error_responses(400, 401, 403, 404)},
        description="Measure live quality now: the window's decisions against their feedback labels, and for a "
        "binary classifier a label-free estimate (CBPE) over every decision.",
    )
    def post(self, request, name: str):
        body = _body(request, {"hours", "version"})
        report = quality_report_run(
            model_name=registered_model_get(name=name).name,
            version=body.get("version"),
            hours=body.get("hours", settings.FARO_QUALITY_WINDOW_HOURS),
            actor=request.user,
        )
        return Response(QualityReportSerializer(report).data, status=201)


class SloReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = SloReport
        fields = ["id", "window_start", "window_end", "requests", "objectives", "created_at"]


class SloApi(ReadOrWrite):
    @extend_schema(
        responses={200: SloReportSerializer, **error_responses(401, 403, 404)},
        description="The model's SLOs from its SLA, computed now over the last FARO_SLO_WINDOW_DAYS days: each "
        "objective's target, measured value, whether it is met, the error budget left and the last hour's burn "
        "rate. Computing also raises or resolves the SLO alerts.",
    )
    def get(self, request, name: str):
        report = slo_report_run(registered_model=registered_model_get(name=name), days=settings.FARO_SLO_WINDOW_DAYS)
        return Response(SloReportSerializer(report).data)


class AlertSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="registered_model.name", default=None)

    class Meta:
        model = Alert
        fields = [
            "id",
            "key",
            "kind",
            "severity",
            "status",
            "model",
            "title",
            "detail",
            "data",
            "occurrences",
            "opened_at",
            "last_seen_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
        ]


ALERT_STATUSES = [*Alert.Status.values, "unresolved"]


class AlertsApi(ReadOrWrite):
    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=ALERT_STATUSES, description="Default: every alert."),
            OpenApiParameter("model", str, description="Only this registered model's alerts."),
        ],
        responses={200: AlertSerializer(many=True), **error_responses(400, 401, 403)},
        description=f"The newest {LIST_LIMIT} alerts, newest first.",
    )
    def get(self, request):
        status = request.query_params.get("status")
        if status is not None and status not in ALERT_STATUSES:
            raise InvalidInput(
                "Unknown alert status.", extra={"fields": {"status": [f"Choose one of: {', '.join(ALERT_STATUSES)}."]}}
            )
        alerts = alert_list(status=status, model_name=request.query_params.get("model"))
        return Response(AlertSerializer(alerts[:LIST_LIMIT], many=True).data)


class AlertActionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["acknowledge", "resolve"])
    reason = serializers.CharField(required=False, max_length=500, help_text="Why it is resolved (resolve only).")


class AlertApi(ReadOrWrite):
    @extend_schema(responses={200: AlertSerializer, **error_responses(401, 403, 404)})
    def get(self, request, alert_id: int):
        return Response(AlertSerializer(alert_services.alert_get(alert_id=alert_id)).data)

    @extend_schema(
        request=AlertActionSerializer,
        responses={200: AlertSerializer, **error_responses(400, 401, 403, 404, 409)},
        description="Acknowledge an open alert (someone is on it), or resolve an unresolved one.",
    )
    def post(self, request, alert_id: int):
        body = _body(request, {"action", "reason"})
        action, reason = body.get("action"), body.get("reason", "resolved by hand")
        if action not in ("acknowledge", "resolve"):
            raise InvalidInput("Invalid request body.", extra={"fields": {"action": ["acknowledge or resolve."]}})
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
            raise InvalidInput("Invalid request body.", extra={"fields": {"reason": ["1 to 500 characters."]}})
        if action == "acknowledge":
            alert = alert_services.alert_acknowledge(alert_id=alert_id, actor=request.user)
        else:
            alert = alert_services.alert_resolve(alert_id=alert_id, actor=request.user, reason=reason)
        return Response(AlertSerializer(alert).data)
