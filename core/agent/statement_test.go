package agent

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
)

// TestCheckStatement: a release statement counts only when otaserve's
// order key signed it for this product, after the last one taken, and,
// with a trusted clock, before it expires.
func TestCheckStatement(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	now := time.Unix(1800000000, 0)
	au := &orderAuth{key: pub, pk: "pk", dn: "dev", clock: true, now: func() time.Time { return now }}
	stmt := func(k ed25519.PrivateKey, product string, issued time.Time, ttl time.Duration) *cloud.Statement {
		s := &cloud.Statement{Product: product, Issued: issued.UnixMilli(), Expires: issued.Add(ttl).Unix()}
		cloud.SignStatement(s, k)
		return s
	}
	last := now.Add(-time.Hour).UnixMilli()
	cases := []struct {
		name  string
		s     *cloud.Statement
		clock bool
		want  string
	}{
		{"genuine", stmt(key, "pk", now.Add(-time.Minute), time.Hour), true, ""},
		{"another key", stmt(other, "pk", now.Add(-time.Minute), time.Hour), true, "not this device's order key"},
		{"another product", stmt(key, "pk2", now.Add(-time.Minute), time.Hour), true, "for product pk2"},
		{"replayed", stmt(key, "pk", now.Add(-time.Hour), time.Hour*2), true, "a replay"},
		{"expired", stmt(key, "pk", now.Add(-30*time.Minute), 20*time.Minute), true, "expired at"},
		{"expired, untrusted clock", stmt(key, "pk", now.Add(-30*time.Minute), 20*time.Minute), false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			au.clock = c.clock
			err := au.checkStatement(c.s, last)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("checkStatement = %v, want an error with %q", err, c.want)
			}
		})
	}
}
