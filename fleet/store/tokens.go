package store

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Token is one API token. The store never sees the secret: Hash is the hex
// SHA-256 of it (fleet/api makes and checks both), and the record is keyed
// by that hash, so checking a request is one lookup.
type Token struct {
	Name string `json:"name"`
	// Scope is what the token may do: read, operator or admin (fleet/api
	// says which route needs which).
	Scope   string    `json:"scope"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
	// Expires is when the token stops working; zero for never.
	Expires time.Time `json:"expires,omitzero"`
	// LastUsed is when a request last carried it, to the minute or so
	// (fleet/api throttles the writes).
	LastUsed time.Time `json:"last_used,omitzero"`
	// Revoked is when an admin revoked it; the record stays so that its
	// bearer is told so, and the list shows it.
	Revoked time.Time `json:"revoked,omitzero"`
}

// Live reports whether the token works at time now: not revoked, not
// expired.
func (t Token) Live(now time.Time) bool {
	return t.Revoked.IsZero() && (t.Expires.IsZero() || now.Before(t.Expires))
}

// AddToken stores a new token within the writer's transaction. A name is
// unique among the tokens live at t.Created (ErrExists); a revoked or
// expired token's name may be given again, as a rotation does.
func (w *Writer) AddToken(t Token) error {
	err := func() error {
		if ok, err := exists(w.tx, tableTokens, nameOf(t.Hash)); ok || err != nil {
			return cmpErr(err, ErrExists)
		}
		ts, err := all[Token](w.tx, tableTokens, 0)
		if err != nil {
			return err
		}
		for _, o := range ts {
			if o.Name == t.Name && o.Live(t.Created) {
				return fmt.Errorf("a live token has that name (%w)", ErrExists)
			}
		}
		return put(w.tx, tableTokens, nameOf(t.Hash), t)
	}()
	if err != nil {
		return fmt.Errorf("add token %q: %w", t.Name, err)
	}
	return nil
}

// AddToken stores a new token (see Writer.AddToken).
func (s *Store) AddToken(t Token) error {
	return s.Write(func(w *Writer) error { return w.AddToken(t) })
}

// TokenByHash returns the token whose secret hashes to hash; ErrNotFound
// if none.
func (s *Store) TokenByHash(hash string) (Token, error) {
	var t Token
	err := s.read(func(tx txn) error {
		return get(tx, tableTokens, nameOf(hash), &t)
	})
	if err != nil {
		return Token{}, fmt.Errorf("token: %w", err)
	}
	return t, nil
}

// Tokens lists every token within the writer's transaction.
func (w *Writer) Tokens() ([]Token, error) { return all[Token](w.tx, tableTokens, 0) }

// Tokens lists every token, revoked and expired ones included, oldest
// first (by name among those made at once).
func (s *Store) Tokens() ([]Token, error) {
	var ts []Token
	err := s.read(func(tx txn) error {
		var err error
		ts, err = all[Token](tx, tableTokens, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	slices.SortFunc(ts, func(a, b Token) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return ts, nil
}

// RevokeToken revokes, at time at, the token of that name live then, and
// returns it; ErrNotFound when no live token has the name.
func (w *Writer) RevokeToken(name string, at time.Time) (Token, error) {
	ts, err := all[Token](w.tx, tableTokens, 0)
	if err != nil {
		return Token{}, fmt.Errorf("revoke token %q: %w", name, err)
	}
	for _, t := range ts {
		if t.Name == name && t.Live(at) {
			t.Revoked = at
			if err := put(w.tx, tableTokens, nameOf(t.Hash), t); err != nil {
				return Token{}, fmt.Errorf("revoke token %q: %w", name, err)
			}
			return t, nil
		}
	}
	return Token{}, fmt.Errorf("revoke token %q: no live token of that name: %w", name, ErrNotFound)
}

// RevokeToken revokes a live token by name (see Writer.RevokeToken).
func (s *Store) RevokeToken(name string, at time.Time) (Token, error) {
	var t Token
	err := s.Write(func(w *Writer) error {
		var err error
		t, err = w.RevokeToken(name, at)
		return err
	})
	return t, err
}

// TouchToken records that the token of hash was used at time at.
func (s *Store) TouchToken(hash string, at time.Time) error {
	err := s.Write(func(w *Writer) error {
		var t Token
		if err := get(w.tx, tableTokens, nameOf(hash), &t); err != nil {
			return err
		}
		t.LastUsed = at
		return put(w.tx, tableTokens, nameOf(hash), t)
	})
	if err != nil {
		return fmt.Errorf("record the use of a token: %w", err)
	}
	return nil
}

// Setting returns a stored setting within the writer's transaction.
func (w *Writer) Setting(key string) (string, bool) {
	v, err := w.tx.get(tableSettings, nameOf(key))
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("read setting %s: %w", key, err)
	}
	return string(v), v != nil
}

// DeleteSetting removes a setting within the writer's transaction.
func (w *Writer) DeleteSetting(key string) error {
	if err := w.tx.del(tableSettings, nameOf(key)); err != nil {
		return fmt.Errorf("delete setting %s: %w", key, err)
	}
	return nil
}
