"""Project-level views that belong to no app."""

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.db import connection
from django.http import HttpRequest, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt

API_NOT_FOUND = "api-not-found"


def health(request: HttpRequest) -> JsonResponse:
    """Report whether the process can reach its database (used by health checks)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


# API clients send tokens, not CSRF cookies, and this view changes nothing,
# so without the exemption a POST would get Django's HTML CSRF page instead.
@csrf_exempt
def api_not_found(request: HttpRequest) -> HttpResponsePermanentRedirect | JsonResponse:
    """Return the API's JSON 404 body for an /api/ URL that matches no endpoint, instead of an HTML page.

    A path that lacks only its trailing slash names a real endpoint. A GET
    or HEAD is redirected there, as Django does for pages; other methods
    would lose their body in a redirect, so the error tells the client to add the slash.
    """
    with_slash = f"{request.path}/"
    if not request.path.endswith("/") and _is_endpoint(with_slash):
        if request.method in ("GET", "HEAD"):
            query = request.META.get("QUERY_STRING", "")
            return HttpResponsePermanentRedirect(with_slash + (f"?{query}" if query else ""))
        message = f"No API endpoint at {request.path}. Endpoints end with a slash: {with_slash}"
    else:
        message = f"No API endpoint at {request.path}. The list is at /api/v1/docs/."
    return JsonResponse({"error": {"code": "not_found", "message": message}}, status=404)


def _is_endpoint(path: str) -> bool:
    try:
        return resolve(path).url_name != API_NOT_FOUND
    except Resolver404:
        return False


class SiteLoginView(LoginView):
    """Django's login page, with a line on how visitors get an account."""

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "contact_email": settings.CONTACT_EMAIL}
