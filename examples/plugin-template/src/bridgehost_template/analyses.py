"""Analysis functions: ``function(ctx) -> dict``, pure calculators.

Each runs in a fresh process with the analysis task's limits (see
bridgehost's docs/analysis.md for ``ctx``). Keep them free of side effects:
read ``ctx``, compute, return JSON data (floats, not numpy scalars or arrays).
"""

from __future__ import annotations

from typing import Any

DEFAULT_MARGIN = 1.2
"""Without a ``max_force_limit``, the limit is this times the configured ``control_load``."""


def force_check(ctx: dict[str, Any]) -> dict[str, Any]:
    """The peak of the run's force trace, and whether it stayed within a limit.

    Reads ``ctx["raw_data"]["trace"]``: ``force`` (N) and ``t`` (s), sampled
    together; ``ctx["custom_params"]["max_force_limit"]`` (N), else
    ``DEFAULT_MARGIN`` x ``ctx["configuration"]["control_load"]`` (N).

    Returns ``{"peak_force": N, "peak_time_s": s, "limit": N, "passed": bool}``;
    an empty trace gives ``peak_force`` 0.0, ``peak_time_s`` None and passes.
    Raises ``ValueError`` if there is neither a limit nor a control load, or
    if ``t`` and ``force`` differ in length.
    """
    trace = ctx.get("raw_data", {}).get("trace", {})
    force, t = list(trace.get("force", [])), list(trace.get("t", []))
    limit = ctx.get("custom_params", {}).get("max_force_limit")
    if limit is None:
        load = ctx.get("configuration", {}).get("control_load")
        if load is None:
            raise ValueError("no limit: pass custom_params.max_force_limit or save configuration.control_load")
        limit = DEFAULT_MARGIN * float(load)
    if t and len(t) != len(force):
        raise ValueError(f"trace channels differ in length: t has {len(t)} samples, force {len(force)}")
    if not force:
        return {"peak_force": 0.0, "peak_time_s": None, "limit": float(limit), "passed": True}
    peak_index = max(range(len(force)), key=force.__getitem__)
    peak = float(force[peak_index])
    return {
        "peak_force": peak,
        "peak_time_s": float(t[peak_index]) if t else None,
        "limit": float(limit),
        "passed": peak <= limit,
    }
