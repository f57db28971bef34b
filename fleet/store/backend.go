package store

import "fmt"

// table is one kind of record. Each backend maps it to its own storage: a
// bbolt bucket, a PostgreSQL table.
type table int

const (
	tableDevices table = iota
	tableImages
	tableCampaigns
	// tableProgress is keyed by campaign and device: key.id is the
	// campaign, key.name the device key.
	tableProgress
	tableTokens
	// tableSettings holds plain strings, not JSON documents.
	tableSettings
	// tableSessions holds the dashboard's sign-in links and sessions.
	tableSessions
)

// key names one record: by number (images, campaigns), by name (devices,
// tokens, settings) or by both (progress: campaign id, device key).
type key struct {
	id   uint64
	name string
}

func idOf(id uint64) key                     { return key{id: id} }
func nameOf(name string) key                 { return key{name: name} }
func progressOf(c uint64, device string) key { return key{id: c, name: device} }

// backend is where the records live. The record rules (what a key is, what
// must exist first, what a change touches) are the Store's and the
// Writer's, written once above this interface; a backend only keeps bytes
// under keys, in transactions.
type backend interface {
	// update runs fn in one read-write transaction and commits it when fn
	// returns nil. A backend may run fn more than once (PostgreSQL, after a
	// serialization failure), each time on a fresh transaction.
	update(fn func(txn) error) error
	// view runs fn in one read-only transaction that sees one snapshot.
	view(fn func(txn) error) error
	close() error
	// describe names the database for messages: a file path, or a URL
	// without its password.
	describe() string
}

// txn is one transaction of a backend.
type txn interface {
	// get returns the record's bytes, nil when there is none.
	get(t table, k key) ([]byte, error)
	// put creates or replaces a record.
	put(t table, k key, v []byte) error
	// del removes a record; removing none is not an error.
	del(t table, k key) error
	// scan calls fn with every record of t in key order (bytewise for
	// names, numeric for ids); for tableProgress, those of campaign
	// within only.
	scan(t table, within uint64, fn func(v []byte) error) error
	// nextID returns a number never returned before for t (images,
	// campaigns). It may skip numbers; it never reuses one.
	nextID(t table) (uint64, error)
	// dropProgress removes every progress record of a campaign.
	dropProgress(campaign uint64) error
	// prefetch reads the records of keys (of a table keyed by name) at
	// once, so that the gets that follow cost no round trip each; a
	// backend whose reads are local does nothing.
	prefetch(t table, names []string) error
	// notify tells the processes listening on channel (Store.Listen) once
	// the transaction commits; a backend only one process opens does
	// nothing.
	notify(channel string)
}

// schemaError is the error of opening a database written by a newer
// otaserve.
type schemaError struct{ have, known int }

func (e *schemaError) Error() string {
	return fmt.Sprintf("schema version %d is newer than this otaserve understands (%d): upgrade otaserve", e.have, e.known)
}
