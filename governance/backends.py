"""Sign-in for people only: Django's model backend, refusing service accounts."""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from governance.models import ServiceAccount


class PersonBackend(ModelBackend):
    """A service account never signs in, whatever its password or flags: its
    password is unusable, and should someone set one (or make it staff), this
    refuses it at sign-in (``user_can_authenticate``) and for any session it
    already holds (``get_user``, asked on every request)."""

    def user_can_authenticate(self, user) -> bool:
        if not super().user_can_authenticate(user):
            return False
        return not ServiceAccount.objects.filter(user_id=user.pk).exists()

    def get_user(self, user_id):
        # One query, as Django's own: the join leaves out a service account.
        user_model = get_user_model()
        user = user_model._default_manager.filter(pk=user_id, service_account__isnull=True).first()
        return user if user is not None and ModelBackend.user_can_authenticate(self, user) else None
