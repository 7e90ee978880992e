"""google-cloud-kms over its REST transport against the local cloud's Cloud KMS v1.

The REST transport is the one whose wire format a local endpoint can serve: it sends
`$alt=json;enum-encoding=int`, writes enums as numbers (`"purpose": 1`) and reads them back as
numbers. Integrity follows Google's own samples (encrypt_symmetric / decrypt_symmetric): send the
CRC32C of what goes in, insist the answer says it was verified, and check the CRC32C of what comes
back.
"""

import google_crc32c
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.cloud import kms
from google.iam.v1 import policy_pb2

from conftest import unique

LOCATION = "global"


def crc32c(data):
    return int(google_crc32c.value(data))


def kms_client(endpoint, credentials):
    # Google serves KMS at https://cloudkms.googleapis.com/v1/...; the local cloud mounts it at /cloudkms.
    return kms.KeyManagementServiceClient(
        credentials=credentials,
        transport="rest",
        client_options=ClientOptions(api_endpoint=f"{endpoint}/cloudkms"),
    )


@pytest.fixture(scope="module")
def client(endpoint, admin_credentials):
    return kms_client(endpoint, admin_credentials)


@pytest.fixture(scope="module")
def key_ring(client, project):
    parent = client.common_location_path(project, LOCATION)
    return client.create_key_ring(parent=parent, key_ring_id=unique("ring"), key_ring={})


@pytest.fixture
def key(client, key_ring):
    return client.create_crypto_key(
        parent=key_ring.name,
        crypto_key_id=unique("key"),
        crypto_key={
            "purpose": kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
            "version_template": {
                "algorithm": kms.CryptoKeyVersion.CryptoKeyVersionAlgorithm.GOOGLE_SYMMETRIC_ENCRYPTION,
                "protection_level": kms.ProtectionLevel.SOFTWARE,
            },
            "labels": {"dataset": "patients"},
        },
    )


def test_key_rings_create_get_list(client, project):
    parent = client.common_location_path(project, LOCATION)
    ring_id = unique("ring")
    ring = client.create_key_ring(parent=parent, key_ring_id=ring_id, key_ring={})
    assert ring.name == client.key_ring_path(project, LOCATION, ring_id)
    assert ring.create_time.timestamp() > 0
    assert client.get_key_ring(name=ring.name).name == ring.name
    assert ring.name in [r.name for r in client.list_key_rings(parent=parent)]
    # REST errors map by HTTP status: ALREADY_EXISTS is a 409, Conflict.
    with pytest.raises(exceptions.Conflict, match="already exists"):
        client.create_key_ring(parent=parent, key_ring_id=ring_id, key_ring={})
    with pytest.raises(exceptions.NotFound):
        client.get_key_ring(name=client.key_ring_path(project, LOCATION, unique("none")))


def test_crypto_keys_create_get_list_update_with_enums_as_numbers(client, key_ring, key):
    assert key.purpose == kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT
    assert key.primary.state == kms.CryptoKeyVersion.CryptoKeyVersionState.ENABLED
    assert key.primary.algorithm == kms.CryptoKeyVersion.CryptoKeyVersionAlgorithm.GOOGLE_SYMMETRIC_ENCRYPTION
    assert key.version_template.protection_level == kms.ProtectionLevel.SOFTWARE
    assert key.labels == {"dataset": "patients"}

    fetched = client.get_crypto_key(name=key.name)
    assert fetched.primary.name == f"{key.name}/cryptoKeyVersions/1"
    assert key.name in [k.name for k in client.list_crypto_keys(parent=key_ring.name)]

    updated = client.update_crypto_key(
        crypto_key={"name": key.name, "labels": {"dataset": "patients", "stage": "2"}},
        update_mask={"paths": ["labels"]},
    )
    assert updated.labels == {"dataset": "patients", "stage": "2"}
    assert client.get_crypto_key(name=key.name).labels == {"dataset": "patients", "stage": "2"}

    # REST errors map by HTTP status: INVALID_ARGUMENT and FAILED_PRECONDITION are 400s, BadRequest.
    with pytest.raises(exceptions.BadRequest, match="purpose"):
        client.create_crypto_key(
            parent=key_ring.name,
            crypto_key_id=unique("sign"),
            crypto_key={"purpose": kms.CryptoKey.CryptoKeyPurpose.ASYMMETRIC_SIGN},
        )


