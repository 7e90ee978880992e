"""google-cloud-storage against the local cloud's Storage JSON API.

Every test runs twice: with the client pointed at the local cloud by `STORAGE_EMULATOR_HOST` (how
Google documents using an emulator) and by `client_options={"api_endpoint": ...}` (how a client
reaches any other endpoint). The client chooses its own request shapes: multipart uploads up to
8 MiB, resumable ones beyond or for streams of unknown size, media downloads under
`/download/storage/v1/...`, ranged reads, and `mediaLink` once an object's metadata is loaded.
"""

import base64
import hashlib
import io
import os

import google.auth.exceptions
import google.oauth2.credentials
import google_crc32c
import pytest
import requests
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.api_core.client_options import ClientOptions
from google.cloud import storage

from conftest import unique

CHUNK = 256 * 1024  # resumable chunks must be multiples of 256 KiB


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def crc32c_b64(data):
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def make_client(how, endpoint, project, credentials, monkeypatch):
    if how == "STORAGE_EMULATOR_HOST":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        return storage.Client(project=project, credentials=credentials)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    return storage.Client(
        project=project, credentials=credentials, client_options=ClientOptions(api_endpoint=endpoint)
    )


@pytest.fixture(params=["STORAGE_EMULATOR_HOST", "client_options"])
def how(request):
    return request.param


@pytest.fixture
def client(how, endpoint, project, admin_credentials, monkeypatch):
    return make_client(how, endpoint, project, admin_credentials, monkeypatch)


@pytest.fixture
def bucket(client):
    b = client.bucket(unique("gc"))
    b.iam_configuration.uniform_bucket_level_access_enabled = True
    b.iam_configuration.public_access_prevention = "enforced"
    return client.create_bucket(b, location="us-central1")


def test_buckets_insert_get_list_patch_delete(client, endpoint, project):
    name = unique("gc-life")
    created = client.create_bucket(name, location="europe-west1")
    assert created.name == name
    assert created.location == "EUROPE-WEST1"
    assert created.self_link == f"{endpoint}/storage/v1/b/{name}"

    fetched = client.get_bucket(name)
    assert fetched.id == name and fetched.project_number
    assert client.bucket(name).exists()  # GET with fields=name
    assert not client.bucket(unique("gc-none")).exists()
    assert name in [b.name for b in client.list_buckets(prefix="gc-life-")]
    assert [b.name for b in client.list_buckets(prefix=name)] == [name]

    fetched.labels = {"team": "research"}
    fetched.patch()
    assert client.get_bucket(name).labels == {"team": "research"}
    assert fetched.metageneration == 2

    fetched.blob("left-behind").upload_from_string(b"x")
    with pytest.raises(exceptions.Conflict):
        fetched.delete()
    fetched.blob("left-behind").delete()
    fetched.delete()
    with pytest.raises(exceptions.NotFound):
        client.get_bucket(name)


def test_bucket_pages_follow_next_page_token(client):
    prefix = unique("gc-page")
    names = [f"{prefix}-{i}" for i in range(3)]
    for n in names:
        client.create_bucket(n)
    pages = client.list_buckets(prefix=prefix, page_size=2).pages
    assert [[b.name for b in page] for page in pages] == [names[:2], names[2:]]


def test_small_upload_is_multipart_and_reports_md5_and_crc32c(bucket, endpoint):
    data = b"region,patients\nnorth,12\nsouth,30\n"
    blob = bucket.blob("runs/1/outputs/summary.csv")
    blob.metadata = {"run": "1"}
    blob.upload_from_string(data, content_type="text/csv")  # <= 8 MiB: uploadType=multipart

    assert blob.size == len(data)
    assert blob.md5_hash == md5_b64(data)
    assert blob.crc32c == crc32c_b64(data)
    assert blob.content_type == "text/csv"
    assert blob.metadata == {"run": "1"}

    fetched = bucket.get_blob("runs/1/outputs/summary.csv")
    assert (fetched.md5_hash, fetched.crc32c, fetched.generation) == (blob.md5_hash, blob.crc32c, blob.generation)
    encoded = "runs%2F1%2Foutputs%2Fsummary.csv"
    assert fetched.self_link == f"{endpoint}/storage/v1/b/{bucket.name}/o/{encoded}"
    assert fetched.media_link == (
        f"{endpoint}/download/storage/v1/b/{bucket.name}/o/{encoded}?generation={fetched.generation}&alt=media"
    )
    # A loaded blob downloads from its mediaLink, which must lead back here.
    assert fetched.download_as_bytes() == data


def test_upload_of_a_file_uses_media_checksums(bucket, tmp_path):
    path = tmp_path / "data.bin"
    data = os.urandom(70_000)
    path.write_bytes(data)
    blob = bucket.blob("from-file.bin")
    blob.upload_from_filename(str(path), checksum="md5")
    assert blob.md5_hash == md5_b64(data)
    blob.upload_from_filename(str(path), checksum="crc32c")
    assert blob.crc32c == crc32c_b64(data)


