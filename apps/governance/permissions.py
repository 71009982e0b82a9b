"""Scope checks for API views, and the owner rule as the API applies it.

Tokens need the view's `required_scope` (an `admin` token has every scope), and nothing else. Browser sessions
need the scope among their personas' scopes (`roles.session_scopes`) and, for an unsafe operation, the model
permission the console uses for the same change (`roles.SESSION_API_PERMISSIONS`). See `apps.governance.roles`.
"""

from typing import Any

from rest_framework import exceptions, permissions
from rest_framework.views import APIView

from apps.governance import roles
from apps.governance.models import ApiToken


class HasScope(permissions.BasePermission):
    """Tokens need the view's `required_scope`; sessions that scope among their personas' scopes and, to change
    something, the model permission of the same change in the console."""

    message = "Your credentials lack the scope this operation needs."

    def has_permission(self, request, view: Any) -> bool:
        scope = getattr(view, "required_scope", ApiToken.Scope.READ)
        if isinstance(request.auth, ApiToken):
            allowed = request.auth.has_scope(scope)
            if not allowed:
                self.message = f"This token lacks the '{scope}' scope."
            return allowed
        user = request.user
        if user is None or not user.is_authenticated:
            return False
        if scope not in roles.session_scopes(user):
            self.message = f"Your roles do not include the '{scope}' scope."
            return False
        if request.method in permissions.SAFE_METHODS or not hasattr(view, request.method.lower()):
            return True  # reads need the scope only; a method the view lacks is answered 405
        match = getattr(request, "resolver_match", None)
        needed = roles.session_api_permission(match.view_name if match else "", request.method)
        if needed is roles.UNLISTED:
            self.message = "This operation is not open to signed-in sessions; use an API token."
            return False
        if needed is not None and not user.has_perm(needed):
            self.message = f"Your roles do not include the permission '{needed}'."
            return False
        return True


def check_model_change(request, registered_model: Any) -> None:
    """Refuse (403, the API's error body) a session that may not change `registered_model` or its release state
    under the owner rule (`roles.may_change_model`). Tokens are checked by their scope only."""
    if isinstance(request.auth, ApiToken):
        return
    if not roles.may_change_model(request.user, registered_model):
        raise exceptions.PermissionDenied(roles.model_change_refusal(registered_model))


class ReadWriteScopedApi(APIView):
    """An API view whose reads need the 'read' scope and whose writes need 'write'."""

    permission_classes = [HasScope]
    read_scope = ApiToken.Scope.READ
    write_scope = ApiToken.Scope.WRITE

    def get_permissions(self):
        self.required_scope = self.read_scope if self.request.method in permissions.SAFE_METHODS else self.write_scope
        return super().get_permissions()
