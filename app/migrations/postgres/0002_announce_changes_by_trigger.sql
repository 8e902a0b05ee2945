-- Every change appended to the live streams' log is announced on the `card_changes` channel as
-- "<customer id> <seq>", in seq order, by the statement that appends it. The server used to send
-- the notifications itself, one more statement (a round trip) per write; now no write can forget
-- them either. PostgreSQL delivers them when the transaction commits, and only if it does.
CREATE FUNCTION announce_card_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('card_changes', customer_id || ' ' || seq)
    FROM (SELECT customer_id, seq FROM appended ORDER BY seq) AS ordered;
    RETURN NULL;
END;
$$;

CREATE TRIGGER card_changes_announced
AFTER INSERT ON card_changes
REFERENCING NEW TABLE AS appended
FOR EACH STATEMENT EXECUTE FUNCTION announce_card_changes();
