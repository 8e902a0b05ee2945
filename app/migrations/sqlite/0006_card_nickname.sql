-- A name the customer gives a card ("Work card"), optional, shown beside brand and last four.
ALTER TABLE cards ADD COLUMN nickname TEXT;
