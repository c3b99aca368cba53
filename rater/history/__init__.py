"""The call history: rated calls, overage charges and audit events in PostgreSQL (SPEC §12).

`sink` copies them from their Kafka topics into partitioned tables (idempotently);
`calls`, `charges` and `audit` are the queries the API and the console serve.
This package reads what the topics carry; it never reaches into Redis.
docs/history.md describes the schema, partitioning, idempotency and retention.
"""
