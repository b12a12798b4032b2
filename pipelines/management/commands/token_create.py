"""Create a service token and print it once.

    python manage.py token_create USERNAME --pipeline SLUG [--name NAME]
    python manage.py token_create USERNAME --workspace SLUG [--name NAME]

Keel keeps only the token's SHA-256: copy it from the output.
"""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from audit.context import acting_as
from governance.models import Workspace
from pipelines.models import Pipeline
from pipelines.tokens import token_create


class Command(BaseCommand):
    help = "Create an API token for a user, scoped to one pipeline or one workspace; prints it once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("--pipeline", metavar="SLUG")
        scope.add_argument("--workspace", metavar="SLUG")
        parser.add_argument("--name", default="", help="What system uses the token (default: its scope).")

    def handle(self, *args, username, pipeline, workspace, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
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
            with acting_as("token_create"):
                token, plain = token_create(
                    user=user, name=name or f"{pipeline or workspace} (command line)", pipeline=pipeline_obj,
                    workspace=workspace_obj, actor=None,
                )  # fmt: skip
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stderr.write(f"Token {token.prefix} for {username}; copy it now, it is not shown again:")
        self.stdout.write(plain)
