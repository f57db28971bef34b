package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// What replicas share beyond the records (docs/scaling.md): leases, the
// inbox of device reports and the outbox of orders. PostgreSQL only: bbolt
// is one process's file.

// ErrLeaseLost is returned by a write fenced by a lease (Writer.CheckLease)
// when the lease has another holder or epoch, or has expired.
var ErrLeaseLost = errors.New("lease lost")

// ErrNeedsPostgres is returned by the replica methods on bbolt.
var ErrNeedsPostgres = errors.New("replicas need the PostgreSQL store (--db postgres://...)")

// Lease is one holder's hold on a named share of the work.
type Lease struct {
	Name   string
	Holder string
	// Epoch grows at every change of holder: the fence of each write.
	Epoch int64
	// URL is where the holder's API is reached by the other replicas
	// (otaserve run --advertise-url); "" when it advertises none.
	URL string
}

// LeaseState is what the lease table says of a lease when read, by the
// database's clock.
type LeaseState struct {
	Lease
	Expires time.Time
	// Left is how long the lease still runs: zero or less once it has
	// expired, when any replica may take it.
	Left time.Duration
}

// InboxNotify is the channel of PostgreSQL notifications sent when a device
// report enters the inbox.
const InboxNotify = "otaport_inbox"

// ImagesNotify is the channel of PostgreSQL notifications sent when an
// image is recorded (AddImage), on any replica.
const ImagesNotify = "otaport_images"

// inboxWindow is how long a report's digest keeps a copy of it out of the
// inbox. Replicas receive the same broker message within milliseconds of
// each other; a device that repeats a report word for word within this
// window repeats something idempotent (a version, a step).
const inboxWindow = 10 * time.Second

func (s *Store) pg() (*pgDB, error) {
	p, ok := s.b.(*pgDB)
	if !ok {
		return nil, ErrNeedsPostgres
	}
	return p, nil
}

