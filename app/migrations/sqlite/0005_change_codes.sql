-- Customer-facing sentences are chosen where they are shown, not stored: `card_changes.announcement`
-- now holds a change code (`model::ChangeKind::code`). Earlier rows held English; turn them into
-- the codes they stand for (a title or failure reason inside the old sentence is not kept).
UPDATE card_changes SET announcement = CASE
    WHEN announcement = 'New card added. Verifying it with the bank…' THEN 'added'
    WHEN announcement = 'Card received. Verifying it with the bank…' THEN 'submitted'
    WHEN announcement = 'Card removed.' THEN 'removed'
    WHEN announcement = 'The failed card was removed.' THEN 'retired'
    WHEN announcement = 'Default card changed.' THEN 'default'
    WHEN announcement LIKE 'A card was not confirmed in time%' THEN 'expired'
    WHEN announcement LIKE '% is now active.' THEN 'activated'
    WHEN announcement LIKE '% could not be verified.%' THEN 'failed'
    ELSE ''
END;
