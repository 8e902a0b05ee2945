-- The whole schema for PostgreSQL, equivalent to SQLite's migrations 0001–0007 (see those for
-- why each column exists). Timestamps are milliseconds since the Unix epoch, as on SQLite.

CREATE TABLE customers (
    id                TEXT PRIMARY KEY,
    email             TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    password_hash     TEXT NOT NULL,
    jetpay_contact_id TEXT UNIQUE,
    created_at        BIGINT NOT NULL
);

-- Only what Jetpay's event tells us: brand, last four, expiry. Never a number or CVC.
CREATE TABLE cards (
    id              TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL REFERENCES customers(id),
    jetpay_card_id  TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'active', 'failed', 'expired', 'removed')),
    brand           TEXT,
    last4           TEXT,
    exp_month       BIGINT,
    exp_year        BIGINT,
    failure_reason  TEXT,
    is_default      BOOLEAN NOT NULL DEFAULT FALSE,
    form_url        TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    submitted_at    BIGINT,
    nickname        TEXT
);
CREATE INDEX cards_by_customer ON cards (customer_id, state);
CREATE INDEX cards_by_customer_created ON cards (customer_id, created_at);
-- At most one default card per customer, enforced by the database.
CREATE UNIQUE INDEX one_default_card ON cards (customer_id) WHERE is_default;

-- Every Jetpay event id received, with what we did with it.
CREATE TABLE jetpay_events (
    event_id    BIGINT PRIMARY KEY,
    event_type  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

-- The live streams' log. `event_id` names the Jetpay event that made the change, if one did.
CREATE TABLE card_changes (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  TEXT NOT NULL,
    card_id      TEXT NOT NULL,
    announcement TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    event_id     BIGINT
);
CREATE INDEX card_changes_by_customer ON card_changes (customer_id, seq);

CREATE TABLE jetpay_webhooks (
    callback_url  TEXT PRIMARY KEY,
    identifier    TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    webhook_id    BIGINT,
    api_key       TEXT
);

CREATE TABLE early_results (
    jetpay_card_id TEXT PRIMARY KEY,
    data           TEXT NOT NULL,
    received_at    BIGINT NOT NULL,
    event_id       BIGINT
);

CREATE TABLE event_gaps (
    event_id    BIGINT PRIMARY KEY,
    replays     BIGINT NOT NULL,
    given_up_at BIGINT NOT NULL
);

CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits         BIGINT NOT NULL
);
CREATE INDEX rate_limits_by_window ON rate_limits (window_start);