def test_large_upload_is_resumable_in_chunks(bucket):
    data = os.urandom(2 * CHUNK + 12_345)
    blob = bucket.blob("big.bin", chunk_size=CHUNK)
    # A stream of unknown size always goes resumable; three chunks, the last one short.
    blob.upload_from_file(io.BytesIO(data), size=None, checksum="crc32c")
    assert blob.size == len(data)
    assert blob.crc32c == crc32c_b64(data)
    assert blob.md5_hash == md5_b64(data)
    assert bucket.blob("big.bin").download_as_bytes() == data

    # Over 8 MiB with a known size: resumable too.
    huge = os.urandom(8 * 1024 * 1024 + 1)
    bucket.blob("huge.bin").upload_from_string(huge)
    assert bucket.get_blob("huge.bin").md5_hash == md5_b64(huge)


def test_resumable_session_uri_points_back_here(bucket, endpoint):
    blob = bucket.blob("session.txt")
    url = blob.create_resumable_upload_session(content_type="text/plain", size=5)
    assert url.startswith(f"{endpoint}/upload/storage/v1/b/{bucket.name}/o?uploadType=resumable&upload_id=")


def test_downloads_through_the_media_path_with_ranges_and_checksums(bucket):
    data = bytes(range(256)) * 4096  # 1 MiB
    bucket.blob("media.bin").upload_from_string(data)
    blob = bucket.blob("media.bin")  # not loaded: the client builds /download/storage/v1/... itself

    assert blob.download_as_bytes(checksum="crc32c") == data
    assert blob.download_as_bytes(checksum="md5") == data
    assert blob.download_as_bytes(start=10, end=19) == data[10:20]
    assert blob.download_as_bytes(start=len(data) - 7) == data[-7:]
    assert blob.download_as_bytes(end=4) == data[:5]
    assert blob.download_as_bytes(raw_download=True) == data

    # A chunk size makes the client read in ranged requests, totalled by Content-Range.
    chunked = bucket.blob("media.bin", chunk_size=CHUNK)
    out = io.BytesIO()
    chunked.download_to_file(out)
    assert out.getvalue() == data

    with bucket.blob("media.bin").open("rb", chunk_size=CHUNK) as f:
        f.seek(300_000)
        assert f.read(1000) == data[300_000:301_000]

    with pytest.raises(exceptions.RequestRangeNotSatisfiable):
        blob.download_as_bytes(start=len(data) + 10)


def test_empty_objects_upload_and_download(bucket):
    bucket.blob("empty").upload_from_string(b"")
    blob = bucket.get_blob("empty")
    assert (blob.size, blob.md5_hash, blob.crc32c) == (0, md5_b64(b""), crc32c_b64(b""))
    assert bucket.blob("empty").download_as_bytes() == b""
    # Chunked: the range request gets 416, which the client reads as an empty object.
    out = io.BytesIO()
    bucket.blob("empty", chunk_size=CHUNK).download_to_file(out)
    assert out.getvalue() == b""


def test_listing_with_prefix_delimiter_and_pages(bucket):
    names = ["a/1.csv", "a/2.csv", "a/b/3.csv", "c.txt", "d.txt"]
    for n in names:
        bucket.blob(n).upload_from_string(n.encode())
    client = bucket.client
    assert [b.name for b in client.list_blobs(bucket)] == names
    assert [b.name for b in client.list_blobs(bucket, prefix="a/")] == names[:3]
    top = client.list_blobs(bucket, delimiter="/")
    assert [b.name for b in top] == ["c.txt", "d.txt"]
    assert top.prefixes == {"a/"}
    pages = client.list_blobs(bucket, page_size=2).pages
    assert [[b.name for b in page] for page in pages] == [names[:2], names[2:4], names[4:]]
    sizes = [b.size for b in client.list_blobs(bucket, prefix="a/", fields="items(name,size),nextPageToken")]
    assert sizes == [len(n) for n in names[:3]]


def test_delete_and_missing_objects(bucket):
    blob = bucket.blob("gone.txt")
    blob.upload_from_string(b"soon gone")
    assert blob.exists()
    blob.delete()
    assert not blob.exists()
    with pytest.raises(exceptions.NotFound):
        blob.delete()
    with pytest.raises(exceptions.NotFound):
        blob.download_as_bytes()
    assert bucket.get_blob("gone.txt") is None


def test_generation_preconditions(bucket):
    blob = bucket.blob("once.txt")
    blob.upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("once.txt").upload_from_string(b"second", if_generation_match=0)
    generation = bucket.get_blob("once.txt").generation
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("once.txt").download_as_bytes(if_generation_not_match=generation)
    bucket.blob("once.txt").upload_from_string(b"second", if_generation_match=generation)
    assert bucket.blob("once.txt").download_as_bytes() == b"second"
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("once.txt").delete(if_generation_match=generation)


