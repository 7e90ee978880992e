"""google-api-python-client (discovery-based, static discovery documents) against the local
cloud's IAM v1 workload identity pools and providers, their long-running operations, and Resource
Manager v1 `projects.get`.

Operations are polled as gcloud and terraform-provider-google poll them: `operations.get` until
`done`, then the resource is read back — the operation's `response` is not relied on, since Google
leaves it empty for these methods.
"""

import time

import pytest
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from conftest import unique

ISSUER = "https://confidentialcomputing.googleapis.com"


def build(api, endpoint, credentials):
    # rootUrl becomes the local cloud's mount of that API; servicePath and paths are Google's.
    return discovery.build(
        api,
        "v1",
        credentials=credentials,
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": f"{endpoint}/{api}"},
    )


@pytest.fixture(scope="module")
def iam(endpoint, admin_credentials):
    return build("iam", endpoint, admin_credentials)


@pytest.fixture(scope="module")
def project_number(endpoint, admin_credentials, project):
    crm = build("cloudresourcemanager", endpoint, admin_credentials)
    return crm.projects().get(projectId=project).execute()["projectNumber"]


@pytest.fixture(scope="module")
def pools(iam):
    return iam.projects().locations().workloadIdentityPools()


def wait(operations, op, polls=50):
    """Polls a long-running operation to `done`; fails with its error if it failed."""
    for _ in range(polls):
        if op.get("done"):
            assert "error" not in op, op
            return op
        time.sleep(0.1)
        op = operations.get(name=op["name"]).execute()
    pytest.fail(f"operation {op['name']} not done after {polls} polls")


def status(err):
    return err.value.resp.status


def test_projects_get_names_the_number(endpoint, admin_credentials, reader_credentials, project, project_number):
    crm = build("cloudresourcemanager", endpoint, admin_credentials)
    got = crm.projects().get(projectId=project).execute()
    assert got["projectId"] == project and got["lifecycleState"] == "ACTIVE"
    assert got["projectNumber"] == project_number and project_number.isdigit()
    as_reader = build("cloudresourcemanager", endpoint, reader_credentials)
    with pytest.raises(HttpError) as err:
        as_reader.projects().get(projectId=project).execute()
    assert status(err) == 403


def test_pools_create_get_list_patch_delete_undelete(pools, project, project_number):
    parent = f"projects/{project}/locations/global"
    pool_id = unique("pool")[:32]
    name = f"projects/{project_number}/locations/global/workloadIdentityPools/{pool_id}"
    ops = pools.operations()

    op = pools.create(parent=parent, workloadIdentityPoolId=pool_id, body={"displayName": "Study"}).execute()
    assert op["name"].startswith(f"{name}/operations/")
    wait(ops, op)
    pool = pools.get(name=name).execute()
    assert (pool["name"], pool["displayName"], pool["state"]) == (name, "Study", "ACTIVE")
    assert name in [p["name"] for p in pools.list(parent=parent).execute()["workloadIdentityPools"]]

    wait(ops, pools.patch(name=name, updateMask="description,displayName", body={"description": "d"}).execute())
    pool = pools.get(name=name).execute()
    assert pool.get("description") == "d" and "displayName" not in pool

    with pytest.raises(HttpError) as err:
        pools.create(parent=parent, workloadIdentityPoolId=pool_id, body={}).execute()
    assert status(err) == 409
    with pytest.raises(HttpError) as err:
        pools.create(parent=parent, workloadIdentityPoolId="gcp-reserved", body={}).execute()
    assert status(err) == 400
    with pytest.raises(HttpError) as err:
        pools.patch(name=name, updateMask="name", body={}).execute()
    assert status(err) == 400

    wait(ops, pools.delete(name=name).execute())
    assert pools.get(name=name).execute()["state"] == "DELETED"
    listed = pools.list(parent=parent).execute().get("workloadIdentityPools", [])
    assert name not in [p["name"] for p in listed]
    listed = pools.list(parent=parent, showDeleted=True).execute()["workloadIdentityPools"]
    assert name in [p["name"] for p in listed]
    # A deleted pool's id stays taken for 30 days.
    with pytest.raises(HttpError) as err:
        pools.create(parent=parent, workloadIdentityPoolId=pool_id, body={}).execute()
    assert status(err) == 409

    wait(ops, pools.undelete(name=name, body={}).execute())
    assert pools.get(name=name).execute()["state"] == "ACTIVE"


def test_providers_create_get_list_patch_delete_undelete(pools, project_number):
    parent = f"projects/{project_number}/locations/global"
    pool_id = unique("pool")[:32]
    pool = f"{parent}/workloadIdentityPools/{pool_id}"
    wait(pools.operations(), pools.create(parent=parent, workloadIdentityPoolId=pool_id, body={}).execute())
    providers = pools.providers()
    ops = providers.operations()
    name = f"{pool}/providers/attestation-verifier"
    body = {
        "displayName": "Confidential Space",
        "oidc": {"issuerUri": ISSUER, "allowedAudiences": ["https://sts.googleapis.com"]},
        "attributeMapping": {
            "google.subject": "assertion.sub",
            "attribute.image_digest": "assertion.submods.container.image_digest",
        },
        "attributeCondition": "assertion.swname == 'CONFIDENTIAL_SPACE'",
    }

    op = providers.create(parent=pool, workloadIdentityPoolProviderId="attestation-verifier", body=body).execute()
    assert op["name"].startswith(f"{name}/operations/")
    wait(ops, op)
    provider = providers.get(name=name).execute()
    assert provider["oidc"]["issuerUri"] == ISSUER
    assert provider["attributeCondition"] == body["attributeCondition"]
    assert provider["state"] == "ACTIVE"
    assert [p["name"] for p in providers.list(parent=pool).execute()["workloadIdentityPoolProviders"]] == [name]

    condition = "assertion.swname == 'CONFIDENTIAL_SPACE' && 'STABLE' in assertion.submods.confidential_space.support_attributes"
    wait(ops, providers.patch(name=name, updateMask="attributeCondition", body={"attributeCondition": condition}).execute())
    assert providers.get(name=name).execute()["attributeCondition"] == condition

    # Google checks CEL and OIDC settings when a provider is created or changed.
    for bad in [
        {"attributeCondition": "assertion.swname =="},
        {"oidc": {"issuerUri": "http://not-https.example"}},
    ]:
        with pytest.raises(HttpError) as err:
            providers.create(
                parent=pool, workloadIdentityPoolProviderId=unique("bad")[:32], body={**body, **bad}
            ).execute()
        assert status(err) == 400, bad

    wait(ops, providers.delete(name=name).execute())
    assert providers.get(name=name).execute()["state"] == "DELETED"
    listed = providers.list(parent=pool, showDeleted=True).execute()["workloadIdentityPoolProviders"]
    assert [p["state"] for p in listed] == ["DELETED"]
    wait(ops, providers.undelete(name=name, body={}).execute())
    assert providers.get(name=name).execute()["state"] == "ACTIVE"

    with pytest.raises(HttpError) as err:
        providers.operations().get(name=f"{name}/operations/nope").execute()
    assert status(err) == 404
