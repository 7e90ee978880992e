"""Google's own client libraries against dcr's local cloud.

The Rust test `tests/tests/google_clients.rs` starts a local cloud, mints a simulated attestation
token and runs this suite with the venv `tests/install-tools.sh` installs (pinned versions in
`requirements.txt`). Everything here talks to the local cloud only through Google's published
libraries: google-cloud-storage, google-cloud-kms (REST transport), google-cloud-compute,
google-api-python-client and google-auth.

Environment (set by the Rust test):
  DCR_LOCAL_CLOUD            the local cloud's endpoint, http://127.0.0.1:PORT
  DCR_ADMIN_TOKEN            a token for the project's owner (the banner's admin_token)
  DCR_READER, DCR_READER_TOKEN  another principal, with no roles, and its token
  DCR_PROJECT                the project the local cloud serves (dcr-local)
  DCR_ATTESTATION_TOKEN_FILE a file holding a simulated Confidential Space attestation token
  DCR_IMAGE_DIGEST           the image digest that token attests
  DCR_ATTESTATION_ISSUER     the token's issuer (the local cloud's simulated issuer)
"""

import os
import uuid

import google.oauth2.credentials
import pytest


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise pytest.UsageError(
            f"{name} is not set: run this suite through `cargo test -p dcr-e2e --test google_clients`"
        )
    return value


def unique(prefix):
    """A fresh resource id: tests share one local cloud and never clean up after each other."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def endpoint():
    return _env("DCR_LOCAL_CLOUD").rstrip("/")


@pytest.fixture(scope="session")
def project():
    return _env("DCR_PROJECT")


@pytest.fixture(scope="session")
def admin_credentials():
    # The local cloud's tokens are OAuth 2.0 bearer tokens: google-auth's plain token credentials
    # carry them as any access token.
    return google.oauth2.credentials.Credentials(_env("DCR_ADMIN_TOKEN"))


@pytest.fixture(scope="session")
def reader():
    return _env("DCR_READER")


@pytest.fixture(scope="session")
def reader_credentials():
    return google.oauth2.credentials.Credentials(_env("DCR_READER_TOKEN"))


@pytest.fixture(scope="session")
def attestation_token_file():
    return _env("DCR_ATTESTATION_TOKEN_FILE")


@pytest.fixture(scope="session")
def image_digest():
    return _env("DCR_IMAGE_DIGEST")


@pytest.fixture(scope="session")
def attestation_issuer():
    return _env("DCR_ATTESTATION_ISSUER")
