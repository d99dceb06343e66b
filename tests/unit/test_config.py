"""Settings from the environment (server.config.from_env)."""

from __future__ import annotations

import pytest

from server.config import ConfigError, from_env


@pytest.mark.parametrize(("raw", "bind"), [("off", ""), ("OFF", ""), ("none", ""), ("", "127.0.0.1:8081"),
                                           ("127.0.0.1:9000", "127.0.0.1:9000")])
def test_the_beckn_facade_is_switched_off_by_name(raw: str, bind: str) -> None:
    """An empty variable means the default, so `off` is how the facade is switched off."""
    assert from_env({"DERFLEX_BECKN_BIND": raw}).beckn_bind == bind


def test_a_bad_number_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="DERFLEX_POLL_RATE must be a whole number"):
        from_env({"DERFLEX_POLL_RATE": "soon"})
