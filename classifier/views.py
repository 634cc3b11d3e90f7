"""HTML pages: upload, results, gallery, detail, and the image files they show."""

from __future__ import annotations

import functools
import mimetypes
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from classifier import exports, selectors, services
from classifier.api import UploadAnonThrottle, UploadUserThrottle, create_uploads, throttle_message
from classifier.imaging import ACCEPT_ATTRIBUTE
from classifier.models import Prediction, Upload
from classifier.templatetags.element_names import element_name
from heritage_site.api import rate_text, request_user, token_failure
from heritage_site.decorators import staff_required


def _throttle_wait(request: HttpRequest) -> float | None:
    """Apply the API's upload throttles to the form post; returns seconds to wait when over the rate."""
    for throttle in (UploadAnonThrottle(), UploadUserThrottle()):
        if not throttle.allow_request(request, None):
            return throttle.wait() or 1.0
    return None


@require_http_methods(["GET", "POST"])
def upload_page(request: HttpRequest) -> HttpResponse:
    """Render the upload form, and handle its POST, which browsers without JavaScript use."""
    context = {
        "accept": ACCEPT_ATTRIBUTE,
        "max_files": settings.UPLOAD_MAX_FILES,
        "max_mebibytes": settings.UPLOAD_MAX_BYTES // (1024 * 1024),
        # The page's script sends one request per photo, so requests are photos here.
        "upload_rate": rate_text("uploads_user" if request.user.is_authenticated else "uploads_anon", "uploads"),
        "active_model": selectors.model_version_get_active(),
        "rejections": [],
        "small_side": SMALL_PHOTO_SIDE,
    }
    if request.method == "GET":
        return render(request, "classifier/upload.html", context)

    # A post without files, or with too many, is rejected before the upload limit counts it.
    files = request.FILES.getlist("file")
    if not files:
        messages.error(request, "Choose one or more photos to upload.")
        return render(request, "classifier/upload.html", context, status=400)
    if len(files) > settings.UPLOAD_MAX_FILES:
        messages.error(request, f"Upload at most {settings.UPLOAD_MAX_FILES} photos at a time.")
        return render(request, "classifier/upload.html", context, status=400)
    wait = _throttle_wait(request)
    if wait is not None:
        messages.error(request, throttle_message(request.user, wait))
        return render(request, "classifier/upload.html", context, status=429)

    uploads, entries = create_uploads(files, request.user)
    accepted_ids = [str(upload.pk) for upload in uploads if upload is not None]
    rejections = [entry for entry in entries if entry is not None]
    if not accepted_ids:
        context["rejections"] = rejections
        return render(request, "classifier/upload.html", context, status=400)

    # Rejections travel to the results page in the session (Post/Redirect/Get). Messages
    # would show once, and the page reloads itself while predictions run.
    ids = _remember_uploads(request, accepted_ids, [rejection["error"]["message"] for rejection in rejections])
    return redirect(f"{reverse('classifier:results')}?ids={ids}")


# How many of a browser session's latest form uploads keep their file names on the results page.
SESSION_UPLOADS_KEPT = 200
# How many of a browser session's latest form posts keep their rejected files' reasons on the results page.
SESSION_REJECTIONS_KEPT = 20


def _remember_uploads(request: HttpRequest, upload_ids: list[str], rejections: list[str]) -> str:
    """Record in the session which uploads this browser sent, and why files of that post were rejected.

    The results page shows this browser the file names and the reasons, on every reload.
    Returns the results page's ``ids`` value, which keys the reasons.
    """
    ids = ",".join(upload_ids)
    recent = request.session.get("upload_ids", []) + [int(upload_id) for upload_id in upload_ids]
    request.session["upload_ids"] = recent[-SESSION_UPLOADS_KEPT:]
    if rejections:
        other_posts = [entry for entry in request.session.get("upload_rejections", []) if entry["ids"] != ids]
        request.session["upload_rejections"] = [*other_posts, {"ids": ids, "messages": rejections}][
            -SESSION_REJECTIONS_KEPT:
        ]
    return ids


