"""Settings from the environment (server.config.from_env)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from server.config import ConfigError, Settings, from_env


@pytest.mark.parametrize(("raw", "bind"), [("off", ""), ("OFF", ""), ("none", ""), ("", ""), (" ", ""),
                                           ("127.0.0.1:9000", "127.0.0.1:9000")])
def test_the_beckn_facade_is_switched_off_empty_or_by_name(raw: str, bind: str) -> None:
    """DERFLEX_BECKN_BIND= (empty) switches the facade off, as `off` does; unset, the default."""
    assert from_env({"DERFLEX_BECKN_BIND": raw}).beckn_bind == bind
    assert from_env({}).beckn_bind == "127.0.0.1:8081"


def test_a_bad_number_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="DERFLEX_POLL_RATE must be a whole number"):
        from_env({"DERFLEX_POLL_RATE": "soon"})


_DEFAULTS = Settings()
# every setting but the texts whose default is "" (it names a fallback), the lists and the BPP's and
# the dashboard's binds (empty: switched off)
EMPTY_REFUSED = [f.name for f in fields(Settings) if f.name not in ("extra", "beckn_bind", "ui_bind", "pki_dir")
                 and getattr(_DEFAULTS, f.name) != "" and not isinstance(getattr(_DEFAULTS, f.name), tuple)]
assert {"poll_rate", "scheduler", "tls_cert_file", "bind", "timezone", "home"} <= set(EMPTY_REFUSED)


@pytest.mark.parametrize("name", EMPTY_REFUSED)
def test_an_empty_value_without_a_meaning_of_its_own_is_refused_naming_its_variable(name: str) -> None:
    """Numbers, switches, paths, names: "" is never silently the default."""
    variable = f"DERFLEX_{name.upper()}"
    with pytest.raises(ConfigError, match=f"{variable} is set but empty: unset it for the default"):
        from_env({variable: ""})


@pytest.mark.parametrize(("name", "meaning"), [
    ("database_url", ""),  # SQLite in <home>/var
    ("beckn_subscriber_uri", ""),  # http://<beckn_bind>/beckn
    ("beckn_registry_url", ""),  # the file registry
    ("pki_dir", None),  # <home>/certs, as `derflex pki` reads it
    ("trusted_proxies", ()),  # no proxy is trusted
    ("notification_allow", ()),  # no rule lifted
])
def test_an_empty_value_with_a_documented_meaning_means_it(name: str, meaning: object) -> None:
    assert getattr(from_env({f"DERFLEX_{name.upper()}": ""}), name) == meaning


def test_an_explicit_option_wins_over_an_empty_variable() -> None:
    """`derflex --home X` with DERFLEX_HOME= left empty in the environment: the option is the value."""
    assert from_env({"DERFLEX_HOME": ""}, home=Path("/srv/derflex")).home == Path("/srv/derflex")
