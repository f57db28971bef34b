// Package store is the fleet's persistent state: the device registry, the
// firmware image catalog, campaigns with their per-device progress, the API
// tokens (hashed) and a few settings. It is one bbolt file, written in
// transactions, so a restart or a crash loses nothing that was acknowledged.
//
// It is not where campaign rules live (fleet/campaign) nor where firmware
// bytes are kept (fleet/firmware keeps them on disk; an Image here only
// records their path and digests).
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the version of the bucket layout this code writes. A file
// written by a newer otaserve is refused rather than misread.
const SchemaVersion = 1

var (
	// ErrNotFound is returned when a device, image or campaign does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists is returned when adding a record whose key is already taken.
	ErrExists = errors.New("already exists")
)

// Bucket names. Progress holds one nested bucket per campaign, keyed by the
// campaign's 8-byte id, so a campaign's devices are read in one cursor pass.
var (
	bucketMeta      = []byte("meta")
	bucketDevices   = []byte("devices")
	bucketImages    = []byte("images")
	bucketCampaigns = []byte("campaigns")
	bucketProgress  = []byte("progress")
	bucketTokens    = []byte("tokens")
	keySchema       = []byte("schema")
)

// Store is an open fleet database. It is safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// Open opens the database file at path, creating it (and its directory) when
// missing. It refuses a file whose schema is newer than this code knows.
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
			if n > SchemaVersion {
				return fmt.Errorf("schema version %d is newer than this otaserve understands (%d): upgrade otaserve", n, SchemaVersion)
			}
		}
		for _, b := range [][]byte{bucketDevices, bucketImages, bucketCampaigns, bucketProgress, bucketTokens} {
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
	return &Store{db: db}, nil
}

// Writer makes changes inside one transaction of Write.
type Writer struct {
	tx *bolt.Tx
}

// Write runs fn in one read-write transaction and commits it when fn returns
// nil; an error from fn discards every change. Each commit is a write to
// disk and an fsync, so a caller with many small changes (the campaign
// service, one per device message) groups them in one Write: the changes
// are then durable together, or not at all.
func (s *Store) Write(fn func(*Writer) error) error {
	return s.db.Update(func(tx *bolt.Tx) error { return fn(&Writer{tx: tx}) })
}

// Close closes the database file.
func (s *Store) Close() error { return s.db.Close() }

// Path is the database file's path.
func (s *Store) Path() string { return s.db.Path() }

// Setting returns a stored setting and whether it exists.
func (s *Store) Setting(key string) (string, bool, error) {
	var v []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get([]byte("setting/" + key)); b != nil {
			v = append([]byte(nil), b...)
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("read setting %s: %w", key, err)
	}
	return string(v), v != nil, nil
}

// SetSetting stores a setting.
func (s *Store) SetSetting(key, value string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("setting/"+key), []byte(value))
	})
	if err != nil {
		return fmt.Errorf("write setting %s: %w", key, err)
	}
	return nil
}

func idKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

func put(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func get(b *bolt.Bucket, key []byte, v any) error {
	data := b.Get(key)
	if data == nil {
		return ErrNotFound
	}
	return json.Unmarshal(data, v)
}

func all[T any](b *bolt.Bucket) ([]T, error) {
	var out []T
	err := b.ForEach(func(k, v []byte) error {
		if v == nil { // nested bucket
			return nil
		}
		var t T
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("decode %q: %w", k, err)
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// sortDevices orders devices by key so listings are stable.
func sortDevices(ds []Device) {
	sort.Slice(ds, func(i, j int) bool { return ds[i].Key() < ds[j].Key() })
}
