from django.contrib.auth import views as auth_views
from django.urls import path

from reviews import views

urlpatterns = [
    path("", views.queue, name="reviews-queue"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="reviews/login.html", redirect_authenticated_user=True, next_page="reviews-queue"
        ),
        name="reviews-login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="reviews-login"), name="reviews-logout"),
    path("next/", views.next_task, name="reviews-next"),
    path("mine/", views.mine, name="reviews-mine"),
    path("metrics/<slug:slug>/", views.metrics, name="reviews-metrics"),
    path("tasks/<int:pk>/", views.detail, name="reviews-detail"),
    path("tasks/<int:pk>/decide/", views.decide, name="reviews-decide"),
    path("tasks/<int:pk>/undo/", views.undo, name="reviews-undo"),
    path("tasks/<int:pk>/qa/", views.qa, name="reviews-qa"),
    path("tasks/<int:pk>/release/", views.release, name="reviews-release"),
]
