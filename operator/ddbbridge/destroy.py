"""Remove everything reconcile created for a pair, in both regions; never the user tables or items.

Resources are found by their contract names, so a half-created pair (a crash mid-reconcile) is
cleaned up too. Each step tolerates an already-missing resource and an error in one step does not
stop the others: the result lists what was removed and what failed. The user table's stream is
disabled only when this pair's tag says we enabled it.
"""

from __future__ import annotations

from collections.abc import Callable

from ddbbridge.ensure.context import EnsureContext
from ddbbridge.ensure.dynamodb_streams import disable_table_stream
from ddbbridge.ensure.dynamodb_tables import delete_table
from ddbbridge.ensure.event_source_mappings import delete_mappings
from ddbbridge.ensure.federation import delete_federated_role
from ddbbridge.ensure.iam import delete_role, delete_user
from ddbbridge.ensure.kinesis import delete_stream
from ddbbridge.ensure.lambda_functions import delete_function
from ddbbridge.ensure.sqs import delete_queue
from ddbbridge.ensure.ssm import delete_parameters
from ddbbridge.ensure.table_claim import claim_owner, release_claim
from ddbbridge.errors import report
from ddbbridge.names import SideNames
from ddbbridge.reconcile import PairClients, RegionReport, RunResult
from ddbbridge.spec import PairManifest


def destroy(manifest: PairManifest, clients: PairClients, *, dry_run: bool = False) -> RunResult:
    spec = manifest.spec
    pair = manifest.metadata.name
    result = RunResult(pair, "destroy", dry_run)
    contexts = {
        side.name: EnsureContext(clients.sessions[side.name], side.name, dry_run, result.actions)
        for side in spec.regions
    }
    names = {side.name: SideNames(pair, side.name) for side in spec.regions}
    for side in spec.regions:
        result.regions[side.name] = RegionReport(side.name, side.region)

    def attempt(side: str, step: str, call: Callable[..., object], *args: object) -> None:
        try:
            call(*args)
        except Exception as error:  # keep going: destroy removes as much as it can
            result.errors.append(report(side, step, error))

    # Phases run across both regions: stop the flow first (mappings, functions), then identities and
    # keys (the secrets), then storage.
    for side in spec.regions:
        ctx, own = contexts[side.name], names[side.name]
        for function in (own.sender_function, own.applier_function):
            attempt(side.name, f"mappings of {function}", delete_mappings, ctx, function)
    for side in spec.regions:
        ctx, own = contexts[side.name], names[side.name]
        for function in (own.sender_function, own.applier_function):
            attempt(side.name, f"function {function}", delete_function, ctx, function)
    for side in spec.regions:
        ctx, own = contexts[side.name], names[side.name]
        attempt(side.name, f"user {own.peer_writer_user}", delete_user, ctx, own.peer_writer_user)
        attempt(
            side.name,
            f"role {own.federated_writer_role}",
            delete_federated_role,
            ctx,
            own.federated_writer_role,
        )
        for role in (own.sender_role, own.applier_role):
            attempt(side.name, f"role {role}", delete_role, ctx, role)
    for side in spec.regions:
        # This region's SSM holds the PEER's key.
        ctx, peer_names = contexts[side.name], names[spec.peer_of(side).name]
        parameters = [peer_names.access_key_parameter, peer_names.secret_key_parameter]
        attempt(side.name, "peer key parameters", delete_parameters, ctx, parameters)
    for side in spec.regions:
        ctx, own = contexts[side.name], names[side.name]
        for queue in (own.sender_failures_queue, own.applier_failures_queue, own.dead_letter_queue):
            attempt(side.name, f"queue {queue}", delete_queue, ctx, queue)
        attempt(side.name, f"kinesis {own.inbound_stream}", delete_stream, ctx, own.inbound_stream)
        for table in (own.ledger_table, own.stats_table):
            attempt(side.name, f"table {table}", delete_table, ctx, table)
        attempt(
            side.name,
            f"stream of {side.table_name}",
            _disable_stream,
            ctx,
            side.table_name,
            pair,
            result.regions[side.name],
        )
        owner = claim_owner(manifest.metadata.namespace, pair)
        attempt(side.name, f"claim on {side.table_name}", release_claim, ctx, side.table_name, owner)
    return result


def _disable_stream(ctx: EnsureContext, table: str, pair: str, region: RegionReport) -> None:
    region.stream_enabled_by_us = disable_table_stream(ctx, table, pair)
