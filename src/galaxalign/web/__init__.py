"""The galaxy search web page and its JSON API (`galaxalign serve`)."""

from galaxalign.errors import require_extra

require_extra("web", "The search page (galaxalign serve)", "fastapi", "python_multipart")
from galaxalign.web.app import create_app  # noqa: E402  (after the check, which names the extra)

__all__ = ["create_app"]
