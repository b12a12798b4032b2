import factory
from django.contrib.auth import get_user_model

from governance.models import ApprovalPolicy, Credential, Workspace
from pipelines.models import ModelConfig, Pipeline, PromptTemplate, Step


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True
    password = factory.django.Password("keel-test-password")


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Client {n}")
    slug = factory.Sequence(lambda n: f"client-{n}")
    owner = factory.SubFactory(UserFactory)
    # The test servers listen on 127.0.0.1 (the tests' operator allows it: tests/conftest.py).
    allowed_hosts = factory.LazyFunction(lambda: ["127.0.0.1"])


class CredentialFactory(factory.django.DjangoModelFactory):
    """A credential mapped to a TEST_* variable (allow-listed by the tests' operator)."""

    class Meta:
        model = Credential

    workspace = factory.SubFactory(WorkspaceFactory)
    slug = factory.Sequence(lambda n: f"credential-{n}")
    name = factory.Sequence(lambda n: f"Credential {n}")
    source = Credential.Source.ENV
    env_name = factory.Sequence(lambda n: f"TEST_CREDENTIAL_{n}")


class ApprovalPolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApprovalPolicy

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"Policy {n}")


class PromptTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PromptTemplate

    workspace = factory.SubFactory(WorkspaceFactory)
    slug = factory.Sequence(lambda n: f"prompt-{n}")
    name = factory.Sequence(lambda n: f"Prompt {n}")
    body = "Classify this ticket: {{ subject }}\n{{ body }}\n"
    variables = ["subject", "body"]
    owner = factory.SelfAttribute("workspace.owner")


class ModelConfigFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelConfig

    workspace = factory.SubFactory(WorkspaceFactory)
    slug = factory.Sequence(lambda n: f"model-{n}")
    name = factory.Sequence(lambda n: f"Model {n}")
    provider = ModelConfig.Provider.BUILTIN
    model_name = "keyword-classifier"
    model_version = "1"


class PipelineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Pipeline

    workspace = factory.SubFactory(WorkspaceFactory)
    slug = factory.Sequence(lambda n: f"pipeline-{n}")
    name = factory.Sequence(lambda n: f"Pipeline {n}")
    owner = factory.SelfAttribute("workspace.owner")
    input_schema = factory.LazyFunction(
        lambda: {"type": "object", "properties": {"subject": {"type": "string"}}, "required": ["subject"]}
    )


class StepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Step

    pipeline = factory.SubFactory(PipelineFactory)
    position = factory.Sequence(lambda n: n + 1)
    name = factory.Sequence(lambda n: f"step {n}")
    kind = "gate"
    config = factory.LazyFunction(dict)


def credential_in(workspace, env_name: str, slug: str = "webhook") -> str:
    """The slug of ``workspace``'s credential ``slug``, made mapped to ``env_name`` if missing."""
    credential, _ = Credential.objects.get_or_create(
        workspace=workspace, slug=slug, defaults={"name": slug, "env_name": env_name}
    )
    return credential.slug
