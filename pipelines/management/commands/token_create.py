"""Create a service token and print it once.

    python manage.py token_create USERNAME --by CREATOR --pipeline SLUG [--name NAME]
    python manage.py token_create USERNAME --by CREATOR --workspace SLUG [--name NAME]

CREATOR is the person handing the token out: the token acts as CREATOR
themself, or as a service account of a workspace CREATOR governs (never as
another person). Keel keeps only the token's SHA-256: copy it from the output.
"""

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from audit.context import acting_as
from governance.models import Workspace
from pipelines.integration.tokens import token_create
from pipelines.models import Pipeline


class Command(BaseCommand):
    help = (
        "Create an API token acting as USERNAME (the creator themself, or a service account of a workspace the "
        "creator governs), scoped to one pipeline or one workspace; prints it once."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--by", required=True, metavar="CREATOR", help="The person creating the token (recorded as its creator)."
        )
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("--pipeline", metavar="SLUG")
        scope.add_argument("--workspace", metavar="SLUG")
        parser.add_argument("--name", default="", help="What system uses the token (default: its scope).")

    def handle(self, *args, username, by, pipeline, workspace, name, **options):
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        creator = users.filter(username=by).first()
        if creator is None:
            raise CommandError(f"--by: no user named {by!r}.")
        pipeline_obj = workspace_obj = None
        if pipeline:
            pipeline_obj = Pipeline.objects.filter(slug=pipeline).first()
            if pipeline_obj is None:
                raise CommandError(f"No pipeline {pipeline!r}.")
        else:
            workspace_obj = Workspace.objects.filter(slug=workspace).first()
            if workspace_obj is None:
                raise CommandError(f"No workspace {workspace!r}.")
        try:
            with acting_as(creator):
                token, plain = token_create(
                    user=user, name=name or f"{pipeline or workspace} (command line)", pipeline=pipeline_obj,
                    workspace=workspace_obj, actor=creator,
                )  # fmt: skip
        except (ValidationError, PermissionDenied) as exc:
            raise CommandError(" ".join(getattr(exc, "messages", [str(exc)]))) from None
        self.stderr.write(f"Token {token.prefix} for {username}, created by {by}; copy it now, it is not shown again:")
        self.stdout.write(plain)
