package boot_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/hal"
)

// idfFunctions are the functions of ESP-IDF's tree the test compiles: the
// second-stage bootloader's choice of otadata entry and slot, with its
// writes, each a declaration line of its file up to the closing brace at the
// start of a line.
var idfFunctions = []struct{ file, start string }{
	{"components/bootloader_support/src/bootloader_common_loader.c", "uint32_t bootloader_common_ota_select_crc("},
	{"components/bootloader_support/src/bootloader_common_loader.c", "bool bootloader_common_ota_select_invalid("},
	{"components/bootloader_support/src/bootloader_common_loader.c", "bool bootloader_common_ota_select_valid("},
	{"components/bootloader_support/src/bootloader_common_loader.c", "int bootloader_common_get_active_otadata("},
	{"components/bootloader_support/src/bootloader_common_loader.c", "int bootloader_common_select_otadata("},
	{"components/bootloader_support/src/bootloader_utility.c", "static bool ota_has_initial_contents;"},
	{"components/bootloader_support/src/bootloader_utility.c", "esp_err_t bootloader_common_read_otadata("},
	{"components/bootloader_support/src/bootloader_utility.c", "static esp_err_t write_otadata("},
	{"components/bootloader_support/src/bootloader_utility.c", "int bootloader_utility_get_selected_boot_partition("},
	{"components/bootloader_support/src/bootloader_utility.c", "static void set_actual_ota_seq("},
}

// idfSource returns the functions of idfFunctions out of the tree at dir.
func idfSource(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("/* Copied by the test out of the ESP-IDF tree it was given: see core/boot/espidf_idf_test.go. */\n#include \"harness.h\"\n\n")
	for _, fn := range idfFunctions {
		src, err := os.ReadFile(filepath.Join(dir, fn.file))
		if err != nil {
			t.Fatalf("ESP_IDF_DIR: %v", err)
		}
		lines := strings.Split(string(src), "\n")
		found := false
		for i, l := range lines {
			if !strings.HasPrefix(l, fn.start) {
				continue
			}
			found = true
			if strings.HasSuffix(l, ";") {
				b.WriteString(l + "\n\n")
				break
			}
			for _, l := range lines[i:] {
				b.WriteString(l + "\n")
				if l == "}" {
					break
				}
			}
			b.WriteString("\n")
			break
		}
		if !found {
			t.Fatalf("ESP_IDF_DIR: %s has no line starting %q: a tree this test does not know", fn.file, fn.start)
		}
	}
	b.WriteString("void set_actual_ota_seq_of(const bootloader_state_t *bs, int index) { set_actual_ota_seq(bs, index); }\n")
	return b.String()
}

// TestESPIDF_BootloaderAgrees compiles ESP-IDF's own choice of otadata
// entry (bootloader_utility_get_selected_boot_partition, with
// bootloader_common_select_otadata and the rollback rewrites, then
// set_actual_ota_seq) on the host and, before each power-on of a device that
// otaport upgrades, lets it choose from the flash otaport wrote: it must
// choose the slot core/boot's bootloader boots, and leave otadata byte for
// byte as core/boot's does. It runs with ESP_IDF_DIR naming an ESP-IDF tree.
func TestESPIDF_BootloaderAgrees(t *testing.T) {
	dir := os.Getenv("ESP_IDF_DIR")
	if dir == "" {
		t.Skip("ESP_IDF_DIR is not set: to let ESP-IDF's own bootloader code choose from otaport's otadata, run " +
			"ESP_IDF_DIR=<esp-idf source tree> go test ./core/boot -run TestESPIDF_BootloaderAgrees (docs/boot-schemes.md)")
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: ESP-IDF's code is compiled with the system gcc")
	}
	tmp := t.TempDir()
	gen := filepath.Join(tmp, "idf_otadata.c")
	if err := os.WriteFile(gen, []byte(idfSource(t, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	here, err := filepath.Abs(filepath.Join("testdata", "espidf"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, "harness")
	comp := filepath.Join(dir, "components")
	args := []string{"-std=gnu99", "-Wall", "-Werror", "-Wno-unused-variable", "-Wno-unused-function", "-o", bin,
		"-I" + here, "-I" + filepath.Join(here, "include"),
		"-I" + filepath.Join(comp, "bootloader_support", "include"), "-I" + filepath.Join(comp, "esp_common", "include"),
		"-I" + filepath.Join(comp, "esp_rom", "include"),
		filepath.Join(here, "harness.c"), gen, filepath.Join(comp, "esp_rom", "linux", "esp_rom_crc.c")}
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	f := newESPFixture(t)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	pl := f.platform()
	ctx := context.Background()
	otadata, _ := f.layout.Partition(hal.PartOtadata)
	file := filepath.Join(tmp, "flash")
	// powerOn lets ESP-IDF choose from a copy of the flash, then core/boot
	// from the flash itself, and compares.
	powerOn := func(step string) hal.RebootResult {
		t.Helper()
		img := make([]byte, f.tb.geo.Size)
		if _, err := f.dev.ReadAt(img, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, img, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, file, fmt.Sprint(otadata.Offset), "2").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: ESP-IDF's bootloader code: %v\n%s", step, err, out)
		}
		res := reboot(t, pl)
		want := "index 0\n"
		if res.Slot == hal.PartOTA {
			want = "index 1\n"
		}
		if string(out) != want {
			t.Fatalf("%s: ESP-IDF's bootloader code chose %q, core/boot booted %s", step, out, res.Slot)
		}
		idf, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, otadata.Size)
		if _, err := f.dev.ReadAt(got, int64(otadata.Offset)); err != nil {
			t.Fatal(err)
		}
		if w := idf[otadata.Offset:otadata.End()]; !bytes.Equal(got, w) {
			t.Fatalf("%s: otadata after core/boot's power-on\n% x\n% x\nwant as after ESP-IDF's\n% x\n% x",
				step, got[:32], got[0x1000:0x1020], w[:32], w[0x1000:0x1020])
		}
		return res
	}
	steps := []struct {
		name string
		do   func() error
		slot string
	}{
		{"first power-on: no entry, ota_0, set_actual_ota_seq", func() error { return nil }, hal.PartApp},
		{"test request: new, then pending-verify", func() error { install(t, pl, f.image("2.0.0", 0), hal.BootTest); return nil }, hal.PartOTA},
		{"not confirmed: aborted", func() error { return nil }, hal.PartApp},
		{"test request again", func() error { install(t, pl, f.image("3.0.0", 0), hal.BootTest); return nil }, hal.PartOTA},
		{"confirmed: valid", func() error { return pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}) }, hal.PartOTA},
		{"permanent request into app: undefined", func() error { install(t, pl, f.image("4.0.0", 0), hal.BootPermanent); return nil }, hal.PartApp},
		{"rollback: invalid", func() error { return pl.Rollback(ctx) }, hal.PartOTA},
		{"test request, cancelled", func() error {
			install(t, pl, f.image("5.0.0", 0), hal.BootTest)
			return pl.Rollback(ctx)
		}, hal.PartOTA},
		{"test request into app over the given-up entry", func() error { install(t, pl, f.image("6.0.0", 0), hal.BootTest); return nil }, hal.PartApp},
		{"rolled back during the trial", func() error { return pl.Rollback(ctx) }, hal.PartOTA},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if res := powerOn(s.name); res.Slot != s.slot {
			t.Fatalf("%s: booted %s, want %s", s.name, res.Slot, s.slot)
		}
	}
}