// AcquireLease takes the lease name for holder, reached at url, if it is
// free or expired, with a new epoch, for ttl; it returns false when another
// holder has it. The database's clock is the only one that counts.
func (s *Store) AcquireLease(ctx context.Context, name, holder, url string, ttl time.Duration) (Lease, bool, error) {
	p, err := s.pg()
	if err != nil {
		return Lease{}, false, err
	}
	var epoch int64
	err = pgx.BeginFunc(ctx, p.leases, func(tx pgx.Tx) error {
		// FOR UPDATE waits for the writes in flight of the holder (their
		// fence holds the row FOR KEY SHARE, Writer.CheckLease), which the
		// upsert's own lock would not: it changes no key, and renewals
		// (the same lock) must not wait for those writes.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM leases WHERE name = $1 FOR UPDATE`, name); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO leases (name, holder, url, epoch, expires)
			VALUES ($1, $2, $3, 1, now() + $4 * interval '1 millisecond')
			ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, url = EXCLUDED.url, epoch = leases.epoch + 1, expires = EXCLUDED.expires
			WHERE leases.expires < now()
			RETURNING epoch`, name, holder, url, ttl.Milliseconds()).Scan(&epoch)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Lease{}, false, nil
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return Lease{Name: name, Holder: holder, Epoch: epoch, URL: url}, true, nil
}

// LeaseHolder reads who holds the lease name, where it is reached, and
// until when; ErrNotFound when nobody ever took it. The holder may have
// expired (Left <= 0): a takeover is then due.
func (s *Store) LeaseHolder(ctx context.Context, name string) (LeaseState, error) {
	p, err := s.pg()
	if err != nil {
		return LeaseState{}, err
	}
	// The main pool, not the leases' own: that one is kept for the
	// renewals, and this read is made for requests from the network.
	st := LeaseState{Lease: Lease{Name: name}}
	var left int64
	err = p.pool.QueryRow(ctx, `SELECT holder, url, epoch, expires,
		(extract(epoch FROM expires - now()) * 1000)::bigint
		FROM leases WHERE name = $1`, name).Scan(&st.Holder, &st.URL, &st.Epoch, &st.Expires, &left)
	if errors.Is(err, pgx.ErrNoRows) {
		return LeaseState{}, fmt.Errorf("lease %s: %w: no replica has taken it yet", name, ErrNotFound)
	}
	if err != nil {
		return LeaseState{}, fmt.Errorf("read lease %s: %w", name, err)
	}
	st.Left = time.Duration(left) * time.Millisecond
	return st, nil
}

// RenewLease extends l by ttl; ErrLeaseLost when it is no longer held.
func (s *Store) RenewLease(ctx context.Context, l Lease, ttl time.Duration) error {
	p, err := s.pg()
	if err != nil {
		return err
	}
	tag, err := p.leases.Exec(ctx, `UPDATE leases SET expires = now() + $4 * interval '1 millisecond'
		WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires > now()`, l.Name, l.Holder, l.Epoch, ttl.Milliseconds())
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", l.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("renew lease %s: %w", l.Name, ErrLeaseLost)
	}
	return nil
}

// ReleaseLease gives l up, so that another replica takes it at once.
func (s *Store) ReleaseLease(ctx context.Context, l Lease) error {
	p, err := s.pg()
	if err != nil {
		return err
	}
	_, err = p.leases.Exec(ctx, `UPDATE leases SET expires = now() - interval '1 second'
		WHERE name = $1 AND holder = $2 AND epoch = $3`, l.Name, l.Holder, l.Epoch)
	if err != nil {
		return fmt.Errorf("release lease %s: %w", l.Name, err)
	}
	return nil
}

// CheckLease fails the transaction with ErrLeaseLost unless l is held and
// unexpired. It share-locks the lease row until the commit, so a takeover
// waits for this transaction, and a transaction that starts after a
// takeover cannot commit: the change is fenced by the lease's epoch.
func (w *Writer) CheckLease(l Lease) error {
	t, ok := w.tx.(*pgTx)
	if !ok {
		return ErrNeedsPostgres
	}
	if err := t.flush(); err != nil {
		return err
	}
	// FOR KEY SHARE: a takeover (AcquireLease, FOR UPDATE) waits for this
	// write, a renewal (an UPDATE of no key) does not. With FOR SHARE a
	// write longer than the renewal's timeout, a batch of reports at tens
	// of thousands of devices, cost the holder its lease, again and again.
	var epoch int64
	err := t.tx.QueryRow(t.ctx, `SELECT epoch FROM leases
		WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires > now() FOR KEY SHARE`, l.Name, l.Holder, l.Epoch).Scan(&epoch)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return t.note(fmt.Errorf("check lease %s: %w", l.Name, err))
	}
	if err != nil {
		return fmt.Errorf("lease %s epoch %d of %s: %w", l.Name, l.Epoch, l.Holder, ErrLeaseLost)
	}
	return nil
}

// InboxMessage is one device report in the inbox.
type InboxMessage struct {
	ID      int64
	Topic   string
	Payload []byte
}

// PutInbox stores device reports in the inbox, once each however many
// replicas receive them (by a digest of topic and payload, within
// inboxWindow), and wakes the consumer.
func (s *Store) PutInbox(ctx context.Context, msgs []InboxMessage) error {
	p, err := s.pg()
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var b pgx.Batch
		for _, m := range msgs {
			h := sha256.New()
			h.Write([]byte(m.Topic))
			h.Write([]byte{0})
			h.Write(m.Payload)
			b.Queue(`WITH s AS (
				INSERT INTO inbox_seen (digest, seen) VALUES ($1, now())
				ON CONFLICT (digest) DO UPDATE SET seen = now()
				WHERE inbox_seen.seen < now() - $4 * interval '1 millisecond'
				RETURNING 1)
				INSERT INTO inbox (topic, payload) SELECT $2, $3 FROM s`, h.Sum(nil), m.Topic, m.Payload, inboxWindow.Milliseconds())
		}
		b.Queue(`SELECT pg_notify($1, '')`, InboxNotify)
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("store %d device reports in the inbox: %w", len(msgs), err)
		}
		return nil
	})
}

// Inbox returns up to n of the oldest device reports of the inbox.
func (s *Store) Inbox(ctx context.Context, n int) ([]InboxMessage, error) {
	p, err := s.pg()
	if err != nil {
		return nil, err
	}
	rows, err := p.pool.Query(ctx, `SELECT id, topic, payload FROM inbox ORDER BY id LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("read the inbox: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (InboxMessage, error) {
		var m InboxMessage
		err := r.Scan(&m.ID, &m.Topic, &m.Payload)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the inbox: %w", err)
	}
	return out, nil
}

// DeleteInbox removes consumed reports, in the transaction of the change
// they made.
func (w *Writer) DeleteInbox(ids []int64) error {
	t, ok := w.tx.(*pgTx)
	if !ok {
		return ErrNeedsPostgres
	}
	t.exec(`DELETE FROM inbox WHERE id = ANY($1)`, ids)
	return nil
}

// Prune forgets the digests of reports older than the dedupe window, and
// the orders sent for campaigns that are no longer active: a takeover
// looks only at those of active campaigns (Ordered).
func (s *Store) Prune(ctx context.Context) error {
	p, err := s.pg()
	if err != nil {
		return err
	}
	_, err = p.pool.Exec(ctx, `DELETE FROM inbox_seen WHERE seen < now() - $1 * interval '1 millisecond'`, 2*inboxWindow.Milliseconds())
	if err != nil {
		return fmt.Errorf("prune the inbox digests: %w", err)
	}
	_, err = p.pool.Exec(ctx, `DELETE FROM outbox o WHERE sent IS NOT NULL AND NOT EXISTS (
		SELECT 1 FROM campaigns c WHERE c.id = o.campaign_id AND c.doc->>'state' IN ($1, $2))`,
		string(CampaignRunning), string(CampaignPaused))
	if err != nil {
		return fmt.Errorf("prune the outbox: %w", err)
	}
	return nil
}

// Listen holds one connection LISTENing on each channel of wakes and calls
// the channel's function at each of its notifications until ctx ends; it
// returns the error that ended it.
func (s *Store) Listen(ctx context.Context, wakes map[string]func()) error {
	p, err := s.pg()
	if err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(wakes))
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("listen %s: %w", strings.Join(names, ", "), err)
	}
	// The connection's session holds the LISTEN: it is closed, not put
	// back in the pool.
	defer func() {
		_ = conn.Conn().Close(context.Background())
		conn.Release()
	}()
	for _, ch := range names {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("listen %s: %w", ch, err)
		}
	}
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("listen %s: %w", strings.Join(names, ", "), err)
		}
		if wake := wakes[n.Channel]; wake != nil {
			wake()
		}
	}
}

