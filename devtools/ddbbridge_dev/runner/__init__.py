"""Local Lambda runner: emulates Lambda's event-source-mapping poller for DynamoDB Streams and Kinesis.

moto cannot run functions without Docker, and our launcher turns moto's own mapping delivery off, so
this package owns delivery: it lists each region's mappings, polls the streams, builds events in
Lambda's exact format and runs the DEPLOYED zip in isolated worker processes, honouring the mapping's
batching, retry, bisect, partial-failure, parallelization and on-failure settings, with per-shard
checkpoints in the dev dir.
"""
