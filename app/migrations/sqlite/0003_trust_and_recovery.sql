-- What ties a delivery to our registration: Jetpay signs every company's deliveries with the same
-- keys, so a batch must also name our webhook's numeric id and carry the random callback API key
-- we registered (never logged). Filled in at the next registration for older databases.
ALTER TABLE jetpay_webhooks ADD COLUMN webhook_id BIGINT;
ALTER TABLE jetpay_webhooks ADD COLUMN api_key TEXT;

-- Holes in the received event ids that replays never filled: after a few attempts we stop asking
-- Jetpay, record the hole here (readiness reports it), and the gap check steps over it.
CREATE TABLE event_gaps (
    event_id    BIGINT PRIMARY KEY,
    replays     INTEGER NOT NULL,
    given_up_at BIGINT NOT NULL
);

-- Tokenization URLs asked per customer per hour are counted from cards, removed ones included.
CREATE INDEX cards_by_customer_created ON cards (customer_id, created_at);

-- Which Jetpay event made a change (NULL for the customer's own actions): applications can be
-- counted per event, so "applied at most once" is checked where it can actually fail.
ALTER TABLE card_changes ADD COLUMN event_id BIGINT;
ALTER TABLE early_results ADD COLUMN event_id BIGINT;
