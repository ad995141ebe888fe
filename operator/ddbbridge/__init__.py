"""ddb-bridge: active-active DynamoDB replication across AWS partitions."""

__version__ = "0.1.0"
