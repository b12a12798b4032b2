from django.urls import path

from audit import views

urlpatterns = [
    path("", views.timeline, name="audit-timeline"),
    path("export/", views.export, name="audit-export"),
    path("runs/<int:run_id>/", views.run_story, name="audit-run"),
    path("runs/<int:run_id>/reveal/", views.run_reveal, name="audit-run-reveal"),
    path("permissions/", views.permissions_at, name="audit-permissions-at"),
    path("access-review/<int:workspace_id>/", views.access_review, name="audit-access-review"),
]
