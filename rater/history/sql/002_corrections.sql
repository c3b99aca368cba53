-- 002: corrections (SPEC §13). `adjustments` holds billing.adjustments as the sink
-- reads them (few rows: not partitioned); `rerate_runs` remembers each rerate that
-- began, so a rerun of the same correction resumes it with the same cutoff and ids.

CREATE TABLE adjustments (
    adjustment_id      uuid        PRIMARY KEY,
    rerate_id          uuid        NOT NULL,
    call_id            text COLLATE "C" NOT NULL,
    subscription_id    text COLLATE "C" NOT NULL,
    billing_account_id text COLLATE "C" NOT NULL,
    period             date        NOT NULL,
    original_charge_id uuid,
    original_amount    numeric     NOT NULL,
    new_amount         numeric     NOT NULL,
    delta              numeric     NOT NULL,
    currency           text        NOT NULL,
    reason             text        NOT NULL,
    at                 timestamptz NOT NULL,
    record             json        NOT NULL
);

-- a billing account's adjustments of a period, beside its charges (rater.history.charges)
CREATE INDEX adjustments_account_period ON adjustments (billing_account_id, period);

CREATE TABLE rerate_runs (
    rerate_id      uuid        PRIMARY KEY,
    period         text        NOT NULL,
    subscriptions  text[]      NOT NULL,
    plan_sha256    text        NOT NULL,
    reason         text        NOT NULL,
    cutoff         timestamptz NOT NULL,  -- calls rated up to here are rerated
    began_at       timestamptz NOT NULL,
    finished_at    timestamptz
);
