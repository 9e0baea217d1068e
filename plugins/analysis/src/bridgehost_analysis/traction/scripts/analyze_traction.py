def calculate_results(ctx):
    # 1. Extract the data we need from the ctx dictionary
    # We use .get() to prevent crashes if the trace data is missing
    raw_data = ctx.get("raw_data", {})
    trace = raw_data.get("trace", {})
    force_array = trace.get("force", [])

    # If there is no force data, return zeros
    if len(force_array) == 0:
        return {
            "max_force": 0.0,
            "avg_force": 0.0
        }

    # 2. Perform the mathematical analysis
    max_force = max(force_array)
    avg_force = sum(force_array) / len(force_array)

    # 3. Return a dictionary of the calculated results.
    # The keys in this dictionary should perfectly match the
    # `results_fields` declared in your project.json!
    return {
        "max_force": max_force,
        "avg_force": avg_force
    }
