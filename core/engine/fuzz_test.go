package engine

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseDigest(t *testing.T) {
	cases := []struct {
		in, want, err string
	}{
		{"", "", ""},
		{"sha256:" + strings.Repeat("AB", 32), "sha256:" + strings.Repeat("ab", 32), ""},
		{"SHA-256:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("0", 64), ""},
		{"md5:" + strings.Repeat("f", 32), "md5:" + strings.Repeat("f", 32), ""},
		{"md5:" + strings.Repeat("f", 31), "", "want 32 hex digits"},
		{"sha1:" + strings.Repeat("f", 40), "", `algorithm "sha1"`},
		{strings.Repeat("f", 64), "", "want sha256:HEX"},
		{"sha256:zz" + strings.Repeat("0", 62), "", "hex digits"},
	}
	for _, c := range cases {
		d, err := ParseDigest(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseDigest(%q) error %v, want %q", c.in, err, c.err)
		case c.err == "" && (err != nil || d.String() != c.want):
			t.Errorf("ParseDigest(%q) = %q, %v; want %q", c.in, d, err, c.want)
		}
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("ab", 32))
	f.Add("md5:" + strings.Repeat("0", 32))
	f.Add("sha256:")
	f.Add(":")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		// What parses formats to a form that parses to the same digest.
		again, err := ParseDigest(d.String())
		if err != nil || again.String() != d.String() {
			t.Fatalf("ParseDigest(%q) = %q, which reparses to %q, %v", s, d, again, err)
		}
	})
}

func TestParseContentRange(t *testing.T) {
	cases := []struct {
		in           string
		first, total int64
		ok           bool
	}{
		{"bytes 0-99/100", 0, 100, true},
		{"bytes 50-99/*", 50, -1, true},
		{"bytes 50-99/99", 0, 0, false},
		{"bytes 60-50/100", 0, 0, false},
		{"bytes */100", 0, 0, false},
		{"items 0-1/2", 0, 0, false},
		{"bytes -1-5/10", 0, 0, false},
	}
	for _, c := range cases {
		first, total, err := parseContentRange(c.in)
		if (err == nil) != c.ok || (c.ok && (first != c.first || total != c.total)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", c.in, first, total, err)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 0-99/100")
	f.Add("bytes 5-5/*")
	f.Add("bytes */10")
	f.Fuzz(func(t *testing.T, s string) {
		first, total, err := parseContentRange(s)
		if err != nil {
			return
		}
		if first < 0 || (total != -1 && total <= first) {
			t.Fatalf("parseContentRange(%q) = %d, %d: out of range", s, first, total)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	good, _ := json.Marshal(record{Format: recordFormat, State: Downloading, Source: "http://127.0.0.1/x", Offset: 4096, Verifier: []byte("otavs1...")})
	f.Add(good)
	f.Add([]byte(`{"format":1,"state":"testing","image":"1.2.3+4"}`))
	f.Add([]byte(`{"format":2,"state":"idle"}`))
	f.Add([]byte(`{"format":2,"state":"downloading","base":{"state":"confirmed","image":"1.1.0"},"note":{"order":{"id":7}}}`))
	f.Add([]byte(`{"format":2,"state":"downloading","base":{"state":"downloading"}}`))
	f.Add([]byte(`{"format":3,"state":"idle"}`))
	f.Add([]byte(`{"format":1,"state":"bogus"}`))
	f.Add([]byte(`{"format":1,"state":"failed","offset":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if (r.Format != recordFormat && r.Format != legacyFormat) || r.Offset < 0 || r.Size < 0 || r.Total < 0 {
			t.Fatalf("decodeRecord accepted %+v", r)
		}
		// An accepted record survives a save and a load unchanged.
		b2, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := decodeRecord(b2)
		if err != nil || r2.State != r.State || r2.Offset != r.Offset || string(r2.Verifier) != string(r.Verifier) ||
			string(r2.Note) != string(r.Note) || (r2.Base == nil) != (r.Base == nil) {
			t.Fatalf("record %+v does not round-trip: %+v, %v", r, r2, err)
		}
	})
}
