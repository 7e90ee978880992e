"""google-cloud-compute (REST) against the local cloud's Compute v1: instances and zone operations.

The instance is a Confidential Space VM whose workload image does not exist: Compute accepts the
insert, the simulated VM boots, its launcher cannot find the image, says so on the serial console
and the VM stops (TERMINATED) — cheap, and every instance method has a live VM to work on.

Operations are polled with a `ZoneOperationsClient` of our own (`get`, then `wait`): the
`ExtendedOperation` that `InstancesClient.insert()` returns polls through a zone operations client
the transport builds without the caller's client options (compute_v1 `transports/base.py`,
`_zone_operations_client`), so with any endpoint but compute.googleapis.com its `result()` cannot
work. The `*_unary` methods return the operation itself.
"""

import time
import uuid

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.cloud import compute_v1

from conftest import unique

ZONE = "us-central1-a"
MISSING_DIGEST = "sha256:" + "0" * 63 + "1"


@pytest.fixture(scope="module")
def options(endpoint):
    # Google serves Compute at https://compute.googleapis.com/compute/v1/...; so does the local cloud.
    return ClientOptions(api_endpoint=endpoint)


@pytest.fixture(scope="module")
def instances(admin_credentials, options):
    return compute_v1.InstancesClient(credentials=admin_credentials, client_options=options)


@pytest.fixture(scope="module")
def operations(admin_credentials, options):
    return compute_v1.ZoneOperationsClient(credentials=admin_credentials, client_options=options)


def confidential_space_vm(name, image="projects/confidential-space-images/global/images/family/confidential-space-debug"):
    return compute_v1.Instance(
        name=name,
        machine_type=f"zones/{ZONE}/machineTypes/n2d-standard-2",
        confidential_instance_config=compute_v1.ConfidentialInstanceConfig(confidential_instance_type="SEV"),
        shielded_instance_config=compute_v1.ShieldedInstanceConfig(enable_secure_boot=True),
        scheduling=compute_v1.Scheduling(on_host_maintenance="TERMINATE", automatic_restart=False),
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(source_image=image),
            )
        ],
        network_interfaces=[
            compute_v1.NetworkInterface(
                network="global/networks/default",
                access_configs=[compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")],
            )
        ],
        metadata=compute_v1.Metadata(
            items=[
                compute_v1.Items(key="tee-image-reference", value=f"images.dcr.invalid/missing@{MISSING_DIGEST}"),
                compute_v1.Items(key="tee-restart-policy", value="Never"),
            ]
        ),
        labels={"dcr-test": "google-clients"},
    )


def insert_request(project, instance, request_id):
    return compute_v1.InsertInstanceRequest(
        project=project, zone=ZONE, instance_resource=instance, request_id=request_id
    )


def wait_for_status(instances, project, name, want, polls=600):
    seen = []
    for _ in range(polls):
        vm = instances.get(project=project, zone=ZONE, instance=name)
        if not seen or seen[-1] != vm.status:
            seen.append(vm.status)
        if vm.status == want:
            return vm, seen
        time.sleep(0.1)
    pytest.fail(f"{name} never reached {want}: {seen}")


def test_instances_and_zone_operations(instances, operations, project):
    name = unique("vm")
    request_id = str(uuid.uuid4())
    op = instances.insert_unary(request=insert_request(project, confidential_space_vm(name), request_id))
    assert op.operation_type == "insert"
    assert op.target_link.endswith(f"/projects/{project}/zones/{ZONE}/instances/{name}")
    got = operations.get(project=project, zone=ZONE, operation=op.name)
    assert got.status == compute_v1.Operation.Status.DONE and not got.error.errors
    waited = operations.wait(project=project, zone=ZONE, operation=op.name)
    assert waited.status == compute_v1.Operation.Status.DONE

    # The same requestId again: Compute answers with the same operation, and creates nothing.
    again = instances.insert_unary(request=insert_request(project, confidential_space_vm(name), request_id))
    assert again.name == op.name

    vm, seen = wait_for_status(instances, project, name, "TERMINATED")
    assert vm.name == name and vm.labels["dcr-test"] == "google-clients"
    assert vm.confidential_instance_config.confidential_instance_type == "SEV"
    assert {i.key: i.value for i in vm.metadata.items}["tee-restart-policy"] == "Never"
    assert vm.machine_type.endswith(f"zones/{ZONE}/machineTypes/n2d-standard-2")
    assert name in [i.name for i in instances.list(project=project, zone=ZONE)]

    serial = instances.get_serial_port_output(project=project, zone=ZONE, instance=name)
    assert "launch failed" in serial.contents, serial.contents
    assert MISSING_DIGEST in serial.contents
    later = instances.get_serial_port_output(
        request=compute_v1.GetSerialPortOutputInstanceRequest(
            project=project, zone=ZONE, instance=name, start=serial.next_
        )
    )
    assert later.contents == ""

    stop = instances.stop_unary(project=project, zone=ZONE, instance=name)
    assert operations.wait(project=project, zone=ZONE, operation=stop.name).operation_type == "stop"
    assert instances.get(project=project, zone=ZONE, instance=name).status == "TERMINATED"

    delete = instances.delete_unary(project=project, zone=ZONE, instance=name)
    assert operations.wait(project=project, zone=ZONE, operation=delete.name).status == compute_v1.Operation.Status.DONE
    with pytest.raises(exceptions.NotFound):
        instances.get(project=project, zone=ZONE, instance=name)
    assert name not in [i.name for i in instances.list(project=project, zone=ZONE)]


def test_compute_refuses_what_it_cannot_run(instances, operations, project):
    name = unique("vm")
    with pytest.raises(exceptions.BadRequest, match="sourceImage"):
        instances.insert_unary(
            project=project,
            zone=ZONE,
            instance_resource=confidential_space_vm(name, image="projects/debian-cloud/global/images/family/debian-12"),
        )
    with pytest.raises(exceptions.BadRequest, match="resource.name"):
        instances.insert_unary(project=project, zone=ZONE, instance_resource=confidential_space_vm("Not_A_Name"))
    with pytest.raises(exceptions.BadRequest, match="requestId"):
        instances.insert_unary(
            request=insert_request(project, confidential_space_vm(name), "00000000-0000-0000-0000-000000000000")
        )
    with pytest.raises(exceptions.NotFound):
        instances.get(project=project, zone=ZONE, instance=name)
    with pytest.raises(exceptions.NotFound):
        operations.get(project=project, zone=ZONE, operation="operation-none")
    with pytest.raises(exceptions.NotFound):
        instances.delete_unary(project=project, zone=ZONE, instance=name)
