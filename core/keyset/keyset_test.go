package keyset

import (
	"bytes"
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/image"
)

func newKey(t testing.TB, typ string) crypto.Signer {
	t.Helper()
	k, err := image.GenerateKey(typ)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, sp Spec, signers ...crypto.Signer) *Set {
	t.Helper()
	raw, err := Sign(sp, signers...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAccept(t *testing.T) {
	a, b, c, x := newKey(t, "ecdsa-p256"), newKey(t, "ed25519"), newKey(t, "rsa-2048"), newKey(t, "ecdsa-p256")
	anchors := []crypto.PublicKey{a.Public()}
	// v1: the fleet's key a introduces b beside it; a stays a root.
	v1 := sign(t, Spec{Version: 1, Roots: []crypto.PublicKey{a.Public()}, ImageKeys: []crypto.PublicKey{a.Public(), b.Public()}}, a)
	// v2: b alone signs images, a is revoked, c is the new root.
	v2spec := Spec{Version: 2, Roots: []crypto.PublicKey{c.Public()}, ImageKeys: []crypto.PublicKey{b.Public()}, Revoked: []crypto.PublicKey{a.Public()}}
	v2 := sign(t, v2spec, a, c)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		cur     *Set
		next    *Set
		now     time.Time
		wantErr string
	}{
		{"first set signed by an anchor", nil, v1, now, ""},
		{"next set signed by the current root and its own", v1, v2, now, ""},
		{"first set signed by a stranger", nil, sign(t, Spec{Version: 1, Roots: []crypto.PublicKey{x.Public()}, ImageKeys: []crypto.PublicKey{x.Public()}}, x), now, "signed by 0 of the device's provisioned keys"},
		{"replayed set", v1, v1, now, "not newer than the device's 1"},
		{"older set", v2, v1, now, "not newer"},
		{"new root has not signed", v1, sign(t, v2spec, a), now, "signed by 0 of its own roots"},
		{"revoked root cannot sign on", v2, sign(t, Spec{Version: 3, Roots: []crypto.PublicKey{b.Public()}, ImageKeys: []crypto.PublicKey{b.Public()}, RevokedHashes: v2.Revoked}, a, b), now, "signed by 0 of roots of version 2"},
		{"revocation dropped", v2, sign(t, Spec{Version: 3, Roots: []crypto.PublicKey{c.Public()}, ImageKeys: []crypto.PublicKey{a.Public()}}, c), now, "revocations are permanent"},
		{"expired with a trusted clock", nil, sign(t, Spec{Version: 1, Expires: now.Add(-time.Hour), Roots: []crypto.PublicKey{a.Public()}, ImageKeys: []crypto.PublicKey{a.Public()}}, a), now, "expired"},
		{"expired without a clock", nil, sign(t, Spec{Version: 1, Expires: now.Add(-time.Hour), Roots: []crypto.PublicKey{a.Public()}, ImageKeys: []crypto.PublicKey{a.Public()}}, a), time.Time{}, ""},
		{"threshold 2, one signature", sign(t, Spec{Version: 1, Threshold: 2, Roots: []crypto.PublicKey{a.Public(), c.Public()}, ImageKeys: []crypto.PublicKey{a.Public()}}, a, c),
			sign(t, Spec{Version: 2, Roots: []crypto.PublicKey{a.Public()}, ImageKeys: []crypto.PublicKey{b.Public()}}, a), now, "needs 2"},
		{"threshold 2, two signatures", sign(t, Spec{Version: 1, Threshold: 2, Roots: []crypto.PublicKey{a.Public(), c.Public()}, ImageKeys: []crypto.PublicKey{a.Public()}}, a, c),
			sign(t, Spec{Version: 2, Roots: []crypto.PublicKey{a.Public()}, ImageKeys: []crypto.PublicKey{b.Public()}}, a, c), now, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Accept(tt.cur, anchors, tt.next, tt.now)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrRefused) {
				t.Fatalf("got %v, want a refusal containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAccept_TamperedSetIsRefused(t *testing.T) {
	a, b := newKey(t, "ecdsa-p256"), newKey(t, "ecdsa-p256")
	raw, err := Sign(Spec{Version: 1, Roots: []crypto.PublicKey{a.Public()}, ImageKeys: []crypto.PublicKey{a.Public()}}, a)
	if err != nil {
		t.Fatal(err)
	}
	// Raise the version in the signed bytes: still well formed, no longer
	// what a signed.
	bad := bytes.Replace(raw, []byte(`"version": 1`), []byte(`"version": 9`), 1)
	if bytes.Equal(bad, raw) {
		t.Fatalf("test cannot find the version in %s", raw)
	}
	s, err := Parse(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := Accept(nil, []crypto.PublicKey{a.Public(), b.Public()}, s, time.Time{}); !errors.Is(err, ErrRefused) {
		t.Fatalf("tampered set: got %v, want refused", err)
	}
}

func TestParse_Refusals(t *testing.T) {
	a := newKey(t, "ed25519")
	good, err := Sign(Spec{Version: 1, Roots: []crypto.PublicKey{a.Public()}, ImageKeys: []crypto.PublicKey{a.Public()}}, a)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, doc, want string
	}{
		{"not json", "{", "unexpected EOF"},
		{"unknown field", `{"signed":{},"signatures":[],"x":1}`, "unknown field"},
		{"wrong type", `{"signed":{"type":"tuf-root","version":1,"roots":[],"image_keys":[]},"signatures":[]}`, `type "tuf-root"`},
		{"version 0", `{"signed":{"type":"otaport-keyset","version":0,"roots":[],"image_keys":[]},"signatures":[]}`, "version 0"},
		{"no roots", `{"signed":{"type":"otaport-keyset","version":1,"roots":[],"image_keys":[]},"signatures":[]}`, "0 roots"},
		{"bad key", `{"signed":{"type":"otaport-keyset","version":1,"roots":["AAAA"],"image_keys":[]},"signatures":[]}`, "roots[0]"},
		{"unsigned", strings.Replace(string(good), `"keyid"`, `"x"`, 1), "unknown field"},
		{"oversized", `{"signed":"` + strings.Repeat("a", MaxSize) + `"}`, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrKeySet) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := Sign(Spec{Version: 1, Roots: []crypto.PublicKey{a.Public()}, ImageKeys: []crypto.PublicKey{a.Public()}, Revoked: []crypto.PublicKey{a.Public()}}, a); err == nil || !strings.Contains(err.Error(), "both trusted and revoked") {
		t.Fatalf("a set trusting a key it revokes: got %v", err)
	}
}

func TestEffective(t *testing.T) {
	a, b, c := newKey(t, "ecdsa-p256"), newKey(t, "ecdsa-p256"), newKey(t, "ecdsa-p256")
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	set := sign(t, Spec{Version: 1, Expires: now.Add(time.Hour), Roots: []crypto.PublicKey{a.Public()}, ImageKeys: []crypto.PublicKey{b.Public()}, Revoked: []crypto.PublicKey{c.Public()}}, a)
	ids := func(keys []crypto.PublicKey) string {
		var s []string
		for _, k := range keys {
			s = append(s, KeyID(k))
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name     string
		set      *Set
		anchors  []crypto.PublicKey
		readsSet bool
		now      time.Time
		want     []crypto.PublicKey
		wantErr  string
	}{
		{"no set: the anchors", nil, []crypto.PublicKey{a.Public(), c.Public()}, true, now, []crypto.PublicKey{a.Public(), c.Public()}, ""},
		{"otaport bootloader: the set's image keys", set, []crypto.PublicKey{a.Public()}, true, now, []crypto.PublicKey{b.Public()}, ""},
		{"MCUboot holding the new key", set, []crypto.PublicKey{a.Public(), b.Public()}, false, now, []crypto.PublicKey{b.Public()}, ""},
		{"MCUboot without it", set, []crypto.PublicKey{a.Public()}, false, now, nil, "none of which this board's bootloader holds"},
		{"expired", set, []crypto.PublicKey{a.Public()}, true, now.Add(2 * time.Hour), nil, "expired"},
		{"expired, no clock", set, []crypto.PublicKey{a.Public()}, true, time.Time{}, []crypto.PublicKey{b.Public()}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Effective(tt.set, tt.anchors, tt.readsSet, tt.now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want an error containing %q", ids(got), err, tt.wantErr)
				}
				return
			}
			if err != nil || ids(got) != ids(tt.want) {
				t.Fatalf("got %s, %v; want %s", ids(got), err, ids(tt.want))
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	a := newKey(f, "ed25519")
	good, err := Sign(Spec{Version: 1, Roots: []crypto.PublicKey{a.Public()}, ImageKeys: []crypto.PublicKey{a.Public()}}, a)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"signed":{"type":"otaport-keyset","version":1,"roots":[],"image_keys":[]},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := Parse(raw)
		if err != nil {
			if !errors.Is(err, ErrKeySet) {
				t.Fatalf("error does not wrap ErrKeySet: %v", err)
			}
			return
		}
		// Whatever parses can be judged without a panic.
		_ = Accept(nil, []crypto.PublicKey{a.Public()}, s, time.Now())
		_, _ = Effective(s, []crypto.PublicKey{a.Public()}, false, time.Time{})
	})
}
