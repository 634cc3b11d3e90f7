"""Root URL configuration.

Each app owns its URL modules: ``<app>/urls.py`` for HTML pages and
``<app>/api_urls.py`` for endpoints mounted under ``/api/v1/``.
"""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from heritage_site import views
from heritage_site.api import TokenApi

admin.site.site_header = "Heritage Lens administration"
admin.site.site_title = "Heritage Lens admin"
admin.site.index_title = "Uploads, models and training"

api_v1_patterns = [
    path("auth/token/", TokenApi.as_view(), name="auth-token"),
    path("schema/", SpectacularAPIView.as_view(api_version="v1"), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-v1:schema"), name="docs"),
    path("", include("classifier.api_urls")),
    path("", include("training_jobs.api_urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", views.SiteLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include((api_v1_patterns, "api-v1"))),
    # Any other /api/ URL, such as /api/v1/images/abc/, gets the API's JSON 404 instead of an HTML page.
    re_path(r"^api/", views.api_not_found, name=views.API_NOT_FOUND),
    path("healthz", views.health, name="health"),
    # Pages link the icon themselves; this serves browsers and the admin, which ask for /favicon.ico.
    path("favicon.ico", RedirectView.as_view(url=f"{settings.STATIC_URL}favicon.svg", permanent=True)),
    path("training/", include("training_jobs.urls")),
    path("", include("classifier.urls")),
]