// OutboxOrder is one order in the outbox.
type OutboxOrder struct {
	ID int64
	// Epoch is the lease epoch of the holder that stored it.
	Epoch    int64
	Campaign uint64
	Device   string
	Topic    string
	Payload  []byte
}

// PutOutbox stores orders to publish, fenced by l.
func (s *Store) PutOutbox(l Lease, orders []OutboxOrder) error {
	return s.Write(func(w *Writer) error {
		if err := w.CheckLease(l); err != nil {
			return err
		}
		t := w.tx.(*pgTx)
		for _, o := range orders {
			t.exec(`INSERT INTO outbox (campaign_id, device_key, topic, payload, epoch) VALUES ($1, $2, $3, $4, $5)`,
				int64(o.Campaign), o.Device, o.Topic, o.Payload, l.Epoch)
		}
		return nil
	})
}

// Unsent returns up to n of the oldest orders not yet marked sent.
func (s *Store) Unsent(ctx context.Context, n int) ([]OutboxOrder, error) {
	p, err := s.pg()
	if err != nil {
		return nil, err
	}
	rows, err := p.pool.Query(ctx, `SELECT id, epoch, campaign_id, device_key, topic, payload FROM outbox WHERE sent IS NULL ORDER BY id LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("read the outbox: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OutboxOrder, error) {
		var o OutboxOrder
		var c int64
		err := r.Scan(&o.ID, &o.Epoch, &c, &o.Device, &o.Topic, &o.Payload)
		o.Campaign = uint64(c)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the outbox: %w", err)
	}
	return out, nil
}

// MarkSent records that orders were published (or replaced by a newer one
// for the same device), fenced by l.
func (s *Store) MarkSent(l Lease, ids []int64) error {
	return s.Write(func(w *Writer) error {
		if err := w.CheckLease(l); err != nil {
			return err
		}
		w.tx.(*pgTx).exec(`UPDATE outbox SET sent = now() WHERE id = ANY($1)`, ids)
		return nil
	})
}

// Ordered returns the devices of campaign that have an order in the
// outbox, sent or not.
func (s *Store) Ordered(ctx context.Context, campaign uint64) (map[string]bool, error) {
	p, err := s.pg()
	if err != nil {
		return nil, err
	}
	rows, err := p.pool.Query(ctx, `SELECT DISTINCT device_key FROM outbox WHERE campaign_id = $1`, int64(campaign))
	if err != nil {
		return nil, fmt.Errorf("read the outbox of campaign %d: %w", campaign, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read the outbox of campaign %d: %w", campaign, err)
	}
	out := map[string]bool{}
	for _, k := range keys {
		out[k] = true
	}
	return out, nil
}
