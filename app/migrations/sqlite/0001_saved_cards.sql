-- Customers of the platform and their Jetpay contact (created once, on first need).
CREATE TABLE customers (
    id                TEXT PRIMARY KEY,
    email             TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    password_hash     TEXT NOT NULL,
    jetpay_contact_id TEXT UNIQUE,
    created_at        BIGINT NOT NULL
);

-- Saved cards. Only what Jetpay's event tells us: brand, last four, expiry. Never a number or CVC.
CREATE TABLE cards (
    id              TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL REFERENCES customers(id),
    jetpay_card_id  TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'active', 'failed', 'expired', 'removed')),
    brand           TEXT,
    last4           TEXT,
    exp_month       INTEGER,
    exp_year        INTEGER,
    failure_reason  TEXT,
    is_default      BOOLEAN NOT NULL DEFAULT FALSE,
    -- Jetpay's single-use form URL while the card is pending, so a page without JavaScript can
    -- show it after a redirect. Cleared when the card leaves `pending`.
    form_url        TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX cards_by_customer ON cards (customer_id, state);
-- At most one default card per customer, enforced by the database.
CREATE UNIQUE INDEX one_default_card ON cards (customer_id) WHERE is_default;

-- Every Jetpay event id we have received, with what we did with it. The primary key makes a
-- repeated delivery a no-op.
CREATE TABLE jetpay_events (
    event_id    BIGINT PRIMARY KEY,
    event_type  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

-- A log of card changes per customer: the live stream's event ids, so a page that reconnects with
-- Last-Event-ID gets exactly what it missed.
CREATE TABLE card_changes (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id  TEXT NOT NULL,
    card_id      TEXT NOT NULL,
    announcement TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX card_changes_by_customer ON card_changes (customer_id, seq);

-- The webhook this server registered at Jetpay, by callback URL.
CREATE TABLE jetpay_webhooks (
    callback_url  TEXT PRIMARY KEY,
    identifier    TEXT NOT NULL,
    registered_at BIGINT NOT NULL
);
