package cloud

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func testStatement(t *testing.T, key ed25519.PrivateKey) *Statement {
	t.Helper()
	s := &Statement{Product: "pk1", Issued: 1700000000123, Expires: 1700001800,
		Releases: []Release{{Board: "nrf52840-dk", Version: "1.2.0+0"}, {Board: "esp32-devkitc", Module: "wifi", Version: "2.0.0+0"}}}
	SignStatement(s, key)
	return s
}

// TestStatement_EveryFieldIsSigned: a statement verifies with its key, and
// a change to any field it carries, or another key, breaks it.
func TestStatement_EveryFieldIsSigned(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := VerifyStatement(testStatement(t, key), pub); err != nil {
		t.Fatalf("genuine statement: %v", err)
	}
	if err := VerifyStatement(testStatement(t, key), otherPub); !errors.Is(err, ErrStatement) {
		t.Errorf("another key: %v, want ErrStatement", err)
	}
	edits := map[string]func(*Statement){
		"product":  func(s *Statement) { s.Product = "pk2" },
		"issued":   func(s *Statement) { s.Issued++ },
		"expires":  func(s *Statement) { s.Expires += 3600 },
		"version":  func(s *Statement) { s.Releases[0].Version = "0.9.0+0" },
		"board":    func(s *Statement) { s.Releases[0].Board = "rpi-pico" },
		"module":   func(s *Statement) { s.Releases[1].Module = "default" },
		"dropped":  func(s *Statement) { s.Releases = s.Releases[:1] },
		"appended": func(s *Statement) { s.Releases = append(s.Releases, Release{Board: "x", Version: "9"}) },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			s := testStatement(t, key)
			edit(s)
			if err := VerifyStatement(s, pub); !errors.Is(err, ErrStatement) {
				t.Errorf("verify after changing %s: %v, want ErrStatement", name, err)
			}
		})
	}
}

func TestParseStatement(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	good, err := json.Marshal(testStatement(t, key))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := ParseStatement(good); err != nil || s.Product != "pk1" || len(s.Releases) != 2 {
		t.Fatalf("ParseStatement(good) = %+v, %v", s, err)
	}
	for name, raw := range map[string]string{
		"not JSON":       "{",
		"unknown field":  `{"product":"pk1","issued":1,"expires":1,"signer":"a","signature":"b","extra":1}`,
		"no product":     `{"issued":1,"expires":1,"signer":"a","signature":"b"}`,
		"product with /": `{"product":"pk/1","issued":1,"expires":1,"signer":"a","signature":"b"}`,
		"no time":        `{"product":"pk1","signer":"a","signature":"b"}`,
		"unsigned":       `{"product":"pk1","issued":1,"expires":1}`,
		"empty version":  `{"product":"pk1","issued":1,"expires":1,"releases":[{"board":"b","version":""}],"signer":"a","signature":"b"}`,
		"oversized":      `{"product":"pk1","x":"` + strings.Repeat("a", maxStatementSize) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseStatement([]byte(raw)); !errors.Is(err, ErrStatement) {
				t.Errorf("ParseStatement: %v, want ErrStatement", err)
			}
		})
	}
}

func FuzzParseStatement(f *testing.F) {
	f.Add([]byte(`{"product":"pk1","issued":1,"expires":1,"releases":[{"board":"b","version":"1"}],"signer":"a","signature":"b"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := ParseStatement(raw)
		if err == nil && (s.Product == "" || s.Signature == "") {
			t.Fatalf("accepted %q without a product or a signature", raw)
		}
	})
}

func TestParseKeySetChain(t *testing.T) {
	docs, err := ParseKeySetChain([]byte(`[{"signed":{}},{"signed":{"version":2}}]`))
	if err != nil || len(docs) != 2 || string(docs[1]) != `{"signed":{"version":2}}` {
		t.Fatalf("ParseKeySetChain: %q, %v", docs, err)
	}
	for name, raw := range map[string]string{
		"not an array": `{"signed":{}}`,
		"not json":     `[`,
		"oversized":    "[" + strings.Repeat(" ", MaxKeySetChain) + "]",
	} {
		if _, err := ParseKeySetChain([]byte(raw)); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: %v, want ErrInvalidMessage", name, err)
		}
	}
}

func FuzzParseKeySetChain(f *testing.F) {
	f.Add([]byte(`[{"signed":{}}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		docs, err := ParseKeySetChain(raw)
		if err != nil {
			return
		}
		for _, d := range docs {
			if !json.Valid(d) {
				t.Fatalf("a document that is not JSON: %q", d)
			}
		}
	})
}