@require_GET
def upload_results(request: HttpRequest) -> HttpResponse:
    """Results of a form upload; refreshes itself while predictions are pending."""
    raw_ids = request.GET.get("ids", "")
    upload_ids = [int(part) for part in raw_ids.split(",") if part.strip().isdigit()][: settings.UPLOAD_MAX_FILES]
    uploads = selectors.uploads_by_ids_for_user(upload_ids, request.user)
    # File names are private, as elsewhere: shown to the uploader, or to the browser that sent them.
    own = set(request.session.get("upload_ids", []))
    for upload in uploads:
        private = selectors.can_see_private(request.user, upload) or upload.pk in own
        upload.shown_name = upload.original_name if private else f"Photo {upload.pk}"
        upload.alt_text = f"Uploaded photo {upload.original_name}" if private else f"Photo {upload.pk}"
        upload.too_small = _too_small(upload)
    pending = any(
        upload.latest_prediction is None or upload.latest_prediction.status == Prediction.Status.PENDING
        for upload in uploads
    )
    rejections = next(
        (entry["messages"] for entry in request.session.get("upload_rejections", []) if entry["ids"] == raw_ids), []
    )
    return render(
        request,
        "classifier/results.html",
        {"uploads": uploads, "pending": pending, "rejections": rejections, "small_side": SMALL_PHOTO_SIDE},
    )


# The spellings of a yes/no filter (checked, mine), the API's true and false included, and the canonical value of each.
CHECKED_SPELLINGS = {
    "1": "yes",
    "true": "yes",
    "yes": "yes",
    "on": "yes",
    "0": "no",
    "false": "no",
    "no": "no",
    "off": "no",
}
CHECKED_FILTERS = {"yes": True, "no": False}


def _gallery_filters(request: HttpRequest, user, class_names: list[str]) -> tuple[str, bool, str]:
    """Read the gallery's label, "my uploads" and checked filters. Unknown values fall back to all photos."""
    label = request.GET.get("label", "")
    if label not in class_names:
        label = ""
    mine = _mine_requested(request) and user.is_authenticated
    checked = CHECKED_SPELLINGS.get(request.GET.get("checked", "").strip().lower(), "")
    return label, mine, checked


def _unknown_filter_values(request: HttpRequest, class_names: list[str]) -> dict[str, str]:
    """Map each gallery filter to the value given for it that means nothing, or "" when it is fine."""
    values = {name: request.GET.get(name, "") for name in ("label", "checked", "mine", "order")}
    known = {
        "label": values["label"] == "" or values["label"] in class_names,
        "checked": values["checked"].strip() == "" or values["checked"].strip().lower() in CHECKED_SPELLINGS,
        "mine": values["mine"].strip() == "" or values["mine"].strip().lower() in CHECKED_SPELLINGS,
        "order": values["order"].strip().lower() in {"", "newest", "confidence"},
    }
    return {name: "" if known[name] else values[name] for name in values}


def _mine_requested(request: HttpRequest) -> bool:
    return CHECKED_SPELLINGS.get(request.GET.get("mine", "").strip().lower()) == "yes"


def _least_confident_requested(request: HttpRequest) -> bool:
    return request.GET.get("order", "").strip().lower() == "confidence"


def _gallery_uploads(user, label: str, mine: bool, checked: str, least_confident_first: bool = False):
    filters = {
        "label": label or None,
        "checked": CHECKED_FILTERS.get(checked),
        "least_confident_first": least_confident_first,
    }
    if mine:
        return selectors.upload_list_for_owner(user, **filters)
    return selectors.upload_list_public(**filters)


