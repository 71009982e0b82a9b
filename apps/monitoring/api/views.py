"""Drift reports of a registered model: list them (read scope), run one now (write scope)."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import error_responses
from apps.core.errors import InvalidInput
from apps.governance.models import ApiToken
from apps.governance.permissions import HasScope
from apps.monitoring.models import DriftReport
from apps.monitoring.services import drift_report_run
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
            "window_start",
            "window_end",
            "rows",
            "status",
            "verdict",
            "features",
            "excluded",
            "requested_by",
            "created_at",
        ]


class DriftRunSerializer(serializers.Serializer):
    hours = serializers.FloatField(required=False, help_text="The window: the last N hours (default 24).")
    version = serializers.IntegerField(required=False, help_text="Default: the champion.")


class DriftReportsApi(APIView):
    permission_classes = [HasScope]

    def get_permissions(self):
        self.required_scope = ApiToken.Scope.READ if self.request.method == "GET" else ApiToken.Scope.WRITE
        return super().get_permissions()

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
        body = request.data if request.data else {}
        if not isinstance(body, dict) or body.keys() - {"hours", "version"}:
            unknown = sorted(body.keys() - {"hours", "version"}) if isinstance(body, dict) else []
            raise InvalidInput(
                "The body must be a JSON object with optional 'hours' and 'version'.",
                extra={"fields": {key: ["Unknown field."] for key in unknown} or {"body": ["Expected an object."]}},
            )
        version = body.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise InvalidInput("Invalid request body.", extra={"fields": {"version": ["Must be an integer."]}})
        report = drift_report_run(
            model_name=registered_model_get(name=name).name,
            version=version,
            hours=body.get("hours", settings.FARO_DRIFT_WINDOW_HOURS),
            actor=request.user,
        )
        return Response(DriftReportSerializer(report).data, status=201)