def test_uploads_whose_data_does_not_match_their_hash_are_refused(bucket):
    data = b"what the client meant to send"
    blob = bucket.blob("corrupt.txt")
    blob.crc32c = crc32c_b64(b"something else")  # sent in the multipart metadata
    with pytest.raises(exceptions.BadRequest, match="doesn't match calculated CRC32C"):
        blob.upload_from_string(data, checksum=None, retry=None)
    blob = bucket.blob("corrupt.txt")
    blob.md5_hash = md5_b64(b"something else")
    with pytest.raises(exceptions.BadRequest, match="doesn't match calculated MD5"):
        blob.upload_from_string(data, checksum=None, retry=None)
    assert bucket.get_blob("corrupt.txt") is None


def test_bucket_iam_get_set_and_test_permissions(
    how, bucket, endpoint, project, reader, reader_credentials, monkeypatch
):
    bucket.blob("shared.csv").upload_from_string(b"a,b\n1,2\n")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    assert {"roles/storage.legacyBucketOwner", "roles/storage.legacyBucketReader"} <= {
        b["role"] for b in policy.bindings
    }
    as_reader = make_client(how, endpoint, project, reader_credentials, monkeypatch).bucket(bucket.name)
    assert as_reader.test_iam_permissions(["storage.objects.get", "storage.objects.list"]) == []
    with pytest.raises(exceptions.Forbidden):
        as_reader.blob("shared.csv").download_as_bytes()

    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {reader}})
    updated = bucket.set_iam_policy(policy)
    assert any(b["role"] == "roles/storage.objectViewer" and reader in b["members"] for b in updated.bindings)
    assert updated.etag != policy.etag

    assert as_reader.test_iam_permissions(
        ["storage.objects.get", "storage.objects.list", "storage.objects.create"]
    ) == ["storage.objects.get", "storage.objects.list"]
    assert as_reader.blob("shared.csv").download_as_bytes() == b"a,b\n1,2\n"
    assert [b.name for b in as_reader.client.list_blobs(bucket.name)] == ["shared.csv"]
    with pytest.raises(exceptions.Forbidden):
        as_reader.blob("new.csv").upload_from_string(b"no", retry=None)

    # A stale etag: someone else changed the policy in between.
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.set_iam_policy(policy, retry=None)


def test_a_conditional_binding_grants_objects_under_its_prefix_only(
    how, bucket, endpoint, project, reader, reader_credentials, monkeypatch
):
    # How dcr_workload shares one run with a policy's readers: IAM Conditions on a bucket with
    # uniform bucket-level access, written through google-cloud-storage's policy version 3
    # (https://cloud.google.com/storage/docs/access-control/using-iam-permissions#conditions).
    bucket.blob("study/run-1/outputs/summary.csv").upload_from_string(b"rows\n3\n")
    bucket.blob("study/run-2/outputs/summary.csv").upload_from_string(b"rows\n9\n")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.version = 3
    prefix = f"projects/_/buckets/{bucket.name}/objects/study/run-1/"
    policy.bindings.append(
        {
            "role": "roles/storage.objectViewer",
            "members": {reader},
            "condition": {"title": "run 1", "expression": f"resource.name.startsWith('{prefix}')"},
        }
    )
    stored = bucket.set_iam_policy(policy)
    assert stored.version == 3
    assert any(b.get("condition", {}).get("title") == "run 1" for b in stored.bindings)
    with pytest.raises(exceptions.BadRequest):
        bucket.get_iam_policy(requested_policy_version=1)

    as_reader = make_client(how, endpoint, project, reader_credentials, monkeypatch).bucket(bucket.name)
    assert as_reader.blob("study/run-1/outputs/summary.csv").download_as_bytes() == b"rows\n3\n"
    with pytest.raises(exceptions.Forbidden):
        as_reader.blob("study/run-2/outputs/summary.csv").download_as_bytes()
    with pytest.raises(exceptions.Forbidden):
        list(as_reader.client.list_blobs(bucket.name, prefix="study/run-1/"))


def test_unauthenticated_and_unknown_credentials_are_refused(endpoint, project, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    # No credentials at all (a plain session sends no Authorization header): 401.
    anonymous = storage.Client(project=project, credentials=AnonymousCredentials(), _http=requests.Session())
    with pytest.raises(exceptions.Unauthorized):
        list(anonymous.list_buckets())
    # A token the local cloud never issued: 401, on which google-auth tries to refresh, and cannot.
    forged = storage.Client(project=project, credentials=google.oauth2.credentials.Credentials("not-a-token"))
    with pytest.raises(google.auth.exceptions.RefreshError):
        forged.get_bucket("any-bucket")
