package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestKeyRotation rotates the fleet's image key across running devices and
// then revokes the old one: a key set pushed to otaserve reaches every
// agent over the broker; an image signed with the new key, refused by
// otaserve before the set, is taken after it, installed and booted by
// otaport's own bootloader, which has never held that key; once the old
// key is revoked, its images are refused by otaserve and by a device.
func TestKeyRotation(t *testing.T) {
	r := newFleetRig(t)
	run(t, r.dir, "otaimg", "keygen", "--type", "ecdsa-p256", "-o", "new.pem")
	run(t, r.dir, "otaimg", "getpub", "--key", "new.pem", "-o", "new.pub")
	run(t, r.dir, "otaimg", "keygen", "--type", "ed25519", "-o", "root.pem")
	run(t, r.dir, "otaimg", "getpub", "--key", "root.pem", "-o", "root.pub")
	run(t, r.dir, "otaimg", "sign", "--key", "new.pem", "--version", "1.1.0", "--pad-header", "app.bin", "app-1.1.0-new.img")
	run(t, r.dir, "otaimg", "sign", "--key", "key.pem", "--version", "1.3.0", "--pad-header", "app.bin", "app-1.3.0-old.img")

	httpPort, mqttPort := freePort(t), freePort(t)
	r.otaserve(httpPort, mqttPort)
	devs := []string{"dev-0", "dev-1"}
	agents := map[string]*proc{}
	for i, dn := range devs {
		board := boards[i]
		r.provision(board, dn)
		r.serve("device", "add", "--product", "demo", "--name", dn, "--board", board, "--group", "fleet", "--secret", "s-"+dn)
		r.deviceYAML(dn, fmt.Sprintf("ssl://127.0.0.1:%d", mqttPort), "s-"+dn, "")
		agents[dn] = r.agent(board, dn)
	}
	for _, dn := range devs {
		eventually(t, dn+" reports 1.0.0+0", func() (bool, string) { v := r.versionOf(dn); return v == "1.0.0+0", v })
	}
	upload := func(board, file string) (string, error) {
		cmd := exec.Command(filepath.Join(bin, "otaserve"), "image", "upload", "--data", "data", "--board", board, file)
		cmd.Dir = r.dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := upload(boards[0], "app-1.1.0-new.img"); err == nil || !strings.Contains(out, "none of the given keys") {
		t.Fatalf("an image signed with a key the fleet does not trust yet was taken: %v\n%s", err, out)
	}

	// Version 1: the old key introduces the new one beside it.
	run(t, r.dir, "otaimg", "keyset", "sign", "--key", "key.pem", "--version", "1", "--root", "pub.pem",
		"--image-key", "pub.pem", "--image-key", "new.pub", "-o", "v1.json")
	r.serve("keyset", "push", "v1.json")
	r.waitKeySet(devs, 1)

	var ids []string
	for _, board := range boards[:2] {
		out, err := upload(board, "app-1.1.0-new.img")
		id := regexp.MustCompile(`^image (\d+):`).FindStringSubmatch(out)
		if err != nil || id == nil {
			t.Fatalf("upload of the new key's image after the set: %v\n%s", err, out)
		}
		ids = append(ids, "--image", id[1])
	}
	out := r.serve(append(append([]string{"campaign", "create"}, ids...), "--target", "group=fleet", "--waves", "100%", "--success", "100")...)
	c := regexp.MustCompile(`^campaign (\d+):`).FindStringSubmatch(out)
	if c == nil {
		t.Fatalf("campaign create said %q", out)
	}
	eventually(t, "campaign of the new key's image finished", func() (bool, string) {
		s := r.campaignState(c[1])
		return strings.HasSuffix(s, "finished: every wave succeeded"), s
	})
	for _, dn := range devs {
		if v := r.versionOf(dn); v != "1.1.0+0" {
			t.Fatalf("%s runs %s, want 1.1.0+0 signed with the new key", dn, v)
		}
	}

	// Version 2: the old key is revoked, a root of its own takes over.
	run(t, r.dir, "otaimg", "keyset", "sign", "--key", "key.pem", "--key", "root.pem", "--version", "2", "--root", "root.pub",
		"--image-key", "new.pub", "--revoke", "pub.pem", "--previous", "v1.json", "-o", "v2.json")
	r.serve("keyset", "push", "v2.json")
	r.waitKeySet(devs, 2)
	if out, err := upload(boards[0], "app-1.3.0-old.img"); err == nil || !strings.Contains(out, "none of the given keys") {
		t.Fatalf("an image signed with the revoked key was taken by otaserve: %v\n%s", err, out)
	}
	// The device refuses it too, though its device.yaml still lists the
	// old key: the set it took says otherwise.
	agents["dev-0"].stop(syscall.SIGTERM)
	if out := run(t, r.dir, "otarun", "--plugin", filepath.Join(bin, "otaport-"+boards[0]), "status", "--flash", "dev-0.flash"); !strings.Contains(out, "key set version 2") {
		t.Fatalf("otarun status does not show the key set:\n%s", out)
	}
	cmd := exec.Command(filepath.Join(bin, "otarun"), "--plugin", filepath.Join(bin, "otaport-"+boards[0]), "install",
		"--key", "pub.pem", "--flash", "dev-0.flash", "app-1.3.0-old.img")
	cmd.Dir = r.dir
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "matches none") {
		t.Fatalf("otarun install of the revoked key's image: %v\n%s", err, b)
	}
}

// waitKeySet waits until every device of devs reports key set version v.
func (r *fleetRig) waitKeySet(devs []string, v int) {
	r.t.Helper()
	for _, dn := range devs {
		eventually(r.t, fmt.Sprintf("%s reports key set %d", dn, v), func() (bool, string) {
			out := r.serve("device", "get", "demo/"+dn)
			return strings.Contains(out, fmt.Sprintf("(keys v%d)", v)), out
		})
	}
}
