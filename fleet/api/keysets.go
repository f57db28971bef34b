package api

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/otaport/otaport/core/keyset"
)

// KeySets is what the API needs of the fleet's key sets (*keysets.Service).
type KeySets interface {
	Push(raw []byte) (*keyset.Set, error)
	Sets() []*keyset.Set
	Keys() ([]crypto.PublicKey, error)
}

// KeySet is one key set of the chain as the API shows it: keys by their
// hash (imgtool getpubhash; otaimg getpub --hash), never their bytes.
type KeySet struct {
	Version   uint64    `json:"version"`
	Expires   time.Time `json:"expires,omitzero"`
	Threshold int       `json:"threshold"`
	Roots     []string  `json:"roots"`
	ImageKeys []string  `json:"image_keys"`
	Revoked   []string  `json:"revoked,omitempty"`
}

func toKeySet(s *keyset.Set) KeySet {
	out := KeySet{Version: s.Version, Expires: s.Expires, Threshold: s.Threshold, Roots: keyIDs(s.Roots), ImageKeys: keyIDs(s.ImageKeys)}
	for _, r := range s.Revoked {
		out.Revoked = append(out.Revoked, fmt.Sprintf("%x", r[:8])) // as keyset.KeyID names keys
	}
	return out
}

func keyIDs(keys []crypto.PublicKey) []string {
	out := []string{}
	for _, k := range keys {
		out = append(out, keyset.KeyID(k))
	}
	return out
}

func (h *handler) listKeySets(w http.ResponseWriter, r *http.Request) {
	out := []KeySet{}
	if h.cfg.KeySets != nil {
		for _, s := range h.cfg.KeySets.Sets() {
			out = append(out, toKeySet(s))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) pushKeySet(w http.ResponseWriter, r *http.Request) {
	if h.cfg.KeySets == nil {
		writeError(w, http.StatusNotImplemented, errors.New("this server keeps no key sets"))
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, keyset.MaxSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("read the key set: %w", err))
		return
	}
	if len(raw) > keyset.MaxSize {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("a key set of more than %d bytes", keyset.MaxSize))
		return
	}
	s, err := h.cfg.KeySets.Push(raw)
	if err != nil {
		status := http.StatusInternalServerError // the database, not the set
		if errors.Is(err, keyset.ErrRefused) {
			status, err = http.StatusUnprocessableEntity, fmt.Errorf("%w (otaimg keyset sign makes a set; each must be signed by the roots of the one before)", err)
		}
		writeError(w, status, err)
		return
	}
	h.cfg.Logger.Info("key set pushed", "version", s.Version, "image_keys", len(s.ImageKeys), "revoked", len(s.Revoked))
	if h.cfg.PublishKeySets != nil {
		if err := h.cfg.PublishKeySets(r.Context()); err != nil {
			// Kept: the statement tick sends it again.
			h.cfg.Logger.Warn("key sets not sent yet", "err", err)
		}
	}
	writeJSON(w, http.StatusCreated, toKeySet(s))
}
