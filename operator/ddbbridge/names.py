"""Names of every AWS resource a pair owns, per side (the contract shared with handlers and tools).

Pure: no I/O. Pair names are <= 24 characters and side names <= 8 (spec patterns), so the longest
derived name (`ddbbridge-` + 24 + `-` + 8 + `-applier-failures`) stays within the 64 characters IAM
roles, users and Lambda functions allow, and within SQS's 80.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "ddbbridge"
AWS_NAME_LIMIT = 64


@dataclass(frozen=True)
class SideNames:
    """Resource names of one side X of pair P (see the contract in the design notes)."""

    pair: str
    side: str

    @property
    def _base(self) -> str:
        return f"{PREFIX}-{self.pair}-{self.side}"

    @property
    def inbound_stream(self) -> str:
        """Kinesis stream in X that receives the peer's changes."""
        return f"{PREFIX}-{self.pair}-to-{self.side}"

    @property
    def sender_function(self) -> str:
        return f"{self._base}-sender"

    @property
    def applier_function(self) -> str:
        return f"{self._base}-applier"

    @property
    def sender_role(self) -> str:
        return self.sender_function

    @property
    def applier_role(self) -> str:
        return self.applier_function

    @property
    def ledger_table(self) -> str:
        return f"{self._base}-ledger"

    @property
    def stats_table(self) -> str:
        return f"{self._base}-stats"

    @property
    def sender_failures_queue(self) -> str:
        return f"{self._base}-sender-failures"

    @property
    def applier_failures_queue(self) -> str:
        return f"{self._base}-applier-failures"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self._base}-dead-letters"

    @property
    def peer_writer_user(self) -> str:
        """IAM user in X that the PEER's sender uses to put records into X's inbound stream."""
        return f"{self._base}-peer-writer"

    @property
    def federated_writer_role(self) -> str:
        """IAM role in X that the PEER's sender assumes with a web identity token (federation mode)."""
        return f"{self._base}-federated-writer"

    @property
    def token_session_name(self) -> str:
        """RoleSessionName of the peer sender's sessions in X (shows up in X's CloudTrail)."""
        return f"{self._base}-sender"

    @property
    def access_key_parameter(self) -> str:
        """SSM parameter (String) in the PEER holding the access key id of X's peer-writer user."""
        return f"/{PREFIX}/{self.pair}/{self.side}/access-key-id"

    @property
    def secret_key_parameter(self) -> str:
        """SSM parameter (SecureString) in the PEER holding the secret of X's peer-writer user."""
        return f"/{PREFIX}/{self.pair}/{self.side}/secret-access-key"

    @property
    def inline_policy(self) -> str:
        """Name of the one inline policy on each role and on the peer-writer user."""
        return f"{PREFIX}-{self.pair}"

    def all_limited_names(self) -> tuple[str, ...]:
        """Names subject to the 64-character limit (roles, users, functions, queues, streams)."""
        return (
            self.inbound_stream,
            self.sender_function,
            self.applier_function,
            self.ledger_table,
            self.stats_table,
            self.sender_failures_queue,
            self.applier_failures_queue,
            self.dead_letter_queue,
            self.peer_writer_user,
            self.federated_writer_role,
        )


def log_group(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"
