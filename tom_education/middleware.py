"""Who is saving a data product: the automatic-run rules need it, and a ``post_save`` signal does not say.

tom_base's upload page saves a product on any target named in its form, without checking that the
uploader may view that target; a rule owned by someone who may would then run on a stranger's file.
:class:`UploaderMiddleware` remembers the request being handled, so that ``automation.record_arrival``
can ask whether its user may view the product's target. Products saved outside a request (facility
modules' periodic downloads, scripts, workers) have no uploader and are trusted, as
``services.start_process(user=None)`` is.
"""
from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponse

_current_request: ContextVar[HttpRequest | None] = ContextVar('tom_education_current_request', default=None)


class UploaderMiddleware:
    """Add ``'tom_education.middleware.UploaderMiddleware'`` to ``MIDDLEWARE`` (after the authentication one)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)


def current_uploader() -> tuple[bool, Any]:
    """``(True, user)`` while a request is handled (the user is anonymous when nobody is signed in), else
    ``(False, None)``. Read when asked: Django REST framework authenticates a token inside the view
    and then sets the user on the request this middleware saw.
    """
    request = _current_request.get()
    if request is None:
        return False, None
    return True, getattr(request, 'user', None)
