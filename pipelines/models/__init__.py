"""The pipelines app's models: the governed configuration (config.py) and
what runs from it (releases.py)."""

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
from pipelines.models.releases import Deployment, Release, ReleaseTransition

__all__ = [
    "IDENTIFIER",
    "Deployment",
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
    "Step",
    "env_var_name",
]
