"""google-api-python-client's Cloud Logging v2 (`entries.list`) against the local cloud's Cloud
Audit Logs: every Cloud KMS Encrypt and Decrypt is on record in the project's Data Access log, in
the shape Google writes (https://cloud.google.com/kms/docs/logging), granted or refused.
"""

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.cloud import kms
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from conftest import unique


def logging_api(endpoint, credentials):
    # Google serves Logging at https://logging.googleapis.com/v2/...; the local cloud mounts it at /logging.
    return discovery.build(
        "logging", "v2", credentials=credentials, static_discovery=True, cache_discovery=False,
        client_options={"api_endpoint": f"{endpoint}/logging"},
    )


def uses_of(api, project, key, method="Decrypt"):
    body = {
        "resourceNames": [f"projects/{project}"],
        "filter": (
            f'logName="projects/{project}/logs/cloudaudit.googleapis.com%2Fdata_access" '
            f'AND protoPayload.methodName="{method}" AND protoPayload.resourceName="{key}"'
        ),
        "pageSize": 1,
    }
    entries = []
    while True:
        page = api.entries().list(body=body).execute()
        entries.extend(page.get("entries", []))
        if not page.get("nextPageToken"):
            return entries
        body["pageToken"] = page["nextPageToken"]


def test_every_use_of_a_key_is_in_the_data_access_log(endpoint, project, admin_credentials, reader, reader_credentials):
    client = kms.KeyManagementServiceClient(
        credentials=admin_credentials, transport="rest", client_options=ClientOptions(api_endpoint=f"{endpoint}/cloudkms")
    )
    ring = client.create_key_ring(parent=client.common_location_path(project, "global"), key_ring_id=unique("ring"), key_ring={})
    key = client.create_crypto_key(
        parent=ring.name, crypto_key_id=unique("key"), crypto_key={"purpose": kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT}
    )
    ciphertext = client.encrypt(request={"name": key.name, "plaintext": b"data key"}).ciphertext
    assert client.decrypt(request={"name": key.name, "ciphertext": ciphertext}).plaintext == b"data key"
    refused = kms.KeyManagementServiceClient(
        credentials=reader_credentials, transport="rest", client_options=ClientOptions(api_endpoint=f"{endpoint}/cloudkms")
    )
    with pytest.raises(exceptions.Forbidden):  # REST maps PERMISSION_DENIED by its HTTP status
        refused.decrypt(request={"name": key.name, "ciphertext": ciphertext})

    api = logging_api(endpoint, admin_credentials)
    # pageSize 1: two pages, followed by their tokens.
    granted, denied = uses_of(api, project, key.name)
    for entry in (granted, denied):
        assert entry["logName"] == f"projects/{project}/logs/cloudaudit.googleapis.com%2Fdata_access"
        assert entry["resource"] == {
            "type": "cloudkms_cryptokey",
            "labels": {"project_id": project, "location": "global", "key_ring_id": ring.name.split("/")[-1],
                       "crypto_key_id": key.name.split("/")[-1]},
        }
        audit = entry["protoPayload"]
        assert audit["@type"] == "type.googleapis.com/google.cloud.audit.AuditLog"
        assert (audit["serviceName"], audit["methodName"], audit["resourceName"]) == ("cloudkms.googleapis.com", "Decrypt", key.name)
        assert audit["authorizationInfo"][0]["permission"] == "cloudkms.cryptoKeyVersions.useToDecrypt"
    assert granted["protoPayload"]["status"] == {} and granted["severity"] == "INFO"
    assert granted["protoPayload"]["authorizationInfo"][0]["granted"] is True
    assert denied["protoPayload"]["status"]["code"] == 7  # PERMISSION_DENIED
    assert denied["protoPayload"]["authenticationInfo"] == {"principalEmail": reader.split(":", 1)[1]}
    assert denied["protoPayload"]["authorizationInfo"][0]["granted"] is False
    assert granted["timestamp"] <= denied["timestamp"]
    [encrypted] = uses_of(api, project, key.name, "Encrypt")
    assert encrypted["protoPayload"]["authorizationInfo"][0]["permission"] == "cloudkms.cryptoKeyVersions.useToEncrypt"
    assert encrypted["protoPayload"]["request"]["@type"] == "type.googleapis.com/google.cloud.kms.v1.EncryptRequest"
    newest = api.entries().list(body={"resourceNames": [f"projects/{project}"], "orderBy": "timestamp desc", "pageSize": 1}).execute()
    assert newest["entries"][0]["insertId"] == denied["insertId"]

    # Data Access logs are private: a principal without roles/logging.privateLogViewer cannot read them.
    with pytest.raises(HttpError) as err:
        uses_of(logging_api(endpoint, reader_credentials), project, key.name)
    assert err.value.resp.status == 403
    # What the local cloud's filter subset cannot read is refused, not misread.
    with pytest.raises(HttpError) as err:
        api.entries().list(body={"resourceNames": [f"projects/{project}"], "filter": 'severity="ERROR" OR severity="INFO"'}).execute()
    assert err.value.resp.status == 400 and "OR" in err.value.reason
