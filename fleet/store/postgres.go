package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the PostgreSQL schema's steps, NNNN_name.sql, applied in
// order at start; schema_migrations records those applied.
//
//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key under which a starting otaserve
// migrates, so that two replicas starting together do not both create the
// tables ("otaport" in ASCII).
const migrationLock = 0x6f7461706f7274

// txTimeout bounds one transaction, so a database that stops answering
// turns into an error rather than a hang. It is long: creating a campaign
// of 100,000 devices is one transaction of some 300,000 statements.
const txTimeout = 10 * time.Minute

// defaultMaxConns is how many connections otaserve opens at most, unless
// the URL says otherwise (pool_max_conns=N).
const defaultMaxConns = 16

// maxAttempts bounds the runs of one Write that conflicts with other
// transactions.
const maxAttempts = 10

// IsPostgresURL reports whether a --db value names a PostgreSQL database
// (postgres:// or postgresql://) rather than a bbolt file.
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// pgDB is the shared backend: a PostgreSQL database several otaserve
// processes may use at once.
type pgDB struct {
	pool *pgxpool.Pool
	// leases and blobs are pools of their own: a lease renewal must never
	// wait behind firmware downloads or a batch of reports for a
	// connection (a holder whose renewals time out steps down, and at
	// 100,000 devices one lost its lease every few seconds that way), and
	// thousands of downloads at once must not starve the records' writes.
	leases, blobs *pgxpool.Pool
	name          string // the URL without its password
	// writeMu keeps this process's writes one at a time, as bbolt's are:
	// they would otherwise mostly conflict with one another (the campaign
	// service's writes touch the same campaign) and be run again.
	// Conflicts with other processes are retried (update).
	writeMu sync.Mutex
	// claim is the connection that holds the advisory lock of Claim.
	claim *pgxpool.Conn
}

// claimLock is the advisory lock key of Claim ("otaport" + 1).
const claimLock = migrationLock + 1

// ErrClaimed is returned by Claim when another process has the database.
var ErrClaimed = errors.New("another otaserve serves this database")

// Claim takes the database for this process alone until Close, as bbolt's
// file lock does: an otaserve with the embedded broker runs every active
// campaign itself, so two of them on one database would each run them
// (replicas, with an external broker, share campaigns under a lease
// instead). It is a session advisory lock, so a process that dies lets go
// of it with its connection. Claim does nothing on bbolt, whose Open has
// the file's lock already.
//
// A process that has just stopped may still hold the lock for a moment:
// its server ends the session once it sees the connection closed. So Claim
// tries for claimWait, as bbolt's Open waits for the file's lock, before
// it says another otaserve has the database.
func (s *Store) Claim(ctx context.Context) error {
	p, ok := s.b.(*pgDB)
	if !ok {
		return nil
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("claim %s: %w", p.name, err)
	}
	deadline := time.Now().Add(claimWait)
	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(claimLock)).Scan(&got); err != nil {
			conn.Release()
			return fmt.Errorf("claim %s: %w", p.name, err)
		}
		if got {
			p.claim = conn
			return nil
		}
		if time.Now().After(deadline) {
			conn.Release()
			return fmt.Errorf("claim %s: %w: stop it first, or run every otaserve on the database with an external broker (--broker), which lets them share the work", p.name, ErrClaimed)
		}
		select {
		case <-ctx.Done():
			conn.Release()
			return fmt.Errorf("claim %s: %w", p.name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// claimWait is how long Claim waits for a lock another process holds.
const claimWait = 5 * time.Second

// OpenPostgres connects to the PostgreSQL database of dbURL
// (postgres://user:password@host:port/db?sslmode=...), brings its schema up
// to date under an advisory lock, and refuses a schema newer than this
// code knows.
func OpenPostgres(ctx context.Context, dbURL string) (*Store, error) {
	name := dbURL
	if u, err := url.Parse(dbURL); err == nil {
		name = u.Redacted()
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("open store %s (--db): %w: give postgres://user:password@host:port/database", name, err)
	}
	if !strings.Contains(dbURL, "pool_max_conns=") {
		// pgx's default is the number of CPUs, at least 4: one is Claim's
		// for good, and firmware downloads read a chunk per statement.
		cfg.MaxConns = defaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", name, err)
	}
	leasesCfg, blobsCfg := cfg.Copy(), cfg.Copy()
	leasesCfg.MaxConns = 2
	blobsCfg.MaxConns = max(cfg.MaxConns/2, 2)
	leases, err := pgxpool.NewWithConfig(ctx, leasesCfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", name, err)
	}
	blobs, err := pgxpool.NewWithConfig(ctx, blobsCfg)
	if err != nil {
		pool.Close()
		leases.Close()
		return nil, fmt.Errorf("open store %s: %w", name, err)
	}
	closeAll := func() { pool.Close(); leases.Close(); blobs.Close() }
	if err := pool.Ping(ctx); err != nil {
		closeAll()
		return nil, fmt.Errorf("open store %s: %w: check that PostgreSQL runs there and takes this user (its password in the URL, PGPASSWORD or ~/.pgpass)", name, err)
	}
	if err := migrate(ctx, pool); err != nil {
		closeAll()
		return nil, fmt.Errorf("open store %s: %w", name, err)
	}
	return newStore(&pgDB{pool: pool, leases: leases, blobs: blobs, name: name}), nil
}

// migration is one step of the schema.
type migration struct {
	version int
	name    string
	sql     string
}

// schemaSteps lists the embedded migrations in order.
func schemaSteps() ([]migration, error) {
	ents, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range ents {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: the name must be NNNN_what.sql", e.Name())
		}
		b, err := migrations.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	return out, nil
}

// migrate applies the migrations not yet applied, in one transaction that
// first takes the advisory lock: a second otaserve starting at the same time
// waits, then finds the schema up to date.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	steps, err := schemaSteps()
	if err != nil {
		return fmt.Errorf("read the embedded schema: %w", err)
	}
	latest := steps[len(steps)-1].version
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version integer PRIMARY KEY, name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
			return fmt.Errorf("read the schema version: %w", err)
		}
		if err := checkSchema(have, latest); err != nil {
			return err
		}
		for _, m := range steps {
			if m.version <= have {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("record migration %s: %w", m.name, err)
			}
		}
		return nil
	})
}

