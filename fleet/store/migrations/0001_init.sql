-- The fleet's records, one table per kind. Each record is its JSON document
-- (the same bytes the bbolt backend keeps) under the record's proper key;
-- names compare bytewise (COLLATE "C"), as bbolt orders them.
CREATE TABLE devices (
	key text COLLATE "C" PRIMARY KEY,
	doc jsonb NOT NULL
);

CREATE SEQUENCE images_id_seq;
CREATE TABLE images (
	id bigint PRIMARY KEY,
	doc jsonb NOT NULL
);

CREATE SEQUENCE campaigns_id_seq;
CREATE TABLE campaigns (
	id bigint PRIMARY KEY,
	doc jsonb NOT NULL
);

CREATE TABLE progress (
	campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
	device_key text COLLATE "C" NOT NULL,
	doc jsonb NOT NULL,
	PRIMARY KEY (campaign_id, device_key)
);

CREATE TABLE tokens (
	hash text COLLATE "C" PRIMARY KEY,
	doc jsonb NOT NULL
);

CREATE TABLE settings (
	key text COLLATE "C" PRIMARY KEY,
	value text NOT NULL
);

-- Firmware blobs, shared by every otaserve on the database: the bytes in
-- chunks, so a Range request reads only the chunks it covers.
CREATE TABLE blobs (
	sha256 text COLLATE "C" PRIMARY KEY,
	size bigint NOT NULL,
	chunk_size integer NOT NULL,
	created timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE blob_chunks (
	sha256 text COLLATE "C" NOT NULL REFERENCES blobs (sha256) ON DELETE CASCADE,
	seq integer NOT NULL,
	data bytea NOT NULL,
	PRIMARY KEY (sha256, seq)
);

-- Firmware is compressed already, or does not compress: store the chunks
-- as they are, which also lets a read of one chunk skip decompression.
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
