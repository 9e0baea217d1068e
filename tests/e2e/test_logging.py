"""A deployment's logs: JSON lines in a rotating file, each line of a job
carrying its job id and the ZeroMQ transaction id of the request."""

import json

from bridgehost_analysis.traction import SCRIPT
from bridgehost_ipc.client import Client

from .conftest import ANALYSIS_DEPLOYMENT


def test_json_log_file_names_the_transaction_id_of_each_job(start_host, traction_run, tmp_path):
    config = ANALYSIS_DEPLOYMENT.format(grace=5, timeout=20).replace(
        'shutdown_grace_s = 5', 'shutdown_grace_s = 5\nlog_format = "json"\nlog_file = "host.jsonl"\nlog_level = "DEBUG"'
    )
    host = start_host(config)
    with Client(host.endpoint) as client:
        tid = client.send("python.run_analysis", traction_run.request(SCRIPT))
        response = None
        while response is None:
            client.poll(30)
            response = client.take_response(tid)
    assert response.success, response.error_message
    lines = [json.loads(line) for line in (tmp_path / "host.jsonl").read_text().splitlines()]
    job_lines = [line for line in lines if line.get("ref") == str(tid)]
    assert {line["logger"] for line in job_lines} >= {"bridgehost.job"}
    assert any(line["message"].startswith("running analyze_traction.py:calculate_results") for line in job_lines)
    assert any(line["message"].startswith("SUCCESS in ") for line in job_lines)
    assert len({line["job_id"] for line in job_lines}) == 1 and all(line["host"] == "rig" for line in lines)
