from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from pipelines.integration.api import release_control, views
from pipelines.integration.api.errors import not_found

urlpatterns = [
    path("api/v1/pipelines/<slug:slug>/runs", views.RunCreateView.as_view(), name="api-runs-create"),
    path("api/v1/runs/<int:pk>", views.RunDetailView.as_view(), name="api-runs-detail"),
    path("api/v1/runs", views.RunListView.as_view(), name="api-runs-list"),
    path("api/v1/pipelines/<slug:slug>/rollback", release_control.RollbackView.as_view(), name="api-rollback"),
    path("api/v1/pipelines/<slug:slug>/pause", release_control.PauseView.as_view(), name="api-pause"),
    path("api/v1/pipelines/<slug:slug>/resume", release_control.ResumeView.as_view(), name="api-resume"),
    path("api/v1/pipelines/<slug:slug>/as-of", release_control.AsOfView.as_view(), name="api-as-of"),
    # The schema and its docs describe the API; they hold no data, so they need no token.
    path(
        "api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="api-schema"
    ),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", authentication_classes=[], permission_classes=[]),
        name="api-docs",
    ),
    re_path(r"^api/", not_found),
]
