"""Volcano Engine asynchronous text to speech: ``api`` (the HTTP client and its typed answers),
``integration`` (:class:`VolcTTSIntegration`), ``fake_server`` (a loopback fake for tests)."""

from integrations.providers.volc_tts.integration import VolcTTSIntegration

__all__ = ["VolcTTSIntegration"]