func (p *pgDB) update(fn func(txn) error) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	for attempt := 1; ; attempt++ {
		err := p.run(pgx.TxOptions{IsoLevel: pgx.Serializable}, fn)
		if err == nil || !retryable(err) || attempt == maxAttempts {
			return err
		}
		// Back off a little, at random, so that the processes that
		// conflicted do not meet again at once.
		time.Sleep(time.Duration(attempt) * time.Duration(1+rand.IntN(10)) * time.Millisecond)
	}
}

func (p *pgDB) view(fn func(txn) error) error {
	// Repeatable read is a snapshot; a read-only transaction at that
	// level never fails to serialize.
	return p.run(pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// run runs fn in one transaction. The first error of a statement is kept:
// after it PostgreSQL refuses every statement of the transaction, and fn
// might report one of those (or none) instead of the cause.
func (p *pgDB) run(opts pgx.TxOptions, fn func(txn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), txTimeout)
	defer cancel()
	t := &pgTx{ctx: ctx}
	err := pgx.BeginTxFunc(ctx, p.pool, opts, func(tx pgx.Tx) error {
		t.tx = tx
		if err := fn(t); err != nil || t.first != nil {
			return cmpErr(t.first, err)
		}
		return t.flush()
	})
	if t.first != nil && !errors.Is(err, t.first) {
		return errors.Join(t.first, err)
	}
	return err
}

// retryable reports whether a transaction failed only because another one
// conflicted with it, so that running it again may succeed.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	// serialization_failure, deadlock_detected
	return pe.Code == "40001" || pe.Code == "40P01"
}

func (p *pgDB) close() error {
	if p.claim != nil {
		// Closing the connection ends its session and the lock with it.
		_ = p.claim.Conn().Close(context.Background())
		p.claim.Release()
		p.claim = nil
	}
	p.pool.Close()
	p.leases.Close()
	p.blobs.Close()
	return nil
}

func (p *pgDB) describe() string { return p.name }

// pgTx is one transaction; first is its first failed statement.
//
// Writes are queued and sent together, in one round trip, before the next
// read and before the commit: a read then sees them, and a run of writes (a
// campaign's devices) costs one round trip instead of one each. A queued
// write that fails is reported by the read or the commit that sends it.
type pgTx struct {
	ctx     context.Context
	tx      pgx.Tx
	first   error
	pending pgx.Batch
	// cache holds what prefetch read, by table, kept up to date by this
	// transaction's own writes; nil until a prefetch.
	cache map[table]map[string]cached
}

