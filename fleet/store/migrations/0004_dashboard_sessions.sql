-- The dashboard's sign-in links and sessions, keyed by the SHA-256 of their
-- secret, so that a link made on one replica opens a session on another and
-- the session works on every replica behind the load balancer.
CREATE TABLE dashboard_sessions (
	hash text COLLATE "C" PRIMARY KEY,
	doc jsonb NOT NULL
);
