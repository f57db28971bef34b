package store

import (
	"fmt"
	"time"
)

// Session is one of the dashboard's sign-in links not yet used, or a
// session one opened. It is keyed by Hash, the hex SHA-256 of its secret
// (the link's, the cookie's), so that the store never holds what signs in;
// in the store rather than in a process's memory, a link made on one
// replica opens a session on another, and the session works on every
// replica behind the load balancer.
type Session struct {
	Hash string `json:"hash"`
	// Link marks a sign-in link, spent by TakeLink; otherwise a session.
	Link bool `json:"link,omitzero"`
	// TokenHash names the API token whose holder made the link: the
	// session has its scope and ends with it (fleet/dashboard checks).
	TokenHash string `json:"token_hash"`
	// CSRF is the session's form token, which every POST of a page must
	// carry; it is worth nothing without the cookie.
	CSRF    string    `json:"csrf,omitzero"`
	Expires time.Time `json:"expires"`
}

// PutSession stores a link or a session, and forgets those expired at now.
func (s *Store) PutSession(se Session, now time.Time) error {
	err := s.Write(func(w *Writer) error {
		old, err := all[Session](w.tx, tableSessions, 0)
		if err != nil {
			return err
		}
		for _, o := range old {
			if !now.Before(o.Expires) {
				if err := w.tx.del(tableSessions, nameOf(o.Hash)); err != nil {
					return err
				}
			}
		}
		return put(w.tx, tableSessions, nameOf(se.Hash), se)
	})
	if err != nil {
		return fmt.Errorf("store a dashboard session: %w", err)
	}
	return nil
}

// TakeLink returns the sign-in link of hash and deletes it in the same
// transaction, so that it opens one session at most, on whichever replica;
// ErrNotFound when there is none (never made, or spent).
func (s *Store) TakeLink(hash string) (Session, error) {
	var se Session
	err := s.Write(func(w *Writer) error {
		if err := get(w.tx, tableSessions, nameOf(hash), &se); err != nil {
			return err
		}
		if !se.Link {
			return ErrNotFound
		}
		return w.tx.del(tableSessions, nameOf(hash))
	})
	if err != nil {
		return Session{}, fmt.Errorf("dashboard sign-in link: %w", err)
	}
	return se, nil
}

// Session returns the session of hash; ErrNotFound when there is none (a
// link is not one).
func (s *Store) Session(hash string) (Session, error) {
	var se Session
	err := s.read(func(tx txn) error { return get(tx, tableSessions, nameOf(hash), &se) })
	if err == nil && se.Link {
		err = ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("dashboard session: %w", err)
	}
	return se, nil
}

// DeleteSession ends the session of hash; ending none is not an error.
func (s *Store) DeleteSession(hash string) error {
	err := s.Write(func(w *Writer) error { return w.tx.del(tableSessions, nameOf(hash)) })
	if err != nil {
		return fmt.Errorf("end a dashboard session: %w", err)
	}
	return nil
}
