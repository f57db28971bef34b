-- The URL a lease's holder is reached at (otaserve run --advertise-url), so
-- that another replica forwards to it the operator actions only the holder
-- runs (docs/scaling.md). '' when the holder advertises none: those actions
-- are then answered 503 by the other replicas, saying why.
ALTER TABLE leases ADD COLUMN url text NOT NULL DEFAULT '';
