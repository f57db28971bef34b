package fleet_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaport/otaport/fleet"
)

// TestNew_StartFailuresAreErrors: every way a start can fail returns a
// one-line error that names what failed, the flag to change and how, and leaves nothing
// open behind it (the data directory can be used again at once). Before,
// New's clean-up called Close on the nil it had just returned, and
// otaserve run panicked instead of saying why.
func TestNew_StartFailuresAreErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := filepath.Join(t.TempDir(), "afile")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  func(dir string) fleet.Config
		want []string
	}{
		{"http port busy", func(dir string) fleet.Config {
			return fleet.Config{DataDir: dir, HTTPAddr: busy.Addr().String(), MQTTAddr: "127.0.0.1:0"}
		}, []string{busy.Addr().String(), "--http", "stop it or pass another --http (port 0 picks a free one)"}},
		{"mqtt port busy", func(dir string) fleet.Config {
			return fleet.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: busy.Addr().String()}
		}, []string{busy.Addr().String(), "--mqtt", "stop it or pass another --mqtt"}},
		{"http address nonsense", func(dir string) fleet.Config {
			return fleet.Config{DataDir: dir, HTTPAddr: "nonsense", MQTTAddr: "127.0.0.1:0"}
		}, []string{"nonsense", "pass --http as HOST:PORT"}},
		{"data is a file", func(string) fleet.Config {
			return fleet.Config{DataDir: file, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"}
		}, []string{file, "(--data) is a file: give a directory"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := fleet.New(c.cfg(dir))
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if s != nil {
				t.Errorf("New returned a server with its error %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
			// Nothing left open: the same directory starts cleanly (the
			// store's file lock would refuse a second open otherwise).
			if c.name != "data is a file" {
				ok, err := fleet.New(fleet.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"})
				if err != nil {
					t.Fatalf("start again on %s: %v", dir, err)
				}
				ok.Close()
			}
		})
	}
}

// TestNew_SecondInstanceIsRefused: a second otaserve on a data directory
// in use says so, and the first keeps running.
func TestNew_SecondInstanceIsRefused(t *testing.T) {
	dir := t.TempDir()
	first, err := fleet.New(fleet.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := fleet.New(fleet.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"})
	if err == nil {
		second.Close()
		t.Fatal("a second server on the same data directory started")
	}
	if !strings.Contains(err.Error(), "another otaserve") {
		t.Errorf("error %q does not say another otaserve holds the directory", err)
	}
}
