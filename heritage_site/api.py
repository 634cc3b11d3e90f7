"""API conventions shared by every app: the JSON error body, and token users on plain pages."""

from __future__ import annotations

import math

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, permissions, status
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

from heritage_site.decorators import STAFF_ONLY


def _first_message(detail) -> str:
    """Return one line for an error detail: the first message of each field, as sentences."""
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        parts = []
        for field, value in detail.items():
            message = _first_message(value)
            part = message if field == "non_field_errors" else f"{field}: {message}"
            parts.append(part if part.endswith((".", "?", "!")) else f"{part}.")
        return " ".join(parts)
    return str(detail)


class IsStaff(permissions.BasePermission):
    """Staff members only, with the same refusal message on every endpoint."""

    message = STAFF_ONLY

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class Pagination(PageNumberPagination):
    """DRF's page-number pagination, with an error for a missing page that gives the valid range."""

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except exceptions.NotFound:
            pages = self.django_paginator_class(queryset, self.get_page_size(request)).num_pages
            page_text = request.query_params.get(self.page_query_param, "")
            raise exceptions.NotFound(
                f"Invalid page {page_text!r}: use a page number from 1 to {pages}, or last."
            ) from None


def exception_handler(exc, context):
    """Render every API error as ``{"error": {"code", "message"}}``.

    Validation errors also carry ``fields`` with the per-field messages, so
    clients can point at the input that failed.
    """
    # DRF also handles Django's own 404 and 403, but with no error code.
    # Converting them to DRF's exceptions gives them the same body as other errors.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None

    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        body = {"error": {"code": code, "message": _first_message(exc.detail)}}
        if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
            body["error"]["fields"] = exc.detail
    else:
        body = {"error": {"code": "error", "message": _first_message(response.data)}}

    response.data = body
    return response


def error_response(code: str, message: str, status_code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"error": {"code": code, "message": message}}, status=status_code)


def token_failure(request) -> str | None:
    """Return why the request's ``Authorization: Token ...`` header was rejected, or None if it is valid or absent."""
    try:
        TokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed as error:
        return str(error.detail)
    return None


def request_user(request):
    """Return who sent a plain Django request: the session's user, else an API token's.

    The API lists file and download links that plain views serve, so an API
    client's ``Authorization: Token ...`` header must open them too. A bad
    token counts as no user, as on a page without a session.
    """
    if request.user.is_authenticated:
        return request.user
    try:
        authenticated = TokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed:
        return request.user
    return authenticated[0] if authenticated is not None else request.user


def rate_text(scope: str, noun: str = "") -> str:
    """Return a throttle scope's rate from settings in words, such as "30 uploads per hour" or "10 per minute"."""
    count, _, period = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][scope].partition("/")
    # DRF reads only the period's first letter, so "h" and "hour" are the same unit.
    unit = {"s": "second", "m": "minute", "h": "hour", "d": "day"}[period[0]]
    return f"{count} {noun} per {unit}" if noun else f"{count} per {unit}"


class TokenRequestThrottle(SimpleRateThrottle):
    """Limit on token requests per client address, logged in or not, so that passwords cannot be guessed quickly."""

    scope = "token_requests"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class TokenApi(ObtainAuthToken):
    """DRF's view that exchanges a user name and password for an API token, throttled per address."""

    throttle_classes = [TokenRequestThrottle]

    def throttled(self, request, wait):
        exception = exceptions.Throttled(
            detail=f"Too many token requests: the limit is {rate_text(TokenRequestThrottle.scope)} for each address. "
            f"Try again in {max(1, math.ceil(wait or 1))} seconds."
        )
        exception.wait = math.ceil(wait) if wait else None
        raise exception
