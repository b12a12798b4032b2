"""The pipelines app's models: the governed configuration (config.py) and
what runs from it (releases.py, runs.py)."""

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
    env_var_name,
)
from pipelines.models.deliveries import Delivery
from pipelines.models.evaluations import Evaluation, EvaluationCase, EvaluationResult
from pipelines.models.releases import Deployment, Release, ReleaseTransition
from pipelines.models.runs import Run, StepRun

__all__ = [
    "IDENTIFIER",
    "Delivery",
    "Deployment",
    "Evaluation",
    "EvaluationCase",
    "EvaluationResult",
    "ModelConfig",
    "ModelConfigGroupObjectPermission",
    "ModelConfigUserObjectPermission",
    "Pipeline",
    "PipelineGroupObjectPermission",
    "PipelineUserObjectPermission",
    "PromptTemplate",
    "PromptTemplateGroupObjectPermission",
    "PromptTemplateUserObjectPermission",
    "Release",
    "ReleaseTransition",
    "Run",
    "Step",
    "StepRun",
    "env_var_name",
]
