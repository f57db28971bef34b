package api

import (
	"bytes"
	"context"
	"crypto"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/core/keyset"
	"github.com/otaport/otaport/fleet/keysets"
)

// TestKeySets_PushListAndUploads: a set pushed over the API is checked
// against the chain (a forgery is 422 with the reason), listed, and from
// then on uploads are checked with its image keys.
func TestKeySets_PushListAndUploads(t *testing.T) {
	e := newEnv(t)
	ks, err := keysets.New(e.st, []crypto.PublicKey{e.key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	published := 0
	cfg := e.cfg
	cfg.Keys, cfg.KeySets = []crypto.PublicKey{e.key.Public()}, ks
	cfg.PublishKeySets = func(context.Context) error { published++; return nil }
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e.srv = srv

	other, err := image.GenerateKey(image.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := keyset.Sign(keyset.Spec{Version: 1, Roots: []crypto.PublicKey{other.Public()}, ImageKeys: []crypto.PublicKey{other.Public()}}, other)
	if err != nil {
		t.Fatal(err)
	}
	var apiErr Error
	if code := e.do(http.MethodPost, "/keysets", "application/json", bytes.NewReader(forged), &apiErr); code != http.StatusUnprocessableEntity || !strings.Contains(apiErr.Error, "signed by 0") {
		t.Fatalf("a forged set: %d %q, want 422 naming the signatures", code, apiErr.Error)
	}
	v1, err := keyset.Sign(keyset.Spec{Version: 1, Roots: []crypto.PublicKey{e.key.Public()}, ImageKeys: []crypto.PublicKey{other.Public()}}, e.key)
	if err != nil {
		t.Fatal(err)
	}
	var got KeySet
	if code := e.do(http.MethodPost, "/keysets", "application/json", bytes.NewReader(v1), &got); code != http.StatusCreated || got.Version != 1 || published != 1 {
		t.Fatalf("push v1: %d %+v, published %d", code, got, published)
	}
	var list []KeySet
	if code := e.do(http.MethodGet, "/keysets", "", nil, &list); code != http.StatusOK || len(list) != 1 || list[0].ImageKeys[0] != keyset.KeyID(other.Public()) {
		t.Fatalf("list: %d %+v", code, list)
	}
	// The old key's image is refused now, the new key's taken.
	upload := func(img []byte) int {
		var out Image
		return e.do(http.MethodPost, "/images?board=b1", "application/octet-stream", bytes.NewReader(img), &out)
	}
	if code := upload(e.signed("1.0.0", e.key)); code != http.StatusUnprocessableEntity {
		t.Fatalf("upload of the old key's image after the set: %d, want 422", code)
	}
	if code := upload(e.signed("1.0.0", other)); code != http.StatusCreated {
		t.Fatalf("upload of the new key's image: %d, want 201", code)
	}
}
