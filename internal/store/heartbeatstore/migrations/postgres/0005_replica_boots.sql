-- How many boots each heartbeat replica recorded over the last minute, as
-- it last said: a mass boot is spread over the replicas, and the decider
-- stretches the fleet's timings for all of them. A replica's row goes when
-- its count falls to 0; the decider ignores one that stopped being
-- updated (a replica that died).
CREATE TABLE hb_replica_boots (
	replica TEXT        COLLATE "C" NOT NULL PRIMARY KEY,
	boots   BIGINT      NOT NULL CHECK (boots > 0),
	at      TIMESTAMPTZ NOT NULL
);
