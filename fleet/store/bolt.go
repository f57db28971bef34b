package store

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket names of the bbolt file. Progress holds one nested bucket per
// campaign, keyed by the campaign's 8-byte id, so a campaign's devices are
// read in one cursor pass. Settings live in meta under "setting/".
var (
	bucketMeta      = []byte("meta")
	bucketDevices   = []byte("devices")
	bucketImages    = []byte("images")
	bucketCampaigns = []byte("campaigns")
	bucketProgress  = []byte("progress")
	bucketTokens    = []byte("tokens")
	bucketSessions  = []byte("sessions")
	keySchema       = []byte("schema")
)

const settingPrefix = "setting/"

// boltDB is the embedded backend: one bbolt file.
type boltDB struct {
	db *bolt.DB
}

// Open opens the bbolt database file at path, creating it (and its
// directory) when missing. It refuses a file whose schema is newer than
// this code knows.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// The timeout turns "another otaserve holds the lock" into an error
	// instead of a hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s (is another otaserve running on this data directory?): %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchema); v != nil {
			n, err := strconv.Atoi(string(v))
			if err != nil {
				return fmt.Errorf("schema version %q is not a number", v)
			}
			if err := checkSchema(n, SchemaVersion); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketDevices, bucketImages, bucketCampaigns, bucketProgress, bucketTokens, bucketSessions} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return newStore(boltDB{db: db}), nil
}

// checkSchema refuses a database whose schema version n is newer than
// known, the one this code writes, with the fix.
func checkSchema(n, known int) error {
	if n > known {
		return &schemaError{have: n, known: known}
	}
	return nil
}

func (b boltDB) update(fn func(txn) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b boltDB) view(fn func(txn) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b boltDB) close() error     { return b.db.Close() }
func (b boltDB) describe() string { return b.db.Path() }

type boltTx struct{ tx *bolt.Tx }

// prefetch does nothing: bbolt reads from memory-mapped pages.
func (boltTx) prefetch(table, []string) error { return nil }

// notify does nothing: only one process opens a bbolt file.
func (boltTx) notify(string) {}

// bucket returns the bucket of t and the key of k in it; for progress, the
// campaign's nested bucket, nil when it has none (create: made).
func (b boltTx) bucket(t table, k key, create bool) (*bolt.Bucket, []byte, error) {
	switch t {
	case tableDevices:
		return b.tx.Bucket(bucketDevices), []byte(k.name), nil
	case tableImages:
		return b.tx.Bucket(bucketImages), idKey(k.id), nil
	case tableCampaigns:
		return b.tx.Bucket(bucketCampaigns), idKey(k.id), nil
	case tableTokens:
		return b.tx.Bucket(bucketTokens), []byte(k.name), nil
	case tableSessions:
		return b.tx.Bucket(bucketSessions), []byte(k.name), nil
	case tableSettings:
		return b.tx.Bucket(bucketMeta), []byte(settingPrefix + k.name), nil
	case tableProgress:
		p := b.tx.Bucket(bucketProgress)
		if create {
			nb, err := p.CreateBucketIfNotExists(idKey(k.id))
			return nb, []byte(k.name), err
		}
		return p.Bucket(idKey(k.id)), []byte(k.name), nil
	}
	panic(fmt.Sprintf("store: unknown table %d", t))
}

func (b boltTx) get(t table, k key) ([]byte, error) {
	bk, kb, err := b.bucket(t, k, false)
	if err != nil || bk == nil {
		return nil, err
	}
	if v := bk.Get(kb); v != nil {
		// bbolt's bytes are valid only inside the transaction; the copy
		// of an empty value is not nil, which would read as no record.
		return append(make([]byte, 0, len(v)), v...), nil
	}
	return nil, nil
}

func (b boltTx) put(t table, k key, v []byte) error {
	bk, kb, err := b.bucket(t, k, true)
	if err != nil {
		return err
	}
	return bk.Put(kb, v)
}

func (b boltTx) del(t table, k key) error {
	bk, kb, err := b.bucket(t, k, false)
	if err != nil || bk == nil {
		return err
	}
	return bk.Delete(kb)
}

func (b boltTx) scan(t table, within uint64, fn func(v []byte) error) error {
	bk, _, err := b.bucket(t, key{id: within}, false)
	if err != nil || bk == nil {
		return err
	}
	return bk.ForEach(func(k, v []byte) error {
		if v == nil { // a nested bucket
			return nil
		}
		return fn(v)
	})
}

func (b boltTx) nextID(t table) (uint64, error) {
	bk, _, err := b.bucket(t, key{}, false)
	if err != nil {
		return 0, err
	}
	return bk.NextSequence()
}

func (b boltTx) dropProgress(campaign uint64) error {
	p := b.tx.Bucket(bucketProgress)
	if p.Bucket(idKey(campaign)) == nil {
		return nil
	}
	return p.DeleteBucket(idKey(campaign))
}

func idKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}
