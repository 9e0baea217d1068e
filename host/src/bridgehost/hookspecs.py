"""The hooks a bridgehost plugin may implement.

A plugin is a module with functions marked ``@hookimpl``, exposed through an
entry point in the group ``bridgehost``::

    [project.entry-points.bridgehost]
    myplugin = "myplugin.plugin"

Four ``register_*`` hooks contribute named implementations of the four kinds
of component; ``add_hookspecs`` lets a plugin add hooks of its own (for
other plugins to publish named values its task kind runs); the lifecycle
hooks let a plugin react to every job whatever its source. Lifecycle hooks run on the host's event loop: they must return
quickly and never block. An exception in one is logged and does not stop the
job or the other plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from bridgehost.commands import PluginCommands
    from bridgehost.host import Host
    from bridgehost.jobs import Job, JobEvent, Outcome
    from bridgehost.metrics import Metrics
    from bridgehost.registry import PluginRegistry

hookspec = pluggy.HookspecMarker("bridgehost")
hookimpl = pluggy.HookimplMarker("bridgehost")


@hookspec
def register_transports(registry: PluginRegistry) -> None:
    """Register transport kinds: what carries messages between the host and
    the outside (a message socket, a PV server): each plugin's docs name its own.

    Call ``registry.add(name, factory, config=ConfigStruct)``; ``factory(config,
    host)`` returns an object with optional ``async start()`` and ``async stop()``.
    ``ConfigStruct`` subclasses ``bridgehost.config.TransportConfig``; declare
    it ``class MyConfig(TransportConfig, kw_only=True)`` (msgspec does not
    inherit ``kw_only``, and it lets a required field follow the base's
    optional ones). Unknown keys are refused.
    """


@hookspec
def register_triggers(registry: PluginRegistry) -> None:
    """Register trigger kinds: sources of job requests (a message on a
    socket, a PV written, a timer).

    Same contract as ``register_transports``; ``ConfigStruct`` subclasses
    ``bridgehost.config.TriggerConfig``. A trigger hands work to the host with
    ``host.submit(Request)``, which returns a future of the ``Outcome``.
    """


@hookspec
def register_tasks(registry: PluginRegistry) -> None:
    """Register task kinds: what a job runs (``analysis``, ``callable``, ...).

    ``ConfigStruct`` subclasses ``bridgehost.config.TaskConfig`` (which gives
    every task ``name``, ``timeout_s``, ``concurrency`` and ``queue_size``).
    ``factory(config, host)`` returns an object with ``async run(job) -> result``;
    the result becomes ``Outcome.data``. To end with another status, raise a
    ``bridgehost.errors.JobError`` subclass. ``run`` must stop promptly and
    release what it started when cancelled (timeout or shutdown).
    """


@hookspec
def register_watchdogs(registry: PluginRegistry) -> None:
    """Register watchdog kinds: proofs of liveness to the outside (a heartbeat
    PV, systemd's sd_notify). ``ConfigStruct`` subclasses
    ``bridgehost.config.WatchdogConfig``. ``host.liveness`` tells, from any
    thread, how long the event loop has not advanced.
    """


@hookspec
def register_demos(registry: PluginRegistry) -> None:
    """Register runnable demos for ``bridgehost demo NAME``.

    Call ``registry.add(name, function, summary="...")``; ``function()`` takes
    no arguments, runs the demo end to end and returns a process exit code.
    """


@hookspec
def register_commands(commands: PluginCommands) -> None:
    """Add ``bridgehost`` sub-commands (argparse, as tox 4's ``tox_add_option``,
    https://tox.wiki/en/latest/plugins.html).

    Call ``commands.add(name, run, configure=fn, help="...")``: ``configure(parser)``
    adds the command's arguments to its ``argparse.ArgumentParser``;
    ``run(args) -> int`` handles it and returns the exit code. ``run`` may
    raise ``bridgehost.errors.ConfigError`` (printed, exit 2) or another
    ``BridgehostError`` (printed, exit 1). ``bridgehost --help`` builds every
    command's parser, so import heavy dependencies inside ``run`` only.
    Raises ``ValueError`` for a name the core or another plugin has, which
    records this plugin as failed (``bridgehost plugins``).
    """


@hookspec
def add_hookspecs(pm: pluggy.PluginManager) -> None:
    """Add the hookspecs of hooks this plugin defines for other plugins:
    ``pm.add_hookspecs(module)``, as pytest's ``pytest_addhooks``
    (https://docs.pytest.org/en/stable/how-to/writing_hook_functions.html).

    Called once per plugin at load time, before any plugin's hookimpls are
    registered and checked, so a plugin implementing the new hook loads
    whatever its order. A hook for named values that plugins publish for
    this plugin's task kind is declared with
    ``bridgehost.registry.CatalogSpec`` and filled at load time. A plugin
    that implements a hook of a plugin that may be absent marks it
    ``@hookimpl(optionalhook=True)``; any other hookimpl that matches no
    hookspec makes its plugin a failure (``bridgehost plugins``).
    """


@hookspec
def register_metrics(metrics: Metrics, host: Host) -> None:
    """Declare what an observer may read of this plugin's state on ``host``
    (``bridgehost.metrics``, docs/observability.md).

    Called once per host by the observer that wants them (a transport that
    serves metrics, when it starts), so a plugin never imports it. Call ``metrics.gauge(name, help, labels=(...),
    collect=fn)`` or ``metrics.counter(...)``; ``fn()`` returns
    ``(label_values, value)`` pairs and runs on the host's loop at each
    reading. Raises nothing to the host: an error is logged.
    """


@hookspec
def host_started(host: Host) -> None:
    """Every component has started and the host accepts requests."""


@hookspec
def job_started(job: Job) -> None:
    """A job leaves its queue and begins running."""


@hookspec
def job_event(job: Job, event: JobEvent) -> None:
    """A running job reports progress, a location, a duration estimate or a
    diagnostic. Events of one job arrive in order, ``event.seq`` counting from 1."""


@hookspec
def job_finished(job: Job, outcome: Outcome) -> None:
    """A job has ended, whatever its status, including jobs refused as BUSY
    or REJECTED and jobs cancelled before they started. Called once per job,
    before the outcome goes back to the trigger."""


@hookspec
def host_stopping(host: Host) -> None:
    """The host stops accepting requests and begins its shutdown."""
