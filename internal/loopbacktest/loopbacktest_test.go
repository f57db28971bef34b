package loopbacktest

import (
	"net"
	"strconv"
	"testing"
)

// TestPorts: distinct, below the ephemeral range, free to bind, and not
// handed out again by a later call.
func TestPorts(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 3 {
		ps, err := Ports(20)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if seen[p] {
				t.Errorf("port %d handed out twice", p)
			}
			seen[p] = true
			if low-lowest >= 1000 && (p < lowest || p >= low) {
				t.Errorf("port %d outside [%d, %d)", p, lowest, low)
			}
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				t.Errorf("port %d: %v", p, err)
				continue
			}
			ln.Close()
		}
	}
}
