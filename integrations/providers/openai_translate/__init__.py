"""Translation through an OpenAI-compatible chat-completions endpoint (the official ``openai``
SDK), as a synchronous APICall integration.

``api.py`` is the typed HTTP wrapper, ``integration.py`` maps its answers to integration events,
``fake_server.py`` is a loopback server speaking the same wire format, for tests.
"""

from integrations.providers.openai_translate.api import (
    OpenAIHTTPError,
    TranslateAPI,
    Translation,
    Usage,
)
from integrations.providers.openai_translate.integration import (
    OpenAITranslateIntegration,
    TranslationParams,
)

__all__ = [
    "OpenAIHTTPError",
    "OpenAITranslateIntegration",
    "TranslateAPI",
    "Translation",
    "TranslationParams",
    "Usage",
]