// cached is one prefetched record: ok false when there is none.
type cached struct {
	v  []byte
	ok bool
}

// prefetch reads the records of names in one statement. Within a
// serializable transaction what it read stays what a get would read, but
// for this transaction's own writes, which put and del apply to the cache.
func (t *pgTx) prefetch(tb table, names []string) error {
	pt := tableOf(tb)
	if strings.Contains(pt.keys, ",") || len(names) == 0 {
		return nil // keyed by more than a name: gets read one by one
	}
	if err := t.flush(); err != nil {
		return err
	}
	if t.cache == nil {
		t.cache = map[table]map[string]cached{}
	}
	c := t.cache[tb]
	if c == nil {
		c = make(map[string]cached, len(names))
		t.cache[tb] = c
	}
	for _, n := range names {
		if _, ok := c[n]; !ok {
			c[n] = cached{} // none, unless the query finds it
		}
	}
	rows, err := t.tx.Query(t.ctx, "SELECT "+pt.keys+", "+pt.doc+" FROM "+pt.name+" WHERE "+pt.keys+" = ANY($1)", names)
	if err != nil {
		return t.note(fmt.Errorf("read %s: %w", pt.name, err))
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		var v []byte
		if err := rows.Scan(&n, &v); err != nil {
			return t.note(fmt.Errorf("read %s: %w", pt.name, err))
		}
		if v == nil {
			v = []byte{}
		}
		c[n] = cached{v: v, ok: true}
	}
	if err := rows.Err(); err != nil {
		return t.note(fmt.Errorf("read %s: %w", pt.name, err))
	}
	return nil
}

// fromCache returns what prefetch read of a record, or hit false when it
// did not read it.
func (t *pgTx) fromCache(tb table, k key) (c cached, hit bool) {
	if t.cache == nil || t.cache[tb] == nil {
		return cached{}, false
	}
	c, hit = t.cache[tb][k.name]
	return c, hit
}

// toCache applies a write to a prefetched table's cache.
func (t *pgTx) toCache(tb table, k key, c cached) {
	if t.cache != nil && t.cache[tb] != nil {
		t.cache[tb][k.name] = c
	}
}

// exec queues a write.
func (t *pgTx) exec(sql string, args ...any) {
	t.pending.Queue(sql, args...)
}

// flush sends the queued writes.
func (t *pgTx) flush() error {
	if t.first != nil {
		return t.first
	}
	if t.pending.Len() == 0 {
		return nil
	}
	b := t.pending
	t.pending = pgx.Batch{}
	if err := t.tx.SendBatch(t.ctx, &b).Close(); err != nil {
		return t.note(fmt.Errorf("write: %w", err))
	}
	return nil
}

func (t *pgTx) note(err error) error {
	if err != nil && t.first == nil {
		t.first = err
	}
	return err
}

// pgTable is how a table of records is laid out in SQL.
type pgTable struct {
	name string
	keys string // the key columns, in order
	doc  string // the record's column
}

func tableOf(t table) pgTable {
	switch t {
	case tableDevices:
		return pgTable{"devices", "key", "doc"}
	case tableImages:
		return pgTable{"images", "id", "doc"}
	case tableCampaigns:
		return pgTable{"campaigns", "id", "doc"}
	case tableProgress:
		return pgTable{"progress", "campaign_id, device_key", "doc"}
	case tableTokens:
		return pgTable{"tokens", "hash", "doc"}
	case tableSettings:
		return pgTable{"settings", "key", "value"}
	case tableSessions:
		return pgTable{"dashboard_sessions", "hash", "doc"}
	}
	panic(fmt.Sprintf("store: unknown table %d", t))
}

// args are the values of a table's key columns for k.
func args(t table, k key) []any {
	switch t {
	case tableImages, tableCampaigns:
		return []any{int64(k.id)}
	case tableProgress:
		return []any{int64(k.id), k.name}
	}
	return []any{k.name}
}

// where is the condition on a table's key columns, $1...
func (pt pgTable) where() string {
	cols := strings.Split(pt.keys, ", ")
	for i, c := range cols {
		cols[i] = fmt.Sprintf("%s = $%d", c, i+1)
	}
	return strings.Join(cols, " AND ")
}

