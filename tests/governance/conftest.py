import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission


@pytest.fixture
def dpo(db):
    """A data protection officer: may verify, carry out and close data-subject requests."""
    user = get_user_model().objects.create_user("dpo", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="handle_subjectrequest"))
    return get_user_model().objects.get(pk=user.pk)
