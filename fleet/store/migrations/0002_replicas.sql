-- Replicas: several otaserve processes on one database (docs/scaling.md).

-- A lease names who runs a share of the work (today "campaigns": every
-- campaign) until it expires. epoch grows at every change of holder, and
-- each write of the holder checks it in its own transaction (fencing), so a
-- replica paused past its lease cannot write.
CREATE TABLE leases (
	name text COLLATE "C" PRIMARY KEY,
	holder text NOT NULL,
	epoch bigint NOT NULL,
	expires timestamptz NOT NULL
);

-- Device reports, written by every replica that receives them, consumed
-- (deleted) by the lease holder in the transaction of the change they make.
CREATE TABLE inbox (
	id bigserial PRIMARY KEY,
	topic text NOT NULL,
	payload bytea NOT NULL,
	received timestamptz NOT NULL DEFAULT now()
);

-- What the inbox has taken lately, by a digest of topic and payload: every
-- replica receives each report, and the first to write it wins.
CREATE TABLE inbox_seen (
	digest bytea PRIMARY KEY,
	seen timestamptz NOT NULL
);

-- Orders, stored before they are published and marked when the broker has
-- acknowledged them; a new lease holder publishes those not marked.
CREATE TABLE outbox (
	id bigserial PRIMARY KEY,
	campaign_id bigint NOT NULL,
	device_key text COLLATE "C" NOT NULL,
	topic text NOT NULL,
	payload bytea NOT NULL,
	epoch bigint NOT NULL,
	created timestamptz NOT NULL DEFAULT now(),
	sent timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent IS NULL;
CREATE INDEX outbox_campaign ON outbox (campaign_id, device_key);
