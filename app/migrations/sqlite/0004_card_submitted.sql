-- When Jetpay's hosted form told the customer's page that the card details were submitted. Until
-- then a pending card is only an opened form ("Waiting for card details"), not a card being
-- verified.
ALTER TABLE cards ADD COLUMN submitted_at BIGINT;