@require_GET
def gallery(request: HttpRequest) -> HttpResponse:
    class_names = selectors.class_names()
    label, mine, checked = _gallery_filters(request, request.user, class_names)
    least_confident = _least_confident_requested(request)
    uploads = _gallery_uploads(request.user, label, mine, checked, least_confident)
    paginator = Paginator(uploads, settings.GALLERY_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    order = "confidence" if least_confident else ""
    filters = (("label", label), ("mine", "1" if mine else ""), ("checked", checked), ("order", order))
    query = urlencode({key: value for key, value in filters if value})
    context = {
        "page": page,
        "label": label,
        "mine": mine,
        "checked": checked,
        "order": order,
        "mine_requested": _mine_requested(request),
        **{f"unknown_{name}": value for name, value in _unknown_filter_values(request, class_names).items()},
        "query": query,
        "class_names": class_names,
    }
    return render(request, "classifier/gallery.html", context)


@require_GET
def gallery_export(request: HttpRequest) -> HttpResponse:
    """Stream the gallery, or with mine=1 the requester's own uploads, as CSV with every class probability."""
    token_problem = token_failure(request)
    if token_problem:
        return _text_unauthorized(token_problem)

    user = request_user(request)
    class_names = selectors.class_names()
    problems = _export_filter_problems(_unknown_filter_values(request, class_names), class_names)
    if problems:
        return HttpResponse("\n".join(problems) + "\n", status=400, content_type="text/plain")

    label, mine, checked = _gallery_filters(request, user, class_names)
    if _mine_requested(request) and not mine:
        return _text_unauthorized("Log in, or send an API token, to export your own uploads.")

    uploads = _gallery_uploads(user, label, mine, checked, _least_confident_requested(request)).iterator(
        chunk_size=exports.CHUNK_SIZE
    )
    rows = exports.upload_csv_rows(
        uploads, class_names, build_url=request.build_absolute_uri, owner_columns=mine, full_errors=user.is_staff
    )
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    name = "heritage-lens-my-uploads" if mine else "heritage-lens-gallery"
    if label:
        name += f"-{label}"
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response


def _text_unauthorized(message: str) -> HttpResponse:
    response = HttpResponse(message, status=401, content_type="text/plain")
    response["WWW-Authenticate"] = "Token"
    return response


def _export_filter_problems(unknown: dict[str, str], class_names: list[str]) -> list[str]:
    """Return one line per filter value the CSV export cannot apply.

    The gallery shows a notice instead, but a file has no room for one, and
    an unfiltered file would pass for a filtered one.
    """
    expected = {
        "label": f"a class of the active model ({', '.join(class_names)})",
        "checked": "yes or no (also true/false, 1/0, on/off)",
        "mine": "1 or 0 (also yes/no, true/false, on/off)",
        "order": "newest or confidence",
    }
    return [f"Invalid {name} filter “{value}”: use {expected[name]}." for name, value in unknown.items() if value]


def _upload_or_404(upload_id: int, user) -> Upload:
    upload = selectors.upload_get_for_user(upload_id, user)
    if upload is None:
        raise Http404(f"Photo {upload_id} not found: it does not exist, or it is hidden from the public.")
    return upload


# The model reads the central square of a photo at 64 px, the size of AHE's test photos.
# A photo under half that on its short side has too little detail for the prediction to mean much.
SMALL_PHOTO_SIDE = 32


def _too_small(upload: Upload) -> bool:
    return min(upload.stored_image.width, upload.stored_image.height) < SMALL_PHOTO_SIDE


@require_GET
def detail(request: HttpRequest, upload_id: int) -> HttpResponse:
    user = request_user(request)
    upload = _upload_or_404(upload_id, user)
    prediction = upload.latest_prediction
    probabilities = prediction.top_probabilities(count=len(prediction.probabilities)) if prediction else []
    return render(
        request,
        "classifier/detail.html",
        {
            "upload": upload,
            "prediction": prediction,
            "probabilities": probabilities,
            "can_see_original": selectors.can_see_private(user, upload),
            "class_names": selectors.class_names() if user.is_staff else [],
            "too_small": _too_small(upload),
            "small_side": SMALL_PHOTO_SIDE,
        },
    )


@require_http_methods(["GET", "POST"])
def detail_delete(request: HttpRequest, upload_id: int) -> HttpResponse:
    """Ask for confirmation (GET), then delete the photo (POST), for the uploader and staff only."""
    upload = _upload_or_404(upload_id, request.user)
    if not selectors.can_see_private(request.user, upload):
        raise Http404("Image not found.")

    if request.method == "GET":
        return render(request, "classifier/delete.html", {"upload": upload})
    services.upload_delete(upload)
    messages.success(request, f"Photo {upload_id} is deleted, with its predictions.")
    gallery_url = reverse("classifier:gallery")
    return redirect(f"{gallery_url}?mine=1" if upload.owner_id == request.user.pk else gallery_url)


def _photo_action(view):
    """Wrap a staff form action on a photo: POST runs it, and a GET goes back to the photo's page.

    A staff member whose session ran out is sent to log in and then back to
    the action's URL with a GET, which would otherwise end on an empty 405 page.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, upload_id: int) -> HttpResponse:
        if request.method == "GET":
            messages.info(request, "Nothing was changed. Use the buttons on this page.")
            return redirect("classifier:detail", upload_id=upload_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        return view(request, upload_id)

    return staff_required(wrapper)


@require_http_methods(["GET", "POST"])
def detail_set_hidden(request: HttpRequest, upload_id: int) -> HttpResponse:
    """Hide the photo from the gallery or show it again, for the uploader and staff only."""
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("classifier:detail", args=[upload_id]))
    upload = _upload_or_404(upload_id, request.user)
    if not selectors.can_see_private(request.user, upload):
        raise Http404("Image not found.")
    if request.method == "GET":
        return redirect("classifier:detail", upload_id=upload.pk)
    if request.POST.get("hidden") not in ("0", "1"):
        messages.error(request, "Nothing was changed: the form must send hidden=1 to hide or hidden=0 to show.")
        return redirect("classifier:detail", upload_id=upload.pk)

    hidden = request.POST["hidden"] == "1"
    services.upload_set_hidden(upload, hidden=hidden)
    messages.success(
        request,
        "The photo is hidden: only its uploader and staff can see it."
        if hidden
        else "The photo is in the gallery again.",
    )
    return redirect("classifier:detail", upload_id=upload.pk)


@_photo_action
def detail_set_label(request: HttpRequest, upload_id: int) -> HttpResponse:
    upload = _upload_or_404(upload_id, request.user)
    try:
        services.upload_set_verified_label(upload, label=request.POST.get("label", ""), user=request.user)
    except services.InvalidLabel as error:
        messages.error(request, f"The label was not saved: {error}")
    else:
        messages.success(
            request,
            f"Checked label of photo {upload.pk} saved: {element_name(upload.verified_label)}."
            if upload.verified_label
            else f"Checked label of photo {upload.pk} removed: it is not checked now.",
        )
    return redirect("classifier:detail", upload_id=upload.pk)


@_photo_action
def detail_predict(request: HttpRequest, upload_id: int) -> HttpResponse:
    upload = _upload_or_404(upload_id, request.user)
    services.prediction_request(upload)
    messages.success(request, "A new prediction with the active model is queued.")
    return redirect("classifier:detail", upload_id=upload.pk)


def _file_response(name: str, *, public: bool) -> FileResponse:
    # NOTE: with an object store behind STORAGE_BACKEND these views stream the
    # bytes through Django. Redirecting to storage URLs would take that load
    # off the web processes but needs signed URLs to keep hidden photos and
    # originals private.
    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404("Image file not found.") from None

    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    # Public copies never change for a given upload; originals stay out of
    # shared caches.
    response["Cache-Control"] = "public, max-age=86400" if public else "private, no-store"
    return response


@require_GET
def display_file(request: HttpRequest, upload_id: int) -> FileResponse:
    upload = _upload_or_404(upload_id, request_user(request))
    return _file_response(upload.stored_image.display.name, public=not upload.is_hidden)


@require_GET
def thumbnail_file(request: HttpRequest, upload_id: int) -> FileResponse:
    upload = _upload_or_404(upload_id, request_user(request))
    return _file_response(upload.stored_image.thumbnail.name, public=not upload.is_hidden)


@require_GET
def original_file(request: HttpRequest, upload_id: int) -> FileResponse:
    """Serve the uploaded bytes, EXIF included, to the uploader and staff only."""
    user = request_user(request)
    upload = _upload_or_404(upload_id, user)
    if not selectors.can_see_private(user, upload):
        raise Http404("Image not found.")

    response = _file_response(upload.stored_image.original.name, public=False)
    response["Content-Disposition"] = (
        f'attachment; filename="{upload.pk}-{upload.stored_image.original.name.rsplit("/", 1)[-1]}"'
    )
    return response
