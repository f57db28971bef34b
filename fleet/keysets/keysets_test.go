package keysets_test

import (
	"context"
	"crypto"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/core/keyset"
	"github.com/otaport/otaport/fleet/keysets"
	"github.com/otaport/otaport/fleet/store"
)

type published map[string]string

func (p published) PublishRetained(_ context.Context, topic string, payload []byte) error {
	p[topic] = string(payload)
	return nil
}

func key(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := image.GenerateKey(image.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ids(keys []crypto.PublicKey) string {
	var s []string
	for _, k := range keys {
		s = append(s, keyset.KeyID(k))
	}
	return strings.Join(s, ",")
}

// TestService_ChainSurvivesARestart pushes two sets, refuses what a device
// would refuse, and finds the chain, and the keys uploads are checked
// with, again after a restart.
func TestService_ChainSurvivesARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	old, nw, stranger := key(t), key(t), key(t)
	anchors := []crypto.PublicKey{old.Public()}
	s, err := keysets.New(st, anchors)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := s.Keys(); err != nil || ids(k) != ids(anchors) {
		t.Fatalf("keys without a set: %s, %v; want the anchors", ids(k), err)
	}
	sign := func(sp keyset.Spec, by ...crypto.Signer) []byte {
		raw, err := keyset.Sign(sp, by...)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	v1 := sign(keyset.Spec{Version: 1, Roots: anchors, ImageKeys: []crypto.PublicKey{old.Public(), nw.Public()}}, old)
	if _, err := s.Push(sign(keyset.Spec{Version: 1, Roots: []crypto.PublicKey{stranger.Public()}, ImageKeys: []crypto.PublicKey{stranger.Public()}}, stranger)); !errors.Is(err, keysets.ErrRefused) {
		t.Fatalf("a set signed by a stranger: %v, want refused", err)
	}
	if _, err := s.Push(v1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(v1); !errors.Is(err, keysets.ErrRefused) {
		t.Fatalf("the same set again: %v, want refused", err)
	}
	v2 := sign(keyset.Spec{Version: 2, Roots: []crypto.PublicKey{nw.Public()}, ImageKeys: []crypto.PublicKey{nw.Public()}, Revoked: anchors}, old, nw)
	if _, err := s.Push(v2); err != nil {
		t.Fatal(err)
	}
	pub := published{}
	if err := s.Publish(context.Background(), pub, []string{"pk1", "pk2"}); err != nil {
		t.Fatal(err)
	}
	docs, err := cloud.ParseKeySetChain([]byte(pub[cloud.KeySetTopic("pk2")]))
	if err != nil || len(docs) != 2 {
		t.Fatalf("published chain: %d documents, %v; want 2", len(docs), err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err = keysets.New(st, anchors)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sets(); len(got) != 2 || got[1].Version != 2 {
		t.Fatalf("after a restart: %d sets", len(got))
	}
	if k, err := s.Keys(); err != nil || ids(k) != keyset.KeyID(nw.Public()) {
		t.Fatalf("keys after a restart: %s, %v; want the new key only", ids(k), err)
	}
}
