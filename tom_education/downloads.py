"""The response that serves an output file, shared by the page's download link and the API.

Only the permission-checked views call this (the caller has already established that the user may
see the product): output files are never linked by their ``MEDIA_URL``, which many TOMs serve
without a login.
"""
from __future__ import annotations

import mimetypes

from django.http import FileResponse
from tom_dataproducts.models import DataProduct

from tom_education.services import product_file_name

#: Types a browser shows safely in the page itself. Anything else (HTML, SVG, scripts: types that can
#: run code in the TOM's origin) is sent as an attachment, and never sniffed into something else.
INLINE_TYPES = frozenset({
    'image/png', 'image/jpeg', 'image/gif', 'image/webp', 'video/mp4', 'video/webm', 'text/plain',
})


class OutputFileMissing(LookupError):
    """The product exists but its file is not in the storage (deleted by hand, a storage moved)."""

    message = ('The file of this output is missing from the TOM\'s storage. Ask the TOM administrator to restore '
               'it, or re-run the pipeline.')


def output_file_response(product: DataProduct) -> FileResponse:
    """Stream the product's file from whatever storage holds it, inline when a browser can show it safely."""
    name = product_file_name(product)
    if not product.data or not product.data.storage.exists(product.data.name):
        raise OutputFileMissing()
    try:
        handle = product.data.open('rb')
    except (FileNotFoundError, OSError):
        # the storage's error names its absolute path: never shown to the user
        raise OutputFileMissing() from None
    content_type = mimetypes.guess_type(name)[0] or 'application/octet-stream'
    inline = content_type in INLINE_TYPES
    if content_type.startswith('text/'):
        content_type += '; charset=utf-8'
    response = FileResponse(handle, as_attachment=not inline, filename=name, content_type=content_type)
    response['X-Content-Type-Options'] = 'nosniff'
    return response
