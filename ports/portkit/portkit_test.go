package portkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

var layout = hal.Layout{
	Board: "test-board", Scheme: hal.DualBank, Signature: "ecdsa-p256", BootAttempts: 1,
	Flash: hal.FlashGeometry{Size: 0x10000, Sectors: []hal.SectorRun{{Count: 16, Size: 0x1000}}, WriteAlign: 4, EraseValue: 0xff},
	Partitions: []hal.Partition{
		{Name: hal.PartBootloader, Offset: 0, Size: 0x2000}, {Name: hal.PartParams, Offset: 0x2000, Size: 0x2000},
		{Name: hal.PartApp, Offset: 0x4000, Size: 0x6000}, {Name: hal.PartOTA, Offset: 0xa000, Size: 0x6000},
	},
}

func TestFromEnv_ReadsOnlyWhatItIsGiven(t *testing.T) {
	env := map[string]string{EnvFlash: "dev.flash", EnvBootKey: " a.pem, ,b.pem"}
	cfg := FromEnv(func(k string) string { return env[k] }, nil)
	if cfg.Flash != "dev.flash" || strings.Join(cfg.KeyFiles, "|") != "a.pem|b.pem" {
		t.Errorf("FromEnv = %+v", cfg)
	}
}

func TestOpen_FlashFileAndKeys(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	open := func(l hal.Layout, cfg Config) (hal.Platform, error) {
		return Open(l, func(l hal.Layout, cfg Config) (flash.Device, error) { return EmulatedFlash(l, cfg.Flash) }, cfg)
	}
	file := filepath.Join(dir, "dev.flash")
	p, err := open(layout, Config{Flash: file, KeyFiles: []string{keyFile}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.(interface{ Close() error }).Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(file); err != nil || st.Size() != int64(layout.Flash.Size) {
		t.Errorf("flash file: %v, %v", st, err)
	}
	if _, err := open(layout, Config{Flash: file, KeyFiles: []string{filepath.Join(dir, "missing.pem")}}); err == nil ||
		!strings.Contains(err.Error(), "port test-board: "+EnvBootKey) {
		t.Errorf("a missing key file: err = %v", err)
	}
	if _, err := open(layout, Config{Flash: dir}); err == nil || !strings.Contains(err.Error(), "open test-board flash") {
		t.Errorf("a flash file that is a directory: err = %v", err)
	}
}

// A flash file the board's bootloader cannot read (esp32-devkitc's layout
// before otadata, with otaport's params log where otadata now is) is
// refused when the port opens it, naming the file and the fix.
func TestOpen_OldESPIDFFlashFileNamed(t *testing.T) {
	l := layout
	l.Board, l.Scheme, l.Bootloader = "esp-board", hal.DualBank, hal.Bootloader{Name: hal.BootloaderESPIDF}
	l.Partitions = []hal.Partition{
		{Name: hal.PartBootloader, Offset: 0, Size: 0x2000}, {Name: hal.PartOtadata, Offset: 0x2000, Size: 0x2000},
		{Name: hal.PartParams, Offset: 0x4000, Size: 0x2000},
		{Name: hal.PartApp, Offset: 0x6000, Size: 0x5000}, {Name: hal.PartOTA, Offset: 0xb000, Size: 0x5000},
	}
	file := filepath.Join(t.TempDir(), "old.flash")
	dev, err := EmulatedFlash(l, file)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Program(0x2000, []byte("OTAp")); err != nil { // a params record's magic
		t.Fatal(err)
	}
	if err := dev.(interface{ Close() error }).Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(l, func(l hal.Layout, cfg Config) (flash.Device, error) { return EmulatedFlash(l, cfg.Flash) }, Config{Flash: file})
	if err == nil || !strings.Contains(err.Error(), "flash file "+file) || !strings.Contains(err.Error(), "start from a new flash file") {
		t.Fatalf("open: %v, want the file named with the fix", err)
	}
}

// Only a program's main reads the environment: no library of core/ or ports/
// outside a cmd/ directory (where a plugin's main is) calls os.Getenv or
// os.LookupEnv. Passing the environment on to a child process (os.Environ
// in exec) is inheritance, not configuration, and is left alone.
func TestEnvironment_ReadInCmdOnly(t *testing.T) {
	for _, root := range []string{"../../core", ".."} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") ||
				strings.Contains(filepath.ToSlash(p), "/cmd/") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				if path, _ := strconv.Unquote(imp.Path.Value); path != "os" {
					continue
				}
				src, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				for _, call := range []string{"os.Getenv(", "os.LookupEnv("} {
					if strings.Contains(string(src), call) {
						t.Errorf("%s calls %s: read the environment in a main and pass the value in", p, call)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