func (t *pgTx) get(tb table, k key) ([]byte, error) {
	if c, hit := t.fromCache(tb, k); hit {
		return c.v, nil
	}
	if err := t.flush(); err != nil {
		return nil, err
	}
	pt := tableOf(tb)
	var v []byte
	err := t.tx.QueryRow(t.ctx, "SELECT "+pt.doc+" FROM "+pt.name+" WHERE "+pt.where(), args(tb, k)...).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, t.note(fmt.Errorf("read %s: %w", pt.name, err))
	}
	if v == nil {
		v = []byte{} // an empty setting exists
	}
	return v, nil
}

func (t *pgTx) put(tb table, k key, v []byte) error {
	pt := tableOf(tb)
	a := args(tb, k)
	val := string(v)
	if pt.doc == "doc" {
		val = jsonbSafe(v)
	}
	t.toCache(tb, k, cached{v: []byte(val), ok: true})
	ph := make([]string, len(a)+1)
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d", i+1)
	}
	q := "INSERT INTO " + pt.name + " (" + pt.keys + ", " + pt.doc + ") VALUES (" + strings.Join(ph, ", ") + ")" +
		" ON CONFLICT (" + pt.keys + ") DO UPDATE SET " + pt.doc + " = EXCLUDED." + pt.doc
	t.exec(q, append(a, val)...)
	return nil
}

func (t *pgTx) del(tb table, k key) error {
	pt := tableOf(tb)
	t.toCache(tb, k, cached{})
	t.exec("DELETE FROM "+pt.name+" WHERE "+pt.where(), args(tb, k)...)
	return nil
}

func (t *pgTx) scan(tb table, within uint64, fn func(v []byte) error) error {
	if err := t.flush(); err != nil {
		return err
	}
	pt := tableOf(tb)
	q, a := "SELECT "+pt.doc+" FROM "+pt.name+" ORDER BY "+pt.keys, []any(nil)
	if tb == tableProgress {
		q, a = "SELECT doc FROM progress WHERE campaign_id = $1 ORDER BY device_key", []any{int64(within)}
	}
	rows, err := t.tx.Query(t.ctx, q, a...)
	if err != nil {
		return t.note(fmt.Errorf("read %s: %w", pt.name, err))
	}
	defer rows.Close()
	for rows.Next() {
		var v []byte
		if err := rows.Scan(&v); err != nil {
			return t.note(fmt.Errorf("read %s: %w", pt.name, err))
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return t.note(fmt.Errorf("read %s: %w", pt.name, err))
	}
	return nil
}

func (t *pgTx) nextID(tb table) (uint64, error) {
	if err := t.flush(); err != nil {
		return 0, err
	}
	pt := tableOf(tb)
	var id int64
	if err := t.tx.QueryRow(t.ctx, "SELECT nextval('"+pt.name+"_id_seq')").Scan(&id); err != nil {
		return 0, t.note(fmt.Errorf("next %s id: %w", pt.name, err))
	}
	return uint64(id), nil
}

// notify queues a NOTIFY, which PostgreSQL delivers at the commit.
func (t *pgTx) notify(channel string) { t.exec("SELECT pg_notify($1, '')", channel) }

func (t *pgTx) dropProgress(campaign uint64) error {
	t.exec("DELETE FROM progress WHERE campaign_id = $1", int64(campaign))
	return nil
}

// jsonbSafe returns a JSON document jsonb takes. jsonb refuses the escape
// \u0000 (its text cannot hold NUL), which encoding/json writes for a NUL in
// a string: a device report with one would otherwise fail every write that
// carries it. It becomes U+FFFD, as encoding/json treats invalid UTF-8. An
// escaped backslash followed by "u0000" is text, and stays.
func jsonbSafe(v []byte) string {
	s := string(v)
	if !strings.Contains(s, `\u0000`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if strings.HasPrefix(s[i:], `\u0000`) {
			b.WriteString(`\ufffd`)
			i += len(`\u0000`) - 1
			continue
		}
		// Another escape: copy it whole, so its second byte (perhaps a
		// backslash) is not read as the start of one.
		b.WriteString(s[i : i+2])
		i++
	}
	return b.String()
}
