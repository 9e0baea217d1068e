"""One outcome for one job (issue 13 item 3): a result too large for the
reply that carries it ends the job once, with the same status in the log,
in ``job_finished``, in the client's reply and in the datastore (nothing
saved); and a result that fits passes from the child to the client as the
JSON the child encoded."""

from __future__ import annotations

import logging

import msgspec

from bridgehost import hookimpl
from bridgehost.jobs import Job, Outcome, Status
from bridgehost.testing import build_host

RESULT_BYTES = 20 << 20  # over the zmq transport's default frame limit (16 MiB)

CONFIG = """
[[transports]]
kind = "zmq"
endpoint = "{endpoint}"

[[triggers]]
kind = "zmq"

[[tasks]]
name = "big"
kind = "analysis"
datastore = "{datastore}"
save_results = true
max_result_bytes = 67108864
preload = []
"""

BIG = f"def calculate_results(ctx):\n    return {{'blob': 'x' * {RESULT_BYTES}}}\n"
SMALL = "def calculate_results(ctx):\n    return {'max_force': 0.1, 'n': 3}\n"


class Finished:
    """Records every ``job_finished`` call."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    @hookimpl
    def job_finished(self, job: Job, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def test_a_result_over_the_reply_limit_has_one_status_everywhere_and_is_not_saved(
    bridgehost_host, bridgehost_client, bridgehost_datastore, bridgehost_run, caplog
) -> None:
    (bridgehost_datastore.scripts_dir / "big.py").write_text(BIG)
    run = bridgehost_run(results={"before": 1})
    finished = Finished()
    host = bridgehost_host(CONFIG, plugins=[finished])
    caplog.set_level(logging.INFO, logger="bridgehost.job")

    response = bridgehost_client(host).call("big", run.request("big.py"), timeout_s=60)

    assert not response.success and response.data["status"] == "CRASH"
    assert "reply" in response.error_message and "max_frame_bytes" in response.error_message, response.error_message
    [outcome] = finished.outcomes
    assert (outcome.status, outcome.error) == (Status.CRASH, response.error_message)
    logged = [r.getMessage() for r in caplog.records if r.name == "bridgehost.job" and r.levelno >= logging.INFO]
    assert any(m.startswith("CRASH") for m in logged) and not any(m.startswith("SUCCESS") for m in logged)
    assert run.results() == {"before": 1}


def test_a_result_passes_from_the_child_to_the_reply_as_its_json(
    bridgehost_host, bridgehost_client, bridgehost_datastore, bridgehost_run
) -> None:
    (bridgehost_datastore.scripts_dir / "small.py").write_text(SMALL)
    run = bridgehost_run()
    finished = Finished()
    host = bridgehost_host(CONFIG.replace("save_results = true", "save_results = false"), plugins=[finished])

    response = bridgehost_client(host).call("big", run.request("small.py"), timeout_s=60)

    assert response.success and response.data == {"max_force": 0.1, "n": 3}
    [outcome] = finished.outcomes
    # Not decoded on the way: the child's bytes; a hook that wants values decodes them.
    assert isinstance(outcome.data, msgspec.Raw)
    assert outcome.decoded_data() == {"max_force": 0.1, "n": 3}


def test_check_warns_of_a_result_limit_over_the_frame_limit_of_the_trigger_serving_it(tmp_path) -> None:
    host, _ = build_host(CONFIG, tmp_path)
    assert [w for w in host.warnings() if "max_result_bytes" in w] == [
        (
            "task 'big': max_result_bytes (67108864) is over the 16777216 bytes a reply of triggers[0] (zmq) can "
            "carry (max_frame_bytes of zmq transport 'zmq'): a larger result ends CRASH; lower max_result_bytes "
            "to at most 16777216, or raise max_frame_bytes of zmq transport 'zmq'"
        )
    ]
    default, _ = build_host(CONFIG.replace("max_result_bytes = 67108864\n", ""), tmp_path)
    assert not [w for w in default.warnings() if "max_result_bytes" in w]  # the defaults agree
