"""Project-wide middleware."""

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import TooManyFilesSent
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse


class TooManyFilesMiddleware:
    """Reply to a multipart POST that has more files than Django will parse with this site's own error.

    Django raises TooManyFilesSent while it parses the body, which happens in
    CSRF checking before any view runs, and turns it into a bare 400 page (or
    the debug page). API clients get the JSON error body with code
    ``too_many_files`` instead, and pages get their form back with a message.
    Up to DATA_UPLOAD_MAX_NUMBER_FILES files reach the views, which apply
    UPLOAD_MAX_FILES themselves.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.content_type == "multipart/form-data":
            try:
                # Parses the body now instead of in the CSRF check; later reads reuse the result.
                request.FILES  # noqa: B018
            except TooManyFilesSent:
                return self.too_many_files(request)
        return self.get_response(request)

    def too_many_files(self, request: HttpRequest) -> HttpResponse:
        # Django stops counting at its limit, so the number sent is unknown.
        message = f"Too many files in one request: upload at most {settings.UPLOAD_MAX_FILES} per request."
        if request.path.startswith("/api/"):
            body = {"error": {"code": "too_many_files", "message": message}}
            # Compact, as DRF writes the API's other error bodies.
            return JsonResponse(body, status=400, json_dumps_params={"separators": (",", ":")})

        messages.error(request, message)
        return HttpResponseRedirect(request.path)
