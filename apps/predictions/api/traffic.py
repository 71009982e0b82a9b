"""A registered model's traffic policy (canary, shadows, sticky routing), and feedback on logged decisions."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import error_responses
from apps.core.errors import InvalidInput, NotFound
from apps.governance.models import ApiToken
from apps.governance.permissions import HasScope, check_model_change
from apps.governance.roles import session_scopes
from apps.governance.services import actor_ref
from apps.predictions import services
from apps.predictions.models import PredictionRecord, StickyBy
from apps.registry.selectors import registered_model_get


class TrafficPolicySerializer(serializers.Serializer):
    model = serializers.CharField(read_only=True)
    canary_version = serializers.IntegerField(
        allow_null=True, required=False, help_text="An approved version other than the champion; null: none."
    )
    canary_percent = serializers.FloatField(
        min_value=0, max_value=100, required=False, help_text="Share of default traffic the canary answers."
    )
    shadow_versions = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="Scored off the request path, never returned."
    )
    sticky_by = serializers.ChoiceField(choices=StickyBy.choices, required=False)
    max_error_rate_increase = serializers.FloatField(required=False)
    max_p95_latency_increase = serializers.FloatField(required=False)
    min_requests = serializers.IntegerField(required=False)
    window_minutes = serializers.IntegerField(required=False)
    revision = serializers.IntegerField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)
    updated_by = serializers.CharField(read_only=True)
    rolled_back_at = serializers.DateTimeField(read_only=True, allow_null=True)
    rollback_reason = serializers.CharField(read_only=True)


class TrafficPolicyApi(APIView):
    """Read the policy (read scope); change it (admin scope: it decides what real requests are answered by; for
    a session, the traffic policy permission under the owner rule)."""

    permission_classes = [HasScope]

    def get_permissions(self):
        self.required_scope = ApiToken.Scope.READ if self.request.method == "GET" else ApiToken.Scope.ADMIN
        return super().get_permissions()

    @extend_schema(responses={200: TrafficPolicySerializer, **error_responses(401, 403, 404)})
    def get(self, request, name: str):
        policy = services.traffic_policy_get(registered_model=registered_model_get(name=name))
        return Response(services.traffic_policy_describe(policy))

    @extend_schema(
        request=TrafficPolicySerializer,
        responses={200: TrafficPolicySerializer, **error_responses(400, 401, 403, 404)},
        description="Fields not sent keep their values. Every change is audited and reaches every web worker "
        "within FARO_ALIAS_TTL_SECONDS.",
    )
    def patch(self, request, name: str):
        registered = registered_model_get(name=name)
        check_model_change(request, registered)
        if not isinstance(request.data, dict):
            raise InvalidInput("The body must be a JSON object.", extra={"fields": {"body": ["Expected an object."]}})
        changes = dict(request.data)
        policy = services.traffic_policy_set(registered_model=registered, changes=changes, actor=request.user)
        return Response(services.traffic_policy_describe(policy))


class FeedbackSerializer(serializers.Serializer):
    actuals = serializers.ListField(
        child=serializers.JSONField(), help_text="The true outcome of each row of the decision, in row order."
    )


class FeedbackResponseSerializer(serializers.Serializer):
    request_id = serializers.UUIDField()
    rows = serializers.IntegerField()
    actual_at = serializers.DateTimeField()


class FeedbackApi(APIView):
    """Attach the ground truth to a logged decision. Credentials with only the 'predict' scope (a token, or a
    session such as an end user's) may do so for the decisions they asked for; 'write' for any."""

    permission_classes = [HasScope]

    def _writer(self, request) -> bool:
        if isinstance(request.auth, ApiToken):
            return request.auth.has_scope(ApiToken.Scope.WRITE)
        return ApiToken.Scope.WRITE in session_scopes(request.user)

    def get_permissions(self):
        self.required_scope = ApiToken.Scope.WRITE if self._writer(self.request) else ApiToken.Scope.PREDICT
        return super().get_permissions()

    @extend_schema(
        request=FeedbackSerializer,
        responses={200: FeedbackResponseSerializer, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, request_id):
        body = request.data
        if not isinstance(body, dict) or set(body) != {"actuals"} or not isinstance(body["actuals"], list):
            raise InvalidInput(
                'The body must be {"actuals": [...]}, one value per row of the decision.',
                extra={"fields": {"actuals": ["A list is required; no other field is accepted."]}},
            )
        if not self._writer(request):
            asked_by = PredictionRecord.objects.filter(request_id=request_id).values_list("client", flat=True).first()
            if asked_by != actor_ref(request.user):  # another client's decision: as if it did not exist
                raise NotFound(f"No decision with request id {request_id}.")
        records = services.feedback_record(request_id=request_id, actuals=body["actuals"], actor=request.user)
        return Response({"request_id": str(request_id), "rows": len(records), "actual_at": records[0].actual_at})