def test_encrypt_and_decrypt_check_crc32c_both_ways(client, key):
    plaintext, aad = b"a 32-byte data key, say" * 2, b"dcr-envelope-v1:gs://bucket/object"
    encrypted = client.encrypt(
        request={
            "name": key.name,
            "plaintext": plaintext,
            "plaintext_crc32c": crc32c(plaintext),
            "additional_authenticated_data": aad,
            "additional_authenticated_data_crc32c": crc32c(aad),
        }
    )
    assert encrypted.verified_plaintext_crc32c
    assert encrypted.verified_additional_authenticated_data_crc32c
    assert encrypted.ciphertext_crc32c == crc32c(encrypted.ciphertext)
    assert encrypted.name == f"{key.name}/cryptoKeyVersions/1"
    assert encrypted.protection_level == kms.ProtectionLevel.SOFTWARE

    decrypted = client.decrypt(
        request={
            "name": key.name,
            "ciphertext": encrypted.ciphertext,
            "ciphertext_crc32c": crc32c(encrypted.ciphertext),
            "additional_authenticated_data": aad,
        }
    )
    assert decrypted.plaintext == plaintext
    assert decrypted.plaintext_crc32c == crc32c(plaintext)
    assert decrypted.used_primary

    # Corrupted in transit: the checksum does not match what arrived.
    with pytest.raises(exceptions.BadRequest, match="ciphertext_crc32c"):
        client.decrypt(
            request={"name": key.name, "ciphertext": encrypted.ciphertext, "ciphertext_crc32c": 1}
        )
    # Bound to its AAD.
    with pytest.raises(exceptions.BadRequest, match="Decryption failed"):
        client.decrypt(request={"name": key.name, "ciphertext": encrypted.ciphertext})


def test_versions_list_get_destroy_restore(client, key):
    versions = list(client.list_crypto_key_versions(parent=key.name))
    assert [v.name for v in versions] == [f"{key.name}/cryptoKeyVersions/1"]
    version = client.get_crypto_key_version(name=versions[0].name)
    assert version.state == kms.CryptoKeyVersion.CryptoKeyVersionState.ENABLED

    destroyed = client.destroy_crypto_key_version(name=version.name)
    assert destroyed.state == kms.CryptoKeyVersion.CryptoKeyVersionState.DESTROY_SCHEDULED
    assert destroyed.destroy_time.timestamp() > version.create_time.timestamp()
    with pytest.raises(exceptions.BadRequest, match="DESTROY_SCHEDULED"):
        client.encrypt(request={"name": key.name, "plaintext": b"x"})

    restored = client.restore_crypto_key_version(name=version.name)
    assert restored.state == kms.CryptoKeyVersion.CryptoKeyVersionState.DISABLED
    with pytest.raises(exceptions.BadRequest, match="not scheduled for destruction"):
        client.restore_crypto_key_version(name=version.name)


def test_iam_on_key_rings_and_keys_gates_decrypt(client, key_ring, key, endpoint, reader, reader_credentials):
    ciphertext = client.encrypt(request={"name": key.name, "plaintext": b"secret"}).ciphertext
    as_reader = kms_client(endpoint, reader_credentials)
    with pytest.raises(exceptions.Forbidden):
        as_reader.decrypt(request={"name": key.name, "ciphertext": ciphertext})

    policy = client.get_iam_policy(request={"resource": key.name})
    policy.bindings.append(policy_pb2.Binding(role="roles/cloudkms.cryptoKeyDecrypter", members=[reader]))
    updated = client.set_iam_policy(request={"resource": key.name, "policy": policy})
    assert [(b.role, list(b.members)) for b in updated.bindings] == [("roles/cloudkms.cryptoKeyDecrypter", [reader])]
    assert as_reader.decrypt(request={"name": key.name, "ciphertext": ciphertext}).plaintext == b"secret"
    with pytest.raises(exceptions.Forbidden):
        as_reader.encrypt(request={"name": key.name, "plaintext": b"x"})
    # The etag the policy was read with is stale now: ABORTED, a 409.
    with pytest.raises(exceptions.Conflict, match="concurrent policy changes"):
        client.set_iam_policy(request={"resource": key.name, "policy": policy})

    ring_policy = client.get_iam_policy(request={"resource": key_ring.name})
    ring_policy.bindings.append(policy_pb2.Binding(role="roles/cloudkms.viewer", members=[reader]))
    client.set_iam_policy(request={"resource": key_ring.name, "policy": ring_policy})
    assert as_reader.get_key_ring(name=key_ring.name).name == key_ring.name
    assert client.get_iam_policy(request={"resource": key_ring.name}).bindings[0].members == [reader]
