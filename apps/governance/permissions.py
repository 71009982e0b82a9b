"""Scope checks for API views."""

from typing import Any

from rest_framework import permissions
from rest_framework.views import APIView

from apps.governance.models import ApiToken


class HasScope(permissions.BasePermission):
    """Tokens need the view's `required_scope`; staff sessions may do anything, other sessions read and predict."""

    message = "Your credentials lack the scope this operation needs."
    _session_scopes = {ApiToken.Scope.READ, ApiToken.Scope.PREDICT}

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
        return bool(user.is_staff or scope in self._session_scopes)


class ReadWriteScopedApi(APIView):
    """An API view whose reads need the 'read' scope and whose writes need 'write'."""

    permission_classes = [HasScope]
    read_scope = ApiToken.Scope.READ
    write_scope = ApiToken.Scope.WRITE

    def get_permissions(self):
        self.required_scope = self.read_scope if self.request.method in permissions.SAFE_METHODS else self.write_scope
        return super().get_permissions()
