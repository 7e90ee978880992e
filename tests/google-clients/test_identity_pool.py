"""google-auth's external-account `identity_pool` credentials, used as a Confidential Space
workload uses them (Google's Confidential Space codelab and samples): a credential configuration
whose `credential_source.file` is the attestation token the launcher writes, exchanged at STS for
a federated access token, which then reads Storage and decrypts with KMS.

Here the token is a simulated attestation token the Rust test minted with the local cloud's
simulated issuer, and `token_url` is the local cloud's STS.
"""

import json

import google.auth.exceptions
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth import identity_pool
from google.cloud import kms, storage
from google.iam.v1 import policy_pb2
from googleapiclient import discovery

from conftest import unique

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def build(api, endpoint, credentials):
    return discovery.build(
        api, "v1", credentials=credentials, static_discovery=True, cache_discovery=False,
        client_options={"api_endpoint": f"{endpoint}/{api}"},
    )


def wait(operations, op):
    while not op.get("done"):
        op = operations.get(name=op["name"]).execute()
    assert "error" not in op, op


def create_provider(pools, pool, provider_id, issuer, condition):
    providers = pools.providers()
    body = {
        "oidc": {"issuerUri": issuer, "allowedAudiences": ["https://sts.googleapis.com"]},
        "attributeMapping": {
            "google.subject": "assertion.sub",
            "attribute.image_digest": "assertion.submods.container.image_digest",
        },
        "attributeCondition": condition,
    }
    op = providers.create(parent=pool, workloadIdentityPoolProviderId=provider_id, body=body).execute()
    wait(providers.operations(), op)
    return f"{pool}/providers/{provider_id}"


def credential_config(tmp_path, endpoint, provider, token_file):
    """The configuration `gcloud iam workload-identity-pools create-cred-config` writes."""
    config = {
        "type": "external_account",
        "audience": f"//iam.googleapis.com/{provider}",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{endpoint}/sts/v1/token",
        "credential_source": {"file": token_file},
    }
    path = tmp_path / f"{provider.rsplit('/', 1)[1]}.json"
    path.write_text(json.dumps(config))
    # Not google.auth.load_credentials_from_file: that one also looks up the project through
    # cloudresourcemanager.googleapis.com (external_account.py `get_project_id`), a host no
    # configuration can redirect.
    return identity_pool.Credentials.from_file(str(path), scopes=[CLOUD_PLATFORM])


def test_attested_workload_reads_storage_and_decrypts_with_kms(
    endpoint, project, admin_credentials, attestation_token_file, image_digest, attestation_issuer, tmp_path
):
    number = build("cloudresourcemanager", endpoint, admin_credentials).projects().get(projectId=project).execute()[
        "projectNumber"
    ]
    pools = build("iam", endpoint, admin_credentials).projects().locations().workloadIdentityPools()
    parent = f"projects/{number}/locations/global"
    pool_id = unique("cs")[:32]
    pool = f"{parent}/workloadIdentityPools/{pool_id}"
    wait(pools.operations(), pools.create(parent=parent, workloadIdentityPoolId=pool_id, body={}).execute())
    allowed = create_provider(
        pools, pool, "allowed", attestation_issuer,
        f"assertion.submods.container.image_digest == '{image_digest}'",
    )
    other = create_provider(
        pools, pool, "other-image", attestation_issuer,
        "assertion.submods.container.image_digest == 'sha256:" + "f" * 64 + "'",
    )
    workload = f"principalSet://iam.googleapis.com/{pool}/attribute.image_digest/{image_digest}"

    # The data owner: an object and a key, each readable by that workload only.
    admin_storage = storage.Client(
        project=project, credentials=admin_credentials, client_options=ClientOptions(api_endpoint=endpoint)
    )
    bucket = admin_storage.create_bucket(unique("cs-data"))
    bucket.blob("patients.csv").upload_from_string(b"id,age\n1,40\n")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {workload}})
    bucket.set_iam_policy(policy)

    kms_options = ClientOptions(api_endpoint=f"{endpoint}/cloudkms")
    admin_kms = kms.KeyManagementServiceClient(credentials=admin_credentials, transport="rest", client_options=kms_options)
    ring = admin_kms.create_key_ring(
        parent=admin_kms.common_location_path(project, "global"), key_ring_id=unique("cs"), key_ring={}
    )
    key = admin_kms.create_crypto_key(
        parent=ring.name, crypto_key_id="data-key", crypto_key={"purpose": kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT}
    )
    wrapped = admin_kms.encrypt(request={"name": key.name, "plaintext": b"data key"}).ciphertext
    key_policy = admin_kms.get_iam_policy(request={"resource": key.name})
    key_policy.bindings.append(policy_pb2.Binding(role="roles/cloudkms.cryptoKeyDecrypter", members=[workload]))
    admin_kms.set_iam_policy(request={"resource": key.name, "policy": key_policy})

    # The workload: google-auth exchanges the attestation token at STS when first asked for a token.
    credentials = credential_config(tmp_path, endpoint, allowed, attestation_token_file)
    as_workload = storage.Client(project=project, credentials=credentials, client_options=ClientOptions(api_endpoint=endpoint))
    assert as_workload.bucket(bucket.name).blob("patients.csv").download_as_bytes() == b"id,age\n1,40\n"
    assert credentials.token and credentials.expiry
    workload_kms = kms.KeyManagementServiceClient(credentials=credentials, transport="rest", client_options=kms_options)
    assert workload_kms.decrypt(request={"name": key.name, "ciphertext": wrapped}).plaintext == b"data key"

    # What the roles do not grant stays closed.
    with pytest.raises(exceptions.Forbidden):
        as_workload.bucket(bucket.name).blob("out.csv").upload_from_string(b"x", retry=None)
    with pytest.raises(exceptions.Forbidden):
        workload_kms.encrypt(request={"name": key.name, "plaintext": b"x"})

    # The same token at a provider that admits another image: STS refuses, and no token is issued.
    refused = credential_config(tmp_path, endpoint, other, attestation_token_file)
    with pytest.raises(google.auth.exceptions.OAuthError, match="rejected by the attribute condition"):
        storage.Client(
            project=project, credentials=refused, client_options=ClientOptions(api_endpoint=endpoint)
        ).bucket(bucket.name).blob("patients.csv").download_as_bytes()
    assert refused.token is None
