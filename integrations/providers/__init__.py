"""Integrations with concrete external providers, one package each."""
