from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "Keel governance"
admin.site.site_title = "Keel"
admin.site.index_title = "Governance"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("pipelines.api.urls")),
]
