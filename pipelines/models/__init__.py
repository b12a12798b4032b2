"""The pipelines app's models: the governed configuration (config.py) and
what runs from it (releases.py, runs.py)."""

from pipelines.models.budgets import Budget
from pipelines.models.config import (
    IDENTIFIER,
    ModelConfig,
    ModelConfigGroupObjectPermission,
    ModelConfigUserObjectPermission,
    Pipeline,
    PipelineGroupObjectPermission,
    PipelineUserObjectPermission,
    PromptTemplate,
    PromptTemplateGroupObjectPermission,
    PromptTemplateUserObjectPermission,
    Step,
)
from pipelines.models.deliveries import DeadLetter, Delivery
from pipelines.models.documents import Document
from pipelines.models.evaluations import Evaluation, EvaluationCase, EvaluationResult
from pipelines.models.releases import Deployment, Release, ReleaseTransition
from pipelines.models.runs import Run, StepRun
from pipelines.models.schedules import PipelineSchedule
from pipelines.models.tokens import Heartbeat, ServiceToken

__all__ = [
    "IDENTIFIER",
    "Budget",
    "DeadLetter",
    "Delivery",
    "Deployment",
    "Document",
    "Heartbeat",
    "Evaluation",
    "EvaluationCase",
    "EvaluationResult",
    "ModelConfig",
    "ModelConfigGroupObjectPermission",
    "ModelConfigUserObjectPermission",
    "Pipeline",
    "PipelineGroupObjectPermission",
    "PipelineUserObjectPermission",
    "PipelineSchedule",
    "PromptTemplate",
    "PromptTemplateGroupObjectPermission",
    "PromptTemplateUserObjectPermission",
    "Release",
    "ReleaseTransition",
    "Run",
    "ServiceToken",
    "Step",
    "StepRun",
]
