"""The service's OpenAPI document, as committed in ``docs/openapi.json``.

Regenerate after changing the API: ``python -m retriever.service.openapi > docs/openapi.json``
(a test fails while the committed file is stale).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from retriever.service.app import create_app
from retriever.service.state import ServiceConfig


def openapi_document() -> dict[str, Any]:
    """The OpenAPI spec of the app (it does not depend on the collection or the settings)."""
    return create_app(ServiceConfig()).openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render())
