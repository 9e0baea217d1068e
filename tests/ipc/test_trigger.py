"""The zmq trigger: topic -> task, Outcome -> response."""

from __future__ import annotations

import types

import pytest

from bridgehost.errors import InvalidField
from bridgehost_ipc.trigger import ZmqTrigger, ZmqTriggerConfig


def test_failed_outcome_carries_status_code_job_id_and_task_data(rig):
    with rig.client() as client:
        response = client.call("fail", {"run_id": "r1"})
    (request,) = rig.host.submitted
    assert response.success is False
    assert response.error_message == "force limit exceeded"
    assert response.data == {
        "reason": "interlock",
        "status": "TASK_FAIL",  # the task's own "status" key does not hide the job's
        "status_code": 1,
        "job_id": request.id,
    }


def test_unknown_task_is_rejected_by_the_host_naming_the_tasks(rig):
    with rig.client() as client:
        response = client.call("python.run_analysis", {})
    assert not response.success
    assert response.data["status"] == "REJECTED" and response.data["status_code"] == 8
    assert "echo, fail, gated" in response.error_message


@pytest.mark.parametrize("data, shown", [([1, 2], "an array"), ("r1", "a string"), (None, "null"), (3, "a number")])
def test_request_data_must_be_an_object(rig, frame, data, shown):
    response = rig.exchange(rig.raw(), frame(transaction_id=4, data=data))
    assert (response.transaction_id, response.success) == (4, False)
    assert f"must be a JSON object (its parameters), got {shown}" in response.error_message
    assert rig.host.submitted == []


def test_request_without_data_runs_with_empty_params(rig, frame):
    response = rig.exchange(rig.raw(), frame(transaction_id=3, data=...))
    assert (response.success, response.data) == (True, {})


def fake_host(**transports):
    return types.SimpleNamespace(transports=transports, config=types.SimpleNamespace(source="rig.toml"))


def test_missing_transport_names_the_available_ones():
    with pytest.raises(InvalidField) as raised:
        ZmqTrigger(ZmqTriggerConfig(kind="zmq", transport="plc"), fake_host(zmq=object(), pva=object()))
    assert raised.value.field == "transport"
    assert "no transport named 'plc' (transports: pva, zmq)" in raised.value.message
    assert "[[transports]]" in raised.value.hint


def test_transport_of_another_kind_is_refused():
    with pytest.raises(InvalidField, match="not a zmq transport"):
        ZmqTrigger(ZmqTriggerConfig(kind="zmq", transport="pva"), fake_host(pva=object()))


def test_second_trigger_on_one_transport_is_refused(rig):
    with pytest.raises(InvalidField, match="already has a zmq trigger"):
        ZmqTrigger(ZmqTriggerConfig(kind="zmq"), rig.host)
