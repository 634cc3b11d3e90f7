"""View decorators shared by the apps."""

import functools

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.urls import reverse

STAFF_ONLY = "Only staff users may do this."


def staff_required(view):
    """Allow staff, redirect a visitor who is not logged in to the login page, and reject other users with 403.

    Django's staff_member_required sends a logged-in user who is not staff to
    the admin login page too, which looks like a broken login rather than a
    refusal.
    """

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not request.user.is_staff:
            raise PermissionDenied(STAFF_ONLY)
        return view(request, *args, **kwargs)

    return wrapper
