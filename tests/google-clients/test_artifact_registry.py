"""google-cloud-artifact-registry over its REST transport against the local cloud's Artifact Registry v1:
the repository calls `dcr_workload` makes on Google Cloud (create a Docker repository when it is missing,
read it, and let the VM's service account read it).

Creating a repository is a long-running operation: the client polls `operations.get` until it is done and
reads the repository from its `response`, which Artifact Registry (unlike IAM's pools) fills in.
"""

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.cloud import artifactregistry_v1
from google.iam.v1 import iam_policy_pb2, policy_pb2

from conftest import unique

LOCATION = "europe-west4"


@pytest.fixture(scope="module")
def client(endpoint, admin_credentials):
    # Google serves Artifact Registry at https://artifactregistry.googleapis.com/v1/...; the local cloud
    # mounts it at /artifactregistry.
    return artifactregistry_v1.ArtifactRegistryClient(
        credentials=admin_credentials,
        transport="rest",
        client_options=ClientOptions(api_endpoint=f"{endpoint}/artifactregistry"),
    )


def test_a_docker_repository_is_created_read_and_shared_with_a_reader(client, project, reader):
    parent = f"projects/{project}/locations/{LOCATION}"
    repo_id = unique("images")
    op = client.create_repository(
        parent=parent,
        repository_id=repo_id,
        repository=artifactregistry_v1.Repository(
            format_=artifactregistry_v1.Repository.Format.DOCKER, description="dcr workload images"
        ),
    )
    created = op.result(timeout=30)
    name = f"{parent}/repositories/{repo_id}"
    assert created.name == name
    assert created.format_ == artifactregistry_v1.Repository.Format.DOCKER
    assert created.registry_uri == f"{LOCATION}-docker.pkg.dev/{project}/{repo_id}"

    got = client.get_repository(name=name)
    assert got.description == "dcr workload images"
    with pytest.raises(exceptions.Conflict):
        client.create_repository(parent=parent, repository_id=repo_id, repository={"format_": 1}).result(timeout=30)
    with pytest.raises(exceptions.NotFound):
        client.get_repository(name=f"{parent}/repositories/{unique('missing')}")

    policy = client.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=name))
    policy.bindings.append(policy_pb2.Binding(role="roles/artifactregistry.reader", members=[reader]))
    stored = client.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy))
    assert [list(b.members) for b in stored.bindings if b.role == "roles/artifactregistry.reader"] == [[reader]]
    again = client.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=name))
    assert again.etag == stored.etag


def test_repository_ids_google_refuses_are_refused(client, project):
    parent = f"projects/{project}/locations/{LOCATION}"
    with pytest.raises(exceptions.BadRequest):
        client.create_repository(
            parent=parent, repository_id="Not_Valid", repository={"format_": artifactregistry_v1.Repository.Format.DOCKER}
        )


def test_a_principal_without_roles_cannot_read_a_repository(endpoint, reader_credentials, client, project):
    parent = f"projects/{project}/locations/{LOCATION}"
    repo_id = unique("private")
    client.create_repository(
        parent=parent, repository_id=repo_id, repository={"format_": artifactregistry_v1.Repository.Format.DOCKER}
    ).result(timeout=30)
    outsider = artifactregistry_v1.ArtifactRegistryClient(
        credentials=reader_credentials,
        transport="rest",
        client_options=ClientOptions(api_endpoint=f"{endpoint}/artifactregistry"),
    )
    with pytest.raises(exceptions.Forbidden):
        outsider.get_repository(name=f"{parent}/repositories/{repo_id}")
