package main

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/otaport/otaport/cmd/internal/cli/clitest"
	"github.com/otaport/otaport/core/delta"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/store/pgtest"
)

func TestMain(m *testing.M) {
	testscript.Main(stopping{m}, map[string]func(){
		"otaserve": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// stopping runs the tests, then stops the package's PostgreSQL (testscript.Main
// exits with the tests' status itself).
type stopping struct{ m *testing.M }

func (s stopping) Run() int {
	defer pg.Stop()
	return s.m.Run()
}

// TestScripts runs the CLI as a user does, against a real `otaserve run`
// in the background, from testdata/script/*.txtar.
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams(testscript.Params{Dir: "testdata/script"}, false))
}

// pg is the package's PostgreSQL server, started by the first test that
// asks for a database.
var pg pgtest.Server

// TestScripts_Postgres runs every script again with otaserve run on
// PostgreSQL (OTASERVE_DB, a database per script), everything else in
// --data as before.
func TestScripts_Postgres(t *testing.T) {
	pg.DB(t) // skips or fails as every PostgreSQL test does
	p := scriptParams(testscript.Params{Dir: "testdata/script"}, true)
	setup := p.Setup
	p.Setup = func(env *testscript.Env) error {
		url, drop, err := pg.Create()
		if err != nil {
			return err
		}
		env.Defer(func() {
			if err := drop(); err != nil {
				env.T().Log(err)
			}
		})
		env.Setenv("OTASERVE_DB", url)
		return setup(env)
	}
	testscript.Run(t, p)
}

// scriptParams completes the parameters of a run of scripts; the condition
// [postgres] holds in the run on PostgreSQL.
func scriptParams(p testscript.Params, postgres bool) testscript.Params {
	p.Condition = func(cond string) (bool, error) {
		if cond == "postgres" {
			return postgres, nil
		}
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	p.Setup = func(env *testscript.Env) error { return writeImages(env.WorkDir) }
	p.Cmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"exits": clitest.Exits,
		// waitfile FILE waits for a background otaserve to write FILE.
		"waitfile": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) != 1 {
				ts.Fatalf("usage: waitfile FILE")
			}
			// A minute: a start on a loaded machine (the tests of
			// other packages, a PostgreSQL of its own) takes seconds.
			for range 3000 {
				if _, err := os.Stat(ts.MkAbs(args[0])); err == nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			ts.Fatalf("%s never appeared", args[0])
		},
		// contains FILE SECRETFILE: FILE holds the secret of SECRETFILE
		// (its content without the final newline); with !, it does not.
		"contains": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) != 2 {
				ts.Fatalf("usage: contains FILE SECRETFILE")
			}
			secret := strings.TrimSpace(ts.ReadFile(args[1]))
			if secret == "" {
				ts.Fatalf("%s is empty", args[1])
			}
			if found := strings.Contains(ts.ReadFile(args[0]), secret); found != !neg {
				ts.Fatalf("%s contains the secret of %s: %v", args[0], args[1], found)
			}
		},
	}
	return p
}

// writeImages writes pub.pem and images signed with a fixed ed25519 key
// (ed25519 signatures are deterministic, so digests are stable):
// app-2.0.0.bin, a tampered copy, one signed by another key, and big.bin,
// 64 KiB, too large for longan-nano.
func writeImages(dir string) error {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	pub, err := image.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return err
	}
	payload := bytes.Repeat([]byte("otaport "), 1024)
	v, _ := image.ParseVersion("2.0.0")
	good, err := image.Sign(payload, key, image.SignOptions{Version: v})
	if err != nil {
		return err
	}
	foreign, err := image.Sign(payload, other, image.SignOptions{Version: v})
	if err != nil {
		return err
	}
	big, err := image.Sign(bytes.Repeat([]byte("otaport "), 8<<10), key, image.SignOptions{Version: v})
	if err != nil {
		return err
	}
	tampered := bytes.Clone(good)
	tampered[image.DefaultHeaderSize+100] ^= 0x20
	// For the delta images: the private key, a base 1.0.0 and a 2.1.0,
	// and deltas 1.0.0 -> 2.0.0 signed with the key and with another.
	priv, err := image.MarshalPrivateKeyPEM(key)
	if err != nil {
		return err
	}
	old, err := image.Sign(append(bytes.Repeat([]byte("otaport "), 1000), "v1.0.0"...), key, image.SignOptions{Version: image.Version{Major: 1}})
	if err != nil {
		return err
	}
	next, err := image.Sign(append(bytes.Repeat([]byte("otaport "), 1030), "v2.1.0"...), key, image.SignOptions{Version: image.Version{Major: 2, Minor: 1}})
	if err != nil {
		return err
	}
	deltaOf := func(k ed25519.PrivateKey) ([]byte, error) {
		oi, err := image.Parse(bytes.NewReader(old), int64(len(old)))
		if err != nil {
			return nil, err
		}
		ni, err := image.Parse(bytes.NewReader(good), int64(len(good)))
		if err != nil {
			return nil, err
		}
		patch, err := delta.Encode(old, good, delta.Options{})
		if err != nil {
			return nil, err
		}
		return image.SignDelta(oi, ni, patch, k, image.SignOptions{HeaderSize: 0x20})
	}
	d, err := deltaOf(key)
	if err != nil {
		return err
	}
	dForeign, err := deltaOf(other)
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"pub.pem": pub, "app-2.0.0.bin": good, "tampered.bin": tampered, "foreign.bin": foreign, "big.bin": big,
		"key.pem": priv, "app-1.0.0.bin": old, "app-2.1.0.bin": next, "delta.img": d, "delta-foreign.img": dForeign,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// TestReference keeps the otaserve section of docs/cli.md equal to the commands.
func TestReference(t *testing.T) { clitest.CheckReference(t, newRoot()) }
