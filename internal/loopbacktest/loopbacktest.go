// Package loopbacktest is test support: loopback TCP ports for the servers
// a test starts as other processes and must name before they listen (a
// restart on the same port, a cluster whose configuration names each
// other's ports).
//
// A port the kernel gives a listener on port 0 comes from the ephemeral
// range, which every outgoing connection of every process draws from too:
// under the whole suite's load one took such a port between a test's
// check and its server's bind ("address already in use"). These come from
// below that range, where only a listener that names its port goes, picked
// at random, checked free, and never handed out twice by one process.
package loopbacktest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the bottom of the range ports are picked from: above the
// well-known and common service ports.
const lowest = 15000

// given holds the ports handed out by this process: a port is reserved
// only by its number until its server binds it, so two calls of one test
// binary must not pick the same one. It is the package's only state, and
// test support's: a test binary is one process.
var given = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Ports returns n distinct ports free on 127.0.0.1 now, from below the
// ephemeral range. When that range starts too low to leave room, they
// come from the kernel (port 0) as before.
func Ports(n int) ([]int, error) {
	top := ephemeralLow()
	given.Lock()
	defer given.Unlock()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if top-lowest < 1000 || tries > 1000 {
			p, err := kernelPort()
			if err != nil {
				return nil, err
			}
			out = append(out, p)
			continue
		}
		p := lowest + rand.IntN(top-lowest)
		if given.ports[p] || !free(p) {
			continue
		}
		given.ports[p] = true
		out = append(out, p)
	}
	return out, nil
}

// Port is Ports(1).
func Port() (int, error) {
	ps, err := Ports(1)
	if err != nil {
		return 0, err
	}
	return ps[0], nil
}

func free(p int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func kernelPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("loopbacktest: a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range: Linux's
// ip_local_port_range, or the IANA range's 49152 elsewhere.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 49152
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 49152
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 49152
	}
	return n
}
