"""What the release-control commands share: finding the pipeline and the acting user."""

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import CommandError

from pipelines.models import Pipeline


def pipeline_named(slug: str) -> Pipeline:
    pipeline = Pipeline.objects.filter(slug=slug).first()
    if pipeline is None:
        raise CommandError(f"No pipeline with the slug {slug!r}.")
    return pipeline


def user_named(username: str):
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"--user: no active user {username!r}.")
    return user


def refusal(error: Exception) -> CommandError:
    if isinstance(error, ValidationError):
        return CommandError("; ".join(error.messages))
    if isinstance(error, PermissionDenied):
        return CommandError(f"Refused: {error}")
    return CommandError(str(error))
