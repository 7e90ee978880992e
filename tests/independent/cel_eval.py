"""Evaluates workload identity attribute mappings and conditions with cel-python, an implementation
of CEL that shares no code with dcr (tests/tests/cel_agreement.rs compares its answers with the
local cloud's STS).

stdin: {"mapping": {KEY: EXPR}, "conditions": [EXPR], "claims": [CLAIMS]}
stdout: {"mappings": [{KEY: OUTCOME}] (one per claim set),
         "conditions": [[OUTCOME] (one per claim set)] (one per condition)}
where OUTCOME is {"value": V} (a string for mappings, a bool for conditions), {"missing": MSG}
(the expression read a field the claims lack), {"error": MSG} (any other evaluation error) or
{"wrong_type": TYPE} (a value of the wrong type).

How the claims become CEL values is cel-spec's JSON conversion (google.protobuf.Value, as a
JSON token's claims reach Google's STS): null, bool, string, list and map as themselves, and
every number a double. Conditions see `assertion` (the claims) and `google` and `attribute` (what
cel-python's own evaluation of the mapping produced), as Google's attributeCondition does.
"""

import json
import sys

import celpy
from celpy import celtypes


def to_cel(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return celtypes.BoolType(v)
    if isinstance(v, (int, float)):
        return celtypes.DoubleType(v)
    if isinstance(v, str):
        return celtypes.StringType(v)
    if isinstance(v, list):
        return celtypes.ListType([to_cel(x) for x in v])
    if isinstance(v, dict):
        return celtypes.MapType({celtypes.StringType(k): to_cel(x) for k, x in v.items()})
    raise TypeError(f"not JSON: {v!r}")


def is_missing(err):
    # cel-python reports a field a map lacks as CELEvalError(msg, KeyError, ...).
    return len(err.args) > 1 and err.args[1] is KeyError


def run(program, activation, want):
    try:
        result = program.evaluate(activation)
    except celpy.CELEvalError as e:
        result = e
    if isinstance(result, celpy.CELEvalError):
        return {"missing": str(result.args[0])} if is_missing(result) else {"error": str(result.args[0])}
    # cel-python's string concatenation yields a plain str, its comparisons BoolType.
    if want is str and isinstance(result, str):
        return {"value": str(result)}
    if want is bool and isinstance(result, (celtypes.BoolType, bool)):
        return {"value": bool(result)}
    return {"wrong_type": type(result).__name__}


def main():
    request = json.load(sys.stdin)
    env = celpy.Environment()
    mapping = {k: env.program(env.compile(e)) for k, e in request["mapping"].items()}
    conditions = [env.program(env.compile(e)) for e in request["conditions"]]
    mappings, activations = [], []
    for claims in request["claims"]:
        activation = {"assertion": to_cel(claims)}
        mapped = {k: run(p, activation, str) for k, p in mapping.items()}
        mappings.append(mapped)
        google, attribute = {}, {}
        for k, outcome in mapped.items():
            if "value" in outcome:
                space, name = k.split(".", 1)
                (google if space == "google" else attribute)[name] = outcome["value"]
        activation["google"] = to_cel(google)
        activation["attribute"] = to_cel(attribute)
        activations.append(activation)
    results = [[run(p, a, bool) for a in activations] for p in conditions]
    json.dump({"mappings": mappings, "conditions": results}, sys.stdout)


if __name__ == "__main__":
    main()
