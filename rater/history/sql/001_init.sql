-- 001: the call history (docs/history.md). Applied by rater.history.migrations in one
-- transaction, under an advisory lock, into the schema of RATER_HISTORY_SCHEMA.
--
-- rated_calls and overage_charges are partitioned by RANGE of the period's start date,
-- one partition per calendar month of it (a period starting 2026-11-15 is in the
-- 2026-11 partition). The sink creates partitions before it inserts
-- (rater.history.partitions); there is no default partition, so a row can never land
-- in a catch-all that a later partition would have to be carved out of.
--
-- Ids are COLLATE "C": they compare by their bytes, the same on every server, which
-- keyset paging on (started_at, call_id) relies on.
-- `record` is json, not jsonb: json keeps the producer's text (key order, spacing),
-- so the API and CSV export return a record exactly as it was emitted.

CREATE TABLE rated_calls (
    period             date        NOT NULL,
    subscription_id    text COLLATE "C" NOT NULL,
    call_id            text COLLATE "C" NOT NULL,
    billing_account_id text COLLATE "C" NOT NULL,
    user_id            text COLLATE "C" NOT NULL,
    started_at         timestamptz NOT NULL,
    zone               text        NOT NULL,
    direction          text        NOT NULL,
    emergency          boolean     NOT NULL,
    duration_s         integer     NOT NULL,
    billable_s         integer     NOT NULL,
    included_s         integer     NOT NULL,
    overage_s          integer     NOT NULL,
    unbilled_s         integer     NOT NULL,
    outcome            text        NOT NULL,
    amount             numeric     NOT NULL,
    currency           text        NOT NULL,
    charge_id          uuid,
    rated_at           timestamptz NOT NULL,
    destination        text,
    record             json        NOT NULL,
    PRIMARY KEY (period, subscription_id, call_id)
) PARTITION BY RANGE (period);

-- one subscription's calls newest first (keyset paging on started_at, call_id), also
-- narrowed to one user or one outcome; a billing account's calls of a period
CREATE INDEX rated_calls_newest ON rated_calls
    (subscription_id, started_at DESC, call_id DESC);
CREATE INDEX rated_calls_user_newest ON rated_calls
    (subscription_id, user_id, started_at DESC, call_id DESC);
CREATE INDEX rated_calls_outcome_newest ON rated_calls
    (subscription_id, outcome, started_at DESC, call_id DESC);
CREATE INDEX rated_calls_account_period ON rated_calls (billing_account_id, period);

CREATE TABLE overage_charges (
    period             date        NOT NULL,
    charge_id          uuid        NOT NULL,
    subscription_id    text COLLATE "C" NOT NULL,
    billing_account_id text COLLATE "C" NOT NULL,
    user_id            text COLLATE "C" NOT NULL,
    call_id            text COLLATE "C" NOT NULL,
    zone               text        NOT NULL,
    overage_s          integer     NOT NULL,
    rate_per_minute    numeric     NOT NULL,
    amount             numeric     NOT NULL,
    currency           text        NOT NULL,
    started_at         timestamptz NOT NULL,
    rated_at           timestamptz NOT NULL,
    record             json        NOT NULL,
    PRIMARY KEY (period, charge_id)
) PARTITION BY RANGE (period);

-- a billing account's charges of a period, summed (rater.history.charges)
CREATE INDEX overage_charges_account_period ON overage_charges (billing_account_id, period);

-- Audit events of subscriptions.events (payg.changed today; spend_limit.changed and
-- others later). Not partitioned: few rows, and an audit trail is kept longer than
-- the call history's retention. The dedupe key is the sha256 of the record's bytes,
-- so a replayed record changes nothing.
CREATE TABLE audit_events (
    dedupe_key       bytea       PRIMARY KEY,
    subscription_id  text COLLATE "C" NOT NULL,
    type             text        NOT NULL,
    at               timestamptz NOT NULL,
    actor            text,
    role             text,
    record           json        NOT NULL,
    -- where the record was read: one subscription's events share a partition, so the
    -- offset orders two events of the same instant as they were emitted
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL
);

CREATE INDEX audit_events_newest ON audit_events
    (subscription_id, type, at DESC, source_partition DESC, source_offset DESC);
