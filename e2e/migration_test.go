package e2e

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/otaport/otaport/fleet/secrets"
	"github.com/otaport/otaport/fleet/store"
)

// TestMigration_FromBeforeSignedOrdersAndTLS starts today's otaserve on the
// data directory and today's agent on the device.yaml and flash that the
// release before signed orders and TLS made (testdata/migration, README.md
// there says how). During the dual-accept period (--insecure-plain-mqtt and
// --insecure-plain-http, the order key endorsed by the image key) the old
// device signs in without TLS, says it takes unsigned orders, learns the
// order key from a campaign's signed order and confirms the upgrade; the
// database's clear secret is sealed. When the operator ends the period
// (otaserve without the plain listeners) otaserve names the device left
// behind; moved to TLS, with the same device.yaml save the broker and ca
// lines, the device takes signed orders only.
func TestMigration_FromBeforeSignedOrdersAndTLS(t *testing.T) {
	const board, dn = "nucleo-h743zi", "dev-old"
	r := &fleetRig{t: t, dir: t.TempDir()}
	copyOldState(t, "testdata/migration", r.dir)
	payload := bytes.Repeat([]byte("otaport migration, new release "), 512)
	if err := os.WriteFile(filepath.Join(r.dir, "app.bin"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.3.0", "1.4.0"} {
		run(t, r.dir, "otaimg", "sign", "--key", "key.pem", "--version", v, "--pad-header", "app.bin", "app-"+v+".img")
	}
	secret, err := os.ReadFile(filepath.Join(r.dir, dn+".secret"))
	if err != nil {
		t.Fatal(err)
	}
	if db := readGz(t, "testdata/migration/data/fleet.db.gz"); !bytes.Contains(db, bytes.TrimSpace(secret)) {
		t.Fatal("the old database does not hold the device secret in the clear: not the state this test migrates")
	}

	// The operator's one step before the upgrade: the image key endorses
	// the order key.
	run(t, r.dir, "otaserve", "order-key", "--data", "data", "--endorse", "key.pem", "-o", "order.pub")
	httpPort, mqttPort, plainMQTT, plainHTTP := freePort(t), freePort(t), freePort(t), freePort(t)
	setBroker(t, filepath.Join(r.dir, dn+".yaml"), fmt.Sprintf("tcp://127.0.0.1:%d", plainMQTT), "")
	srv := r.otaserve(httpPort, mqttPort, "--insecure-plain-mqtt", fmt.Sprintf("127.0.0.1:%d", plainMQTT),
		"--insecure-plain-http", fmt.Sprintf("127.0.0.1:%d", plainHTTP))

	// The database migrated: the token, the device and the finished
	// campaign as they were (the secret's sealing is checked below, once
	// otaserve lets go of the database).
	if s := r.campaignState("1"); !strings.HasSuffix(s, "finished: every wave succeeded") {
		t.Errorf("the old campaign: %q", s)
	}

	ag := r.agent(board, dn)
	row := func() string {
		return regexp.MustCompile(`(?m)^demo +` + dn + ` .*$`).FindString(r.serve("device", "list"))
	}
	eventually(t, "the old device reports 1.1.0+0, unsigned orders, plain", func() (bool, string) {
		l := row()
		return strings.Contains(l, " 1.1.0+0 ") && strings.Contains(l, "idle,unsigned-orders,plain"), l
	})
	id := r.campaign(board, dn, "1.3.0")
	eventually(t, "campaign to the old device finished", func() (bool, string) {
		s := r.campaignState(id)
		return strings.HasSuffix(s, "finished: every wave succeeded"), s
	})
	eventually(t, "the device reports 1.3.0+0, signed orders only", func() (bool, string) {
		l := row()
		return strings.Contains(l, " 1.3.0+0 ") && strings.Contains(l, "idle,plain") && !strings.Contains(l, "unsigned"), l
	})
	if b, _ := os.ReadFile(ag.log); !bytes.Contains(b, []byte("order key learned, endorsed by an image key")) {
		t.Errorf("the agent's log does not say it learned the order key:\n%s", tail(string(b), 20))
	}

	// The operator ends the dual-accept period.
	srv.stop(syscall.SIGINT)
	st, err := store.Open(filepath.Join(r.dir, "data", "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	if d, err := st.Device("demo", dn); err != nil || !secrets.Sealed(d.DeviceSecret) || strings.Contains(d.DeviceSecret, string(bytes.TrimSpace(secret))) {
		t.Errorf("the device's secret in the migrated database: %q, %v; want it sealed", d.DeviceSecret, err)
	}
	st.Close()
	srv = r.otaserve(httpPort, mqttPort)
	b, _ := os.ReadFile(srv.log)
	if !regexp.MustCompile(`left behind: 1 device\(s\) last signed in without TLS .*: demo/` + dn + `;`).Match(b) {
		t.Errorf("otaserve without the plain listeners does not name the device left behind:\n%s", tail(string(b), 20))
	}
	ag.stop(syscall.SIGTERM)

	// Moved to TLS: the broker and ca lines only; no order_key, yet the
	// key it learned makes it take signed orders only.
	setBroker(t, filepath.Join(r.dir, dn+".yaml"), fmt.Sprintf("ssl://127.0.0.1:%d", mqttPort), "data/ca.pem")
	r.agent(board, dn)
	eventually(t, "the device reports 1.3.0+0 over TLS", func() (bool, string) {
		l := row()
		return strings.Contains(l, " 1.3.0+0 ") && strings.Contains(l, " idle ") && !strings.Contains(l, "unsigned") && !strings.Contains(l, "plain"), l
	})
	id = r.campaign(board, dn, "1.4.0")
	eventually(t, "campaign over TLS finished", func() (bool, string) {
		s := r.campaignState(id)
		return strings.HasSuffix(s, "finished: every wave succeeded"), s
	})
	if v := r.versionOf(dn); v != "1.4.0+0" {
		t.Errorf("otaserve has %s for the device, want 1.4.0+0", v)
	}
}

// copyOldState copies the committed old state to dir, unpacking the .gz
// files; the data directory and the key are the owner's only, as the old
// release made them (git keeps no such modes).
func copyOldState(t *testing.T, from, dir string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		if rel == "make.sh" || rel == "README.md" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".gz") {
			b, dst = readGz(t, p), strings.TrimSuffix(dst, ".gz")
		}
		mode := fs.FileMode(0o644)
		if strings.HasPrefix(rel, "data"+string(filepath.Separator)) || rel == "key.pem" {
			mode = 0o600
		}
		return os.WriteFile(dst, b, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func readGz(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// setBroker points device.yaml at broker, with ca when not empty, and
// changes nothing else.
func setBroker(t *testing.T, path, broker, ca string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	y := regexp.MustCompile(`(?m)^broker: .*$`).ReplaceAllString(string(b), "broker: "+broker)
	if ca != "" {
		y = strings.Replace(y, "broker: "+broker+"\n", "broker: "+broker+"\nca: "+ca+"\n", 1)
	}
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
}
