-- What a running node reports besides its liveness, each a JSON object ''
-- until the first report: the reported status its host daemons set, with
-- when it was reported; the bundle it applied, with its hooks' results. And
-- the last node event sequence recorded for the node's agent instance, so
-- that an event the agent sends again is recorded once.
ALTER TABLE hb_liveness ADD COLUMN reported TEXT NOT NULL DEFAULT '';
ALTER TABLE hb_liveness ADD COLUMN bundle_applied TEXT NOT NULL DEFAULT '';
ALTER TABLE hb_liveness ADD COLUMN event_instance TEXT NOT NULL DEFAULT '';
ALTER TABLE hb_liveness ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;
