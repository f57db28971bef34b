// Package store is the fleet's persistent state: the device registry, the
// firmware image catalog, campaigns with their per-device progress, the API
// tokens (hashed) and a few settings. It is one bbolt file (the embedded
// default) or a PostgreSQL database that several otaserve processes share,
// written in transactions, so a restart or a crash loses nothing that was
// acknowledged. The record rules are written once, over a small backend
// interface (backend.go) that each database implements.
//
// It is not where campaign rules live (fleet/campaign) nor where firmware
// bytes are kept (fleet/firmware keeps them on disk; an Image here only
// records their digests; with PostgreSQL the bytes may live in this
// package's Blobs).
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// SchemaVersion is the version of the layout this code writes (bbolt's
// buckets, PostgreSQL's tables). A database written by a newer otaserve is
// refused rather than misread.
const SchemaVersion = 1

var (
	// ErrNotFound is returned when a device, image or campaign does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists is returned when adding a record whose key is already taken.
	ErrExists = errors.New("already exists")
)

// Store is an open fleet database, bbolt (Open) or PostgreSQL
// (OpenPostgres). It is safe for concurrent use.
type Store struct {
	b backend
}

func newStore(b backend) *Store { return &Store{b: b} }

// Writer makes changes inside one transaction of Write.
type Writer struct {
	tx txn
	// err is the first failure of a method that returns none (Setting);
	// Write returns it, so the transaction is not committed.
	err error
}

// Write runs fn in one read-write transaction and commits it when fn returns
// nil; an error from fn discards every change. Each commit is a write to
// disk and an fsync, so a caller with many small changes (the campaign
// service, one per device message) groups them in one Write: the changes
// are then durable together, or not at all.
//
// On PostgreSQL fn may run more than once: a transaction that conflicts
// with another process's is rolled back and fn runs again on the new state.
// So fn must leave nothing behind outside the Writer but what a later run
// overwrites.
func (s *Store) Write(fn func(*Writer) error) error {
	return s.b.update(func(tx txn) error {
		w := &Writer{tx: tx}
		if err := fn(w); err != nil {
			return err
		}
		return w.err
	})
}

// Close closes the database.
func (s *Store) Close() error { return s.b.close() }

// Path names the database for messages: the bbolt file's path, or the
// PostgreSQL URL without its password.
func (s *Store) Path() string { return s.b.describe() }

// Setting returns a stored setting and whether it exists.
func (s *Store) Setting(k string) (string, bool, error) {
	var v []byte
	err := s.b.view(func(tx txn) (err error) {
		v, err = tx.get(tableSettings, nameOf(k))
		return err
	})
	if err != nil {
		return "", false, fmt.Errorf("read setting %s: %w", k, err)
	}
	return string(v), v != nil, nil
}

// SetSetting stores a setting.
func (s *Store) SetSetting(k, value string) error {
	err := s.b.update(func(tx txn) error { return tx.put(tableSettings, nameOf(k), []byte(value)) })
	if err != nil {
		return fmt.Errorf("write setting %s: %w", k, err)
	}
	return nil
}

func put(tx txn, t table, k key, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.put(t, k, data)
}

func get(tx txn, t table, k key, v any) error {
	data, err := tx.get(t, k)
	if err != nil {
		return err
	}
	if data == nil {
		return ErrNotFound
	}
	return json.Unmarshal(data, v)
}

func exists(tx txn, t table, k key) (bool, error) {
	data, err := tx.get(t, k)
	return data != nil, err
}

func all[T any](tx txn, t table, within uint64) ([]T, error) {
	var out []T
	err := tx.scan(t, within, func(v []byte) error {
		var r T
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode %.40s: %w", v, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// read runs fn in one read-only transaction.
func (s *Store) read(fn func(txn) error) error { return s.b.view(fn) }

// sortDevices orders devices by key so listings are stable.
func sortDevices(ds []Device) {
	sort.Slice(ds, func(i, j int) bool { return ds[i].Key() < ds[j].Key() })
}

// cmpErr is err when there is one, else the outcome want: a lookup that
// failed is reported as itself, not as the answer it could not give.
func cmpErr(err, want error) error {
	if err != nil {
		return err
	}
	return want
}
