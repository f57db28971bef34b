// Package keysets keeps the fleet's chain of key sets (core/keyset) and
// hands it to devices: otaserve checks each set pushed to it against the
// chain as a device would, keeps the chain in the fleet database, publishes
// it retained on every product's key set topic, and verifies uploaded
// images with the latest set's image keys.
package keysets

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/keyset"
)

// Setting is the database setting that holds the chain, a JSON array of
// the documents, oldest first.
const Setting = "key-sets"

// Store is what the service needs of the fleet database (*store.Store).
type Store interface {
	Setting(key string) (string, bool, error)
	SetSetting(key, value string) error
}

// Publisher sends a retained message: a device that connects later gets
// the chain at once. fleet/broker's Broker and fleet/campaign's Client are
// both.
type Publisher interface {
	PublishRetained(ctx context.Context, topic string, payload []byte) error
}

// Service holds the chain. Its methods are safe for concurrent use.
type Service struct {
	store   Store
	anchors []crypto.PublicKey
	now     func() time.Time

	mu   sync.Mutex
	sets []*keyset.Set // the chain, oldest first; each keeps its document (Raw)
}

// New loads the chain from st. anchors are the keys otaserve verifies
// images with (otaserve run --key), which the devices were provisioned
// with: the first set must be signed by them.
func New(st Store, anchors []crypto.PublicKey) (*Service, error) {
	s := &Service{store: st, anchors: anchors, now: time.Now}
	v, ok, err := st.Setting(Setting)
	if err != nil {
		return nil, fmt.Errorf("key sets: %w", err)
	}
	if !ok {
		return s, nil
	}
	var docs []json.RawMessage
	if err := json.Unmarshal([]byte(v), &docs); err != nil {
		return nil, fmt.Errorf("key sets: setting %q: %w", Setting, err)
	}
	for i, d := range docs {
		set, err := keyset.Parse(d)
		if err != nil {
			return nil, fmt.Errorf("key sets: setting %q, set %d: %w", Setting, i, err)
		}
		s.sets = append(s.sets, set)
	}
	return s, nil
}

// ErrRefused wraps a set the chain cannot take: keyset.ErrRefused, the
// error a device refuses a set with.
var ErrRefused = keyset.ErrRefused

// Push checks raw as a device holding the chain would (keyset.Accept, with
// this server's clock) and appends it.
func (s *Service) Push(raw []byte) (*keyset.Set, error) {
	next, err := keyset.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := keyset.Accept(s.latest(), s.anchors, next, s.now()); err != nil {
		return nil, err // wraps ErrRefused
	}
	sets := append(slices.Clone(s.sets), next)
	b, err := marshal(sets)
	if err != nil {
		return nil, err
	}
	if len(b) > cloud.MaxKeySetChain {
		return nil, fmt.Errorf("%w: the chain would be %d bytes, more than a device takes (%d)", ErrRefused, len(b), cloud.MaxKeySetChain)
	}
	if err := s.store.SetSetting(Setting, string(b)); err != nil {
		return nil, fmt.Errorf("key sets: %w", err)
	}
	s.sets = sets
	return next, nil
}

// latest is the newest set, nil when there is none. Called under s.mu.
func (s *Service) latest() *keyset.Set {
	if len(s.sets) == 0 {
		return nil
	}
	return s.sets[len(s.sets)-1]
}

func marshal(sets []*keyset.Set) ([]byte, error) {
	docs := make([]json.RawMessage, len(sets))
	for i, set := range sets {
		docs[i] = set.Raw()
	}
	b, err := json.Marshal(docs)
	if err != nil {
		return nil, fmt.Errorf("key sets: %w", err)
	}
	return b, nil
}

// Sets returns the chain, oldest first.
func (s *Service) Sets() []*keyset.Set {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sets)
}

// Keys returns the keys an uploaded image may be signed with: the latest
// set's image keys, or the anchors while there is no set.
func (s *Service) Keys() ([]crypto.PublicKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return keyset.Effective(s.latest(), s.anchors, true, s.now())
}

// Publish sends the chain, retained, on the key set topic of each product;
// nothing while there is no set.
func (s *Service) Publish(ctx context.Context, pub Publisher, products []string) error {
	s.mu.Lock()
	sets := s.sets
	s.mu.Unlock()
	if len(sets) == 0 {
		return nil
	}
	b, err := marshal(sets)
	if err != nil {
		return err
	}
	var errs []error
	for _, pk := range products {
		if err := pub.PublishRetained(ctx, cloud.KeySetTopic(pk), b); err != nil {
			errs = append(errs, fmt.Errorf("key sets of %s: %w", pk, err))
		}
	}
	return errors.Join(errs...)
}
