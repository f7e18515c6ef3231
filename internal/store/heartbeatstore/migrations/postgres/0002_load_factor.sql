-- The load factor (stretch) the decider applies to the base timings when
-- the fleet would beat faster than the heartbeat tier should receive. The
-- base interval and grace stay as the admin set them.
ALTER TABLE hb_settings ADD COLUMN stretch DOUBLE PRECISION NOT NULL DEFAULT 1;
