"""The seed's ``MotorControlDaemon.run_task`` as a bridgehost ``callable``
task (seed ``epics-bridge-2.1.0.txt``, "Implement Control Logic").

The PV names come from the trigger's ``pvs`` templates in ``motor.toml``,
resolved against its ``prefixes`` and passed as ``params["pvs"]``. A PV that
does not answer raises ``bridgehost_epics.io.PVIOError``: the job ends
IO_FAILURE and TaskStatus reads "IO Failure"; returning normally is Success.
"""

from bridgehost_epics import io


def move(params: dict) -> dict:
    pvs = params["pvs"]
    velocity = io.get(pvs["velocity_sp"])  # float, mm/s
    new_position = velocity * 0.5
    io.put(pvs["position_rbv"], new_position)
    return {"velocity": velocity, "position": new_position}
