package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func exec(t *testing.T, db, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
}

// TestOpenPostgres_RefusesNewerSchema: a database a newer otaserve
// migrated is refused, saying to upgrade, as a newer bbolt file is.
func TestOpenPostgres_RefusesNewerSchema(t *testing.T) {
	db := pg.DB(t)
	open(t, db).Close()
	exec(t, db, `INSERT INTO schema_migrations (version, name) VALUES (99, '0099_future.sql')`)
	s, err := OpenPostgres(context.Background(), db)
	if err == nil {
		s.Close()
		t.Fatal("opened a database of schema 99")
	}
	var se *schemaError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "schema version 99 is newer than this otaserve understands") ||
		!strings.Contains(err.Error(), "upgrade otaserve") {
		t.Errorf("error = %v", err)
	}
}

// TestOpenPostgres_StartedTogetherMigrateOnce: replicas starting at once on
// an empty database all open it, and each migration is applied once (the
// advisory lock; without it they race on CREATE TABLE).
func TestOpenPostgres_StartedTogetherMigrateOnce(t *testing.T) {
	db := pg.DB(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := OpenPostgres(context.Background(), db)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	steps, err := schemaSteps()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, latest int
	if err := conn.QueryRow(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&rows, &latest); err != nil {
		t.Fatal(err)
	}
	if rows != len(steps) || latest != steps[len(steps)-1].version {
		t.Errorf("schema_migrations: %d rows up to %d, want %d up to %d", rows, latest, len(steps), steps[len(steps)-1].version)
	}
}

// TestWrite_RetriesAConflict: a write that conflicts with another
// process's committed write is run again on the new state, so neither
// change is lost. Two Stores on one database stand for two processes.
func TestWrite_RetriesAConflict(t *testing.T) {
	db := pg.DB(t)
	a, b := open(t, db), open(t, db)
	defer a.Close()
	defer b.Close()
	if err := a.AddDevice(Device{ProductKey: "pk", DeviceName: "d"}); err != nil {
		t.Fatal(err)
	}
	inc := func(d *Device) error { d.OrderCounter++; return nil }
	runs := 0
	err := a.Write(func(w *Writer) error {
		runs++
		if _, err := w.Tokens(); err != nil { // the transaction's snapshot starts here
			return err
		}
		if runs == 1 {
			// The other process commits first.
			if err := b.UpdateDevice("pk", "d", inc); err != nil {
				t.Errorf("the other process's write: %v", err)
			}
		}
		return w.UpdateDevice("pk", "d", inc)
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := a.Device("pk", "d")
	if err != nil {
		t.Fatal(err)
	}
	if d.OrderCounter != 2 || runs != 2 {
		t.Errorf("order counter %d after %d runs, want 2 after 2", d.OrderCounter, runs)
	}
}

// TestPut_NULInAString: a NUL in a string (a device's report may carry
// one) is stored on both backends; jsonb cannot hold it, so PostgreSQL
// keeps U+FFFD in its place. The text "\u0000" is not a NUL and stays.
func TestPut_NULInAString(t *testing.T) {
	backends(t, func(t *testing.T, db string) {
		s := open(t, db)
		defer s.Close()
		d := Device{ProductKey: "pk", DeviceName: "d", LastError: "a\x00b", Group: `c\u0000d`, Added: time.Unix(0, 0).UTC()}
		if err := s.AddDevice(d); err != nil {
			t.Fatal(err)
		}
		got, err := s.Device("pk", "d")
		if err != nil {
			t.Fatal(err)
		}
		want := d
		if IsPostgresURL(db) {
			want.LastError = "a\ufffdb"
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("read back %+v, want %+v", got, want)
		}
	})
}

func TestJSONBSafe(t *testing.T) {
	for in, want := range map[string]string{
		`"plain"`:              `"plain"`,
		`"a\u0000b"`:           `"a\ufffdb"`,
		`"a\\u0000b"`:          `"a\\u0000b"`,
		`"a\\\u0000b"`:         `"a\\\ufffdb"`,
		`["\u0000","\\u0000"]`: `["\ufffd","\\u0000"]`,
	} {
		if got := jsonbSafe([]byte(in)); got != want {
			t.Errorf("jsonbSafe(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestWrite_QueuedWriteFails: writes are sent in batches, before the next
// read or at the commit; one that fails there still fails the Write, and
// nothing of the transaction is kept.
func TestWrite_QueuedWriteFails(t *testing.T) {
	db := pg.DB(t)
	s := open(t, db)
	defer s.Close()
	for name, then := range map[string]func(w *Writer) error{
		"at the commit":       func(*Writer) error { return nil },
		"at the next read":    func(w *Writer) error { _, err := w.Tokens(); return err },
		"read ignoring error": func(w *Writer) error { _, _ = w.Tokens(); return nil },
	} {
		err := s.Write(func(w *Writer) error {
			if err := w.AddToken(Token{Name: name, Hash: name}); err != nil {
				return err
			}
			// Progress of a campaign that does not exist: refused by
			// the foreign key, when sent.
			if err := put(w.tx, tableProgress, progressOf(999, "pk/d"), Progress{}); err != nil {
				return err
			}
			return then(w)
		})
		if err == nil || !strings.Contains(err.Error(), "progress") {
			t.Errorf("%s: Write = %v, want the foreign key's refusal", name, err)
		}
		if _, err := s.TokenByHash(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: the token of a failed Write: %v", name, err)
		}
	}
}

// TestClaim_WaitsForAProcessThatIsStopping: the database's server ends a
// stopped otaserve's session, and with it its claim, a moment after the
// process is gone, so an otaserve restarted at once must wait for the
// claim rather than be told another one serves the database. One still
// held past the wait is refused, naming the fix.
func TestClaim_WaitsForAProcessThatIsStopping(t *testing.T) {
	ctx := context.Background()
	db := pg.DB(t)
	first := open(t, db)
	if err := first.Claim(ctx); err != nil {
		t.Fatal(err)
	}
	second := open(t, db)
	defer second.Close()
	claimed := make(chan error, 1)
	go func() { claimed <- second.Claim(ctx) }()
	// The second is waiting; the first now stops.
	time.Sleep(300 * time.Millisecond)
	first.Close()
	if err := <-claimed; err != nil {
		t.Fatalf("claim after the first otaserve stopped: %v", err)
	}

	third := open(t, db)
	defer third.Close()
	if err := third.Claim(ctx); !errors.Is(err, ErrClaimed) || !strings.Contains(err.Error(), "--broker") {
		t.Errorf("claim of a database another otaserve serves: %v", err)
	}
}
