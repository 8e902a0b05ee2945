-- Rate limits and failed sign-ins, counted in the database so that every instance shares them.
-- A window starts at a key's first hit; `key` names the action and who (address, or email and
-- address).
CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits         BIGINT NOT NULL
);
CREATE INDEX rate_limits_by_window ON rate_limits (window_start);
