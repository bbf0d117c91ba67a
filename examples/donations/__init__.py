"""The guide's example application: a donation that gets a payment, a translated message and
a thank-you voice message, each through an integration (see ``python -m examples.donations``)."""
