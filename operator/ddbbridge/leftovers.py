"""What a failed destroy left behind in AWS, most sensitive first (IAM keys, then stored secrets). Pure.

Used when a deletion is forced past an unreachable region: the operator lets the pair go and says,
in an Event and in its log, exactly what someone must remove by hand.
"""

from __future__ import annotations

from ddbbridge.reconcile import RunResult

# Destroy's step names start with the kind of resource they remove (see ddbbridge.destroy).
PRIORITY = {
    "user": 0,  # the peer-writer user and its access keys: live credentials of a partition
    "peer": 1,  # SSM parameters holding the peer's key
    "role": 2,
    "function": 3,
    "mappings": 4,
    "kinesis": 5,
    "queue": 6,
    "table": 7,
    "stream": 8,
    "claim": 9,
}
DESCRIPTIONS = {
    "user": "IAM user {rest} with its access keys",
    "peer": "SSM parameters with the peer's access key (key {rest})",
}


def _describe(step: str) -> str:
    kind, _, rest = step.partition(" ")
    template = DESCRIPTIONS.get(kind)
    return template.format(rest=rest) if template else step


def leftovers(result: RunResult) -> list[str]:
    """One line per resource destroy could not remove, IAM keys first; empty when it removed all."""
    failed = sorted(
        result.errors,
        key=lambda error: (PRIORITY.get(error.step.partition(" ")[0], len(PRIORITY)), error.region),
    )
    return [f"[{error.region}] {_describe(error.step)}: {error.message}" for error in failed]
