"""The pipelines app in Django's admin, one module per area.

Importing this package registers every area's ModelAdmins (Django's admin autodiscovery
imports ``pipelines.admin``): configuration (pipelines, prompts, model configs), releases,
deployments and runs, release control and evaluation, and the integration surface (tokens,
dead letters, schedules, budgets, documents).
"""

from pipelines.admin import config, integration, release_control, releases  # noqa: F401 - registers the ModelAdmins
