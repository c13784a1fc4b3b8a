"""The galaxy search web page and its JSON API (`galaxalign serve`)."""

from galaxalign.web.app import create_app

__all__ = ["create_app"]
