"""Settings of issue 6 that a site sets: bad values stop the start-up with a clear message."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from monitor.settings import ATC, Settings


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ({"iss": "ehr", "public_key": "nope"}, "client 'ehr': public_key is not a PEM public key"),
        ({"iss": "ehr", "jwks": {"keys": [{"kty": "EC"}]}}, "client 'ehr': jwks is not a usable"),
        ({"iss": "ehr", "jwks_url": "ftp://x"}, "jwks_url 'ftp://x' is not an http(s) URL"),
        ({"iss": "ehr"}, "give exactly one of jwks_url, jwks, public_key"),
        (
            {"iss": "ehr", "jwks_url": "https://ehr/jwks", "public_key": "x"},
            "give exactly one of jwks_url, jwks, public_key",
        ),
    ],
)
def test_a_cds_client_with_an_unusable_key_is_refused(client: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match="cds_clients") as raised:
        Settings(cds_clients=[client])
    assert message in str(raised.value)


def test_code_maps_given_by_a_site_keep_the_other_built_in_keys() -> None:
    settings = Settings(fhir_immunotherapy_codes={"plasma_exchange": ["urn:site|PLEX"]})
    assert settings.fhir_immunotherapy_codes["plasma_exchange"] == ["urn:site|PLEX"]
    assert settings.fhir_immunotherapy_codes["ivig"] == [f"{ATC}|J06BA02"]
    cleared = Settings(fhir_term_codes={"pain": []})
    assert cleared.fhir_term_codes["pain"] == []
    assert cleared.fhir_term_codes["sensory"]


@pytest.mark.parametrize("url", ["ftp://host", "https://host/", "host:8000", "https://"])
def test_the_public_base_url_is_an_http_url_without_a_trailing_slash(url: str) -> None:
    with pytest.raises(ValueError, match="public_base_url"):
        Settings(public_base_url=url)
    assert Settings(public_base_url="https://monitor.example.org/bipn").public_base_url


@pytest.mark.parametrize("policy", ["default", "label", "default@1", "label@1"])
def test_monitor_policy_takes_a_pack_with_or_without_its_version(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_POLICY", policy)
    assert Settings().policy == policy


def test_monitor_policy_refuses_an_unknown_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_POLICY", "default@7")
    with pytest.raises(ValidationError, match="default@1"):
        Settings()


@pytest.mark.parametrize(
    "origin",
    ["*", "https://sandbox.cds-hooks.org/", "https://ehr.example/app", "Https://EHR.example",
     "sandbox.cds-hooks.org", "null", "https://*.example.org", "https://ehr.example\n"],
)  # fmt: skip
def test_cds_allowed_origins_are_exact_origins(origin: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin") as raised:
        Settings(cds_allowed_origins=[origin])
    assert "cds_allowed_origins" in str(raised.value)


def test_cds_allowed_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    origins = ["https://sandbox.cds-hooks.org", "http://localhost:8080", "http://[::1]:3000"]
    monkeypatch.setenv("MONITOR_CDS_ALLOWED_ORIGINS", json.dumps(origins))
    assert Settings().cds_allowed_origins == origins
    assert Settings().cds_jwt_max_lifetime_s == 300
    with pytest.raises(ValidationError, match="cds_jwt_max_lifetime_s"):
        Settings(cds_jwt_max_lifetime_s=86400)


# --- staff sign-in at the OpenID Connect provider --------------------------------------------

PROVIDER = {"oidc_issuer": "https://login.hospital.example", "oidc_audience": "bipn-monitor"}
SECRET = "a-session-secret-of-thirty-two-characters"


def test_sign_in_is_off_unless_configured() -> None:
    default = Settings()
    assert (default.oidc_enabled, default.sign_in_enabled) == (False, False)
    api_only = Settings(**PROVIDER)
    assert (api_only.oidc_enabled, api_only.sign_in_enabled) == (True, False)
    pages = Settings(**PROVIDER, oidc_client_id="bipn-web", session_secret=SECRET)
    assert (pages.oidc_enabled, pages.sign_in_enabled) == (True, True)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"oidc_issuer": "https://login.hospital.example"}, "go together: set both"),
        ({"oidc_audience": "bipn-monitor"}, "go together: set both"),
        ({**PROVIDER, "oidc_issuer": "http://login.hospital.example"}, "not an https URL"),
        ({**PROVIDER, "oidc_client_id": "web"}, "needs session_secret"),
        ({"oidc_client_id": "web", "session_secret": SECRET}, "needs oidc_issuer"),
        ({**PROVIDER, "oidc_client_id": "web", "session_secret": "short"}, "at least 32"),
        (
            {**PROVIDER, "oidc_client_id": "web", "session_secret": SECRET, "oidc_scope": "api"},
            "must include openid",
        ),
        ({**PROVIDER, "oidc_role_map": {"root": "superuser"}}, "cannot be signed in to"),
    ],
)
def test_half_configured_sign_in_is_refused(given: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**given)  # type: ignore[arg-type]


def test_a_provider_on_this_machine_may_use_http() -> None:
    local = Settings(oidc_issuer="http://127.0.0.1:8444", oidc_audience="bipn-monitor")
    assert local.oidc_issuer == "http://127.0.0.1:8444"
