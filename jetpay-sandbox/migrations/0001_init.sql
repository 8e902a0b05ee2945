-- The sandbox's whole state. Timestamps meant for people are RFC 3339 text with microseconds
-- (they sort as text); timestamps used for scheduling are Unix milliseconds.

CREATE TABLE contacts (
    id          TEXT PRIMARY KEY,          -- UUID
    email       TEXT NOT NULL,
    name        TEXT NOT NULL,
    tags        TEXT NOT NULL,             -- JSON array
    language    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- One row per tokenization URL handed out. Single use: `used_at` is set on a valid submit.
CREATE TABLE tokenization_sessions (
    id              TEXT PRIMARY KEY,      -- random, the last path segment of the URL
    contact_id      TEXT NOT NULL REFERENCES contacts(id),
    credit_card_id  TEXT NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    used_at         TEXT
);

-- Only what a card-on-file service may keep: never the number or the CVC.
CREATE TABLE credit_cards (
    id                TEXT PRIMARY KEY,
    contact_id        TEXT NOT NULL REFERENCES contacts(id),
    state             TEXT NOT NULL,       -- processing | succeeded | failed
    brand             TEXT NOT NULL,
    last4             TEXT NOT NULL,
    exp_month         INTEGER NOT NULL,
    exp_year          INTEGER NOT NULL,
    outcome           TEXT NOT NULL,       -- what the card service will answer (test card behaviour)
    process_after_ms  INTEGER NOT NULL,
    failure_reason    TEXT,
    created_at        TEXT NOT NULL,
    processed_at      TEXT
);
CREATE INDEX credit_cards_processing ON credit_cards(process_after_ms) WHERE state = 'processing';

-- The event log. AUTOINCREMENT: ids are never reused, even after the newest row is deleted.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX events_created_at ON events(created_at);

CREATE TABLE webhooks (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    identifier            TEXT NOT NULL UNIQUE,
    callback_url          TEXT NOT NULL UNIQUE,
    callback_api_key      TEXT,
    max_batch_size        INTEGER NOT NULL,
    max_wait_seconds      INTEGER NOT NULL,
    state                 TEXT NOT NULL,
    -- Highest event id the dispatcher has finished with; the next batch starts after it.
    -- Rewound by a replay; `last_sent_event_id` is what the API reports.
    cursor                INTEGER NOT NULL,
    last_sent_event_id    INTEGER,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms    INTEGER,
    created_at            TEXT NOT NULL
);

-- Every delivery attempt, for the dashboard ("why is my card still pending?").
CREATE TABLE delivery_attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,      -- 1 for the first try of a batch, 2 for its first retry…
    started_at      TEXT NOT NULL,
    latency_ms      INTEGER,
    status_code     INTEGER,
    error           TEXT,
    first_event_id  INTEGER NOT NULL,
    last_event_id   INTEGER NOT NULL,
    event_count     INTEGER NOT NULL,
    outcome         TEXT NOT NULL,         -- delivered | failed | dropped
    note            TEXT
);
CREATE INDEX delivery_attempts_webhook ON delivery_attempts(webhook_id, id);

-- RSA signing keys (PKCS#8 PEM). Old keys stay so that the JWKS keeps listing them after rotation.
CREATE TABLE signing_keys (
    kid              TEXT PRIMARY KEY,
    private_key_pem  TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    is_current       INTEGER NOT NULL
);
