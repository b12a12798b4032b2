from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from config.two_factor import two_factor
from pipelines.integration import health

admin.site.site_header = "Keel governance"
admin.site.site_title = "Keel"
admin.site.index_title = "Governance"

# An error raised while the database, broker or cache is away answers 503, not 500.
handler500 = "config.outages.server_error"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("audit/", include("audit.urls")),
    path("account/two-factor/", two_factor, name="two-factor"),
    path("review/", include("reviews.urls")),
    path("", include("pipelines.integration.api.urls")),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
]
