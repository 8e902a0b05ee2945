-- Developer controls (the `jetpay-sandbox` subcommands and the dashboard's buttons).

-- A webhook can be paused on its own: nothing is POSTed to it until it is resumed; its events
-- wait (state `scheduled`). The global `pause` fault still pauses every webhook.
ALTER TABLE webhooks ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;

-- Events asked to be sent again to one webhook, ids `next_id..=last_id`. The dispatcher sends
-- them (in batches of max_batch_size, before the webhook's normal batches) without touching the
-- webhook's cursor; a row goes when its last event was delivered.
CREATE TABLE resends (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id  INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    next_id     INTEGER NOT NULL,
    last_id     INTEGER NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX resends_webhook ON resends(webhook_id, id);
