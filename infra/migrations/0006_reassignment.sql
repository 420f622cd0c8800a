-- REASSIGN_TECHNICIAN's idempotency: the step key of the reassignment a request last had,
-- so a redelivered reassignment returns the technician it chose instead of moving on.
ALTER TABLE maintenance_requests ADD COLUMN reassignment_key text;
