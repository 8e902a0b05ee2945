-- Tokenization results that arrived for a card id we did not know yet. Jetpay may deliver a result
-- before the platform has committed its pending card (or for another platform's card); keeping it
-- here lets the card pick it up when its row is written, instead of losing it.
CREATE TABLE early_results (
    jetpay_card_id TEXT PRIMARY KEY,
    data           TEXT NOT NULL,
    received_at    BIGINT NOT NULL
);
