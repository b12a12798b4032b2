import factory
from django.contrib.auth import get_user_model

from governance.models import ApprovalPolicy, Workspace
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
