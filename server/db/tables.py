"""Every table of the application, for what needs the whole schema at once (migration checks,
test clean-up). Importing a table module registers its tables on Base.metadata."""

from server.db import beckn, curves, der, derp, flex, fsa, log_events, metering, models, outbox, rsps, sub, ui

metadata = models.Base.metadata

__all__ = ["metadata", "beckn", "curves", "der", "derp", "flex", "fsa", "log_events", "metering", "models", "outbox", "rsps", "sub", "ui"]
