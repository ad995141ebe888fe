"""Idempotent `ensure_*` steps, one module per AWS service.

Each step reads the resource, compares it with the desired state, changes only what differs and
returns what it observed. Every mutating call goes through `EnsureContext.change`, which records the
action and, in dry-run mode, skips the call: a plan is the list of actions a real run would take.
"""

from ddbbridge.ensure.context import Action, EnsureContext

__all__ = ["Action", "EnsureContext"]
