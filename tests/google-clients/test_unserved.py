"""What the local cloud does not serve, Google's clients hear as a refusal, not as a missing
resource: 501 (gRPC's UNIMPLEMENTED) naming the method, never a 404 a client could take for
"not found" and act on.
"""

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.cloud import compute_v1, kms, storage
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from conftest import unique


def test_storage_methods_outside_the_subset(endpoint, project, admin_credentials):
    client = storage.Client(project=project, credentials=admin_credentials, client_options=ClientOptions(api_endpoint=endpoint))
    bucket = client.create_bucket(unique("gc-unserved"))
    blob = bucket.blob("a.txt")
    blob.upload_from_string(b"a")
    blob.content_language = "en"
    with pytest.raises(exceptions.MethodNotImplemented, match="not served by the local cloud's Storage API"):
        blob.patch()  # objects.patch
    with pytest.raises(exceptions.MethodNotImplemented):
        bucket.copy_blob(blob, bucket, "b.txt")  # objects.copy


def test_kms_methods_outside_the_subset(endpoint, project, admin_credentials):
    client = kms.KeyManagementServiceClient(
        credentials=admin_credentials, transport="rest", client_options=ClientOptions(api_endpoint=f"{endpoint}/cloudkms")
    )
    ring = client.create_key_ring(parent=client.common_location_path(project, "global"), key_ring_id=unique("ring"), key_ring={})
    with pytest.raises(exceptions.MethodNotImplemented, match="not served by the local cloud's Cloud KMS API"):
        client.create_import_job(
            parent=ring.name,
            import_job_id="import",
            import_job={"import_method": kms.ImportJob.ImportMethod.RSA_OAEP_3072_SHA1_AES_256, "protection_level": kms.ProtectionLevel.SOFTWARE},
        )


def test_iam_and_resource_manager_methods_outside_the_subset(endpoint, project, admin_credentials):
    def build(api):
        return discovery.build(
            api, "v1", credentials=admin_credentials, static_discovery=True, cache_discovery=False,
            client_options={"api_endpoint": f"{endpoint}/{api}"},
        )

    with pytest.raises(HttpError) as err:
        build("cloudresourcemanager").projects().list().execute()
    assert err.value.resp.status == 501
    pools = build("iam").projects().locations().workloadIdentityPools()
    with pytest.raises(HttpError) as err:
        pools.getIamPolicy(resource=f"projects/{project}/locations/global/workloadIdentityPools/any", body={}).execute()
    assert err.value.resp.status == 501
    assert "not served by the local cloud's IAM API" in err.value.reason


def test_compute_methods_outside_the_subset(endpoint, project, admin_credentials):
    instances = compute_v1.InstancesClient(credentials=admin_credentials, client_options=ClientOptions(api_endpoint=endpoint))
    with pytest.raises(exceptions.MethodNotImplemented, match="not served by the local cloud's Compute API"):
        instances.start_unary(project=project, zone="us-central1-a", instance="any")
