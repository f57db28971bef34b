package store

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/otaport/otaport/fleet/store/pgtest"
	bolt "go.etcd.io/bbolt"
)

// pg is the package's PostgreSQL server, started by the first test that
// asks for a database.
var pg pgtest.Server

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// backends runs a test against each backend with a new, empty database: a
// bbolt file path, or a PostgreSQL URL.
func backends(t *testing.T, test func(t *testing.T, db string)) {
	t.Run("bbolt", func(t *testing.T) { test(t, filepath.Join(t.TempDir(), "fleet.db")) })
	t.Run("postgres", func(t *testing.T) { test(t, pg.DB(t)) })
}

func open(t testing.TB, db string) *Store {
	t.Helper()
	var s *Store
	var err error
	if IsPostgresURL(db) {
		s, err = OpenPostgres(context.Background(), db)
	} else {
		s, err = Open(db)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore_ReopenKeepsEverything(t *testing.T) { backends(t, testReopenKeepsEverything) }

func testReopenKeepsEverything(t *testing.T, path string) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s := open(t, path)
	dev := Device{ProductKey: "pk1", DeviceName: "dev-1", DeviceSecret: "s3cret", Board: "stm32f407-disco",
		Group: "lab", State: DeviceRegistered, Added: at}
	if err := s.AddDevice(dev); err != nil {
		t.Fatal(err)
	}
	img, err := s.AddImage(Image{Version: "1.2.0+0", Board: "stm32f407-disco", Size: 1234, SHA256: "ab", MD5: "cd",
		SecurityCounter: 3, SignatureType: "ECDSA256", Uploaded: at, Path: "/x/ab"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.AddCampaign(Campaign{Images: []CampaignImage{{ID: img.ID, Board: img.Board, Version: img.Version}}, Target: Target{Group: "lab"},
		SuccessPercent: 80, ErrorPercent: 20, State: CampaignRunning, Created: at,
		Waves: []Wave{{Spec: "100%", Devices: []string{dev.Key()}, State: WaveRunning}}},
		[]Progress{{Device: dev.Key(), State: ProgressPending}})
	if err != nil {
		t.Fatal(err)
	}
	c.State = CampaignPaused
	c.Reason = "operator"
	p := Progress{Device: dev.Key(), State: ProgressRunning, Step: 45, Progressed: true, Orders: 1, OrderedAt: at}
	if err := s.SaveCampaign(c, []Progress{p}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateDevice("pk1", "dev-1", func(d *Device) error { d.Version = "1.1.0"; d.LastSeen = at; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSetting("token", "tok"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	defer s.Close()
	gotDev, err := s.Device("pk1", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	dev.Version, dev.LastSeen = "1.1.0", at
	if !reflect.DeepEqual(gotDev, dev) {
		t.Errorf("device after reopen = %+v, want %+v", gotDev, dev)
	}
	gotImg, err := s.Image(img.ID)
	if err != nil || !reflect.DeepEqual(gotImg, img) {
		t.Errorf("image after reopen = %+v, %v; want %+v", gotImg, err, img)
	}
	gotC, err := s.Campaign(c.ID)
	if err != nil || !reflect.DeepEqual(gotC, c) {
		t.Errorf("campaign after reopen = %+v, %v; want %+v", gotC, err, c)
	}
	ps, err := s.Progress(c.ID)
	if err != nil || len(ps) != 1 || !reflect.DeepEqual(ps[0], p) {
		t.Errorf("progress after reopen = %+v, %v; want [%+v]", ps, err, p)
	}
	if v, ok, err := s.Setting("token"); v != "tok" || !ok || err != nil {
		t.Errorf("setting token = %q, %v, %v", v, ok, err)
	}
	// IDs keep counting after a reopen rather than reusing a taken one.
	img2, err := s.AddImage(Image{Version: "1.3.0"})
	if err != nil || img2.ID != img.ID+1 {
		t.Errorf("next image id = %d, %v; want %d", img2.ID, err, img.ID+1)
	}
}

func TestStore_Errors(t *testing.T) { backends(t, testErrors) }

func testErrors(t *testing.T, db string) {
	s := open(t, db)
	defer s.Close()
	d := Device{ProductKey: "pk", DeviceName: "a"}
	if err := s.AddDevice(d); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDevice(d); !errors.Is(err, ErrExists) {
		t.Errorf("second add = %v, want ErrExists", err)
	}
	for name, err := range map[string]error{
		"device":   func() error { _, err := s.Device("pk", "b"); return err }(),
		"image":    func() error { _, err := s.Image(9); return err }(),
		"campaign": func() error { _, err := s.Campaign(9); return err }(),
		"progress": func() error { _, err := s.Progress(9); return err }(),
		"update":   s.UpdateDevice("pk", "b", func(*Device) error { return nil }),
		"save":     s.SaveCampaign(Campaign{ID: 9}, nil),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", name, err)
		}
	}
}

func TestOpen_RefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keySchema, []byte("99"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("opened a schema-99 file")
	}
}

func TestDevices_SortedByKey(t *testing.T) { backends(t, testDevicesSortedByKey) }

func testDevicesSortedByKey(t *testing.T, db string) {
	s := open(t, db)
	defer s.Close()
	// Bytewise: upper case before lower case, whatever the locale.
	for _, dn := range []string{"c", "a", "B", "b"} {
		if err := s.AddDevice(Device{ProductKey: "pk", DeviceName: dn}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := s.Devices()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.DeviceName)
	}
	if !reflect.DeepEqual(got, []string{"B", "a", "b", "c"}) {
		t.Errorf("order = %v", got)
	}
}

func TestWrite_CommitsTogetherOrNotAtAll(t *testing.T) { backends(t, testCommitsTogetherOrNotAtAll) }

func testCommitsTogetherOrNotAtAll(t *testing.T, path string) {
	s := open(t, path)
	for _, dn := range []string{"a", "b"} {
		if err := s.AddDevice(Device{ProductKey: "pk", DeviceName: dn, State: DeviceRegistered}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.AddCampaign(Campaign{State: CampaignRunning}, []Progress{{Device: "pk/a", State: ProgressPending}})
	if err != nil {
		t.Fatal(err)
	}
	setVersion := func(v string) func(*Device) error {
		return func(d *Device) error { d.Version = v; return nil }
	}
	// A change that fails (an unknown device) leaves the others in.
	err = s.Write(func(w *Writer) error {
		if err := w.UpdateDevice("pk", "a", setVersion("2")); err != nil {
			return err
		}
		if err := w.UpdateDevice("pk", "ghost", setVersion("2")); !errors.Is(err, ErrNotFound) {
			t.Errorf("update of an unknown device: %v, want ErrNotFound", err)
		}
		c.State = CampaignFinished
		return w.SaveCampaign(c, []Progress{{Device: "pk/a", State: ProgressFinished}})
	})
	if err != nil {
		t.Fatal(err)
	}
	// An error from fn discards everything it did.
	boom := errors.New("boom")
	err = s.Write(func(w *Writer) error {
		if err := w.UpdateDevice("pk", "b", setVersion("3")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want boom", err)
	}
	s.Close()

	s = open(t, path)
	defer s.Close()
	for dn, want := range map[string]string{"a": "2", "b": ""} {
		if d, err := s.Device("pk", dn); err != nil || d.Version != want {
			t.Errorf("device %s version = %q, %v; want %q", dn, d.Version, err, want)
		}
	}
	got, err := s.Campaign(c.ID)
	if err != nil || got.State != CampaignFinished {
		t.Errorf("campaign = %+v, %v", got, err)
	}
	ps, err := s.Progress(c.ID)
	if err != nil || len(ps) != 1 || ps[0].State != ProgressFinished {
		t.Errorf("progress = %+v, %v", ps, err)
	}
}

// A campaign stored before campaigns took an image per board (image_id and
// version) reads as a campaign with that one image, and its devices, whose
// progress names no image, get it.
func TestCampaign_ReadsOneImageRecords(t *testing.T) {
	var c Campaign
	if err := json.Unmarshal([]byte(`{"id":3,"image_id":7,"version":"1.1.0+0","target":{"group":"lab"},"state":"finished"}`), &c); err != nil {
		t.Fatal(err)
	}
	want := []CampaignImage{{ID: 7, Version: "1.1.0+0"}}
	if !reflect.DeepEqual(c.Images, want) || c.ID != 3 || c.Target.Group != "lab" || c.State != CampaignFinished {
		t.Fatalf("old record read as %+v", c)
	}
	if img, ok := c.Image(Progress{Device: "pk/d"}); !ok || img.ID != 7 {
		t.Errorf("image of a device with no image named: %+v %v", img, ok)
	}
	two := Campaign{Images: []CampaignImage{{ID: 1, Board: "a"}, {ID: 2, Board: "b"}}}
	if img, ok := two.Image(Progress{Image: 2}); !ok || img.Board != "b" {
		t.Errorf("image 2 of a two-image campaign: %+v %v", img, ok)
	}
	if _, ok := two.Image(Progress{}); ok {
		t.Error("a device naming no image got one of two")
	}
}

// TestDevice_Modules: a record of a device of one module reads as its
// default module; a report of another module adds it; an edit of the
// default module writes the device's own fields.
func TestDevice_Modules(t *testing.T) {
	var d Device
	if err := json.Unmarshal([]byte(`{"product_key":"pk","device_name":"d","board":"b","version":"1.0.0","state":"idle"}`), &d); err != nil {
		t.Fatal(err)
	}
	if ms := d.ModuleList(); len(ms) != 1 || ms[0] != (Module{Name: DefaultModule, Board: "b", Version: "1.0.0", State: DeviceIdle}) {
		t.Errorf("a record from before modules: %+v", ms)
	}
	d.EditModule("wifi", func(m *Module) { m.Version = "2.0.0" })
	d.EditModule("", func(m *Module) { m.Version, m.State = "1.1.0", DeviceUpgrading })
	d.EditModule("wifi", func(m *Module) { m.State = DeviceFailed })
	if d.Version != "1.1.0" || d.State != DeviceUpgrading {
		t.Errorf("default module's edit: version %s state %s", d.Version, d.State)
	}
	w, ok := d.Module("wifi")
	if !ok || w != (Module{Name: "wifi", Version: "2.0.0", State: DeviceFailed}) || len(d.Modules) != 1 {
		t.Errorf("wifi = %+v, %v; modules %+v", w, ok, d.Modules)
	}
	if _, ok := d.Module("bt"); ok {
		t.Error("Module found a module the device does not have")
	}
}

// TestStore_DeltaFieldsKept: a delta image's links, the hashes modules
// report and a device's delta orders survive a reopen, on each backend, and EditModule puts
// the default module's hash on the device record and another's on its own.
func TestStore_DeltaFieldsKept(t *testing.T) {
	backends(t, func(t *testing.T, db string) {
		s := open(t, db)
		dev := Device{ProductKey: "pk1", DeviceName: "dev-1", Board: "b", State: DeviceIdle, Modules: []Module{{Name: "wifi", Board: "w"}}}
		if err := s.AddDevice(dev); err != nil {
			t.Fatal(err)
		}
		err := s.UpdateDevice("pk1", "dev-1", func(d *Device) error {
			d.EditModule(DefaultModule, func(m *Module) { m.ImageHash = "aa" })
			d.EditModule("wifi", func(m *Module) { m.ImageHash = "bb" })
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.AddImage(Image{Version: "1.1.0", Board: "b", Hash: "cc", DeltaTarget: 2, DeltaBase: 1, DeltaBaseHash: "aa"})
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.AddCampaign(Campaign{State: CampaignRunning}, []Progress{{Device: dev.Key(), FromHash: "aa", Delta: d.ID, FailedDelta: 7}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, db)
		defer s.Close()
		got, err := s.Device("pk1", "dev-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ImageHash != "aa" || len(got.Modules) != 1 || got.Modules[0].ImageHash != "bb" {
			t.Errorf("device after reopen: hash %q, modules %+v; want aa on the device and bb on wifi", got.ImageHash, got.Modules)
		}
		if m, _ := got.Module(DefaultModule); m.ImageHash != "aa" {
			t.Errorf("default module's hash %q, want aa", m.ImageHash)
		}
		img, err := s.Image(d.ID)
		if err != nil || !img.IsDelta() || img.DeltaBase != 1 || img.DeltaTarget != 2 || img.DeltaBaseHash != "aa" || img.Hash != "cc" {
			t.Errorf("delta image after reopen: %+v, %v", img, err)
		}
		ps, err := s.Progress(c.ID)
		if err != nil || len(ps) != 1 || ps[0].FromHash != "aa" || ps[0].Delta != d.ID || ps[0].FailedDelta != 7 {
			t.Errorf("progress after reopen: %+v, %v", ps, err)
		}
	})
}

// TestWriter_Deletes: deleting a device, an image (shared or not) and a
// campaign with its progress, on each backend.
func TestWriter_Deletes(t *testing.T) {
	backends(t, func(t *testing.T, db string) {
		s := open(t, db)
		defer s.Close()
		if err := s.AddDevice(Device{ProductKey: "pk", DeviceName: "a"}); err != nil {
			t.Fatal(err)
		}
		i1, _ := s.AddImage(Image{SHA256: "aa", Board: "x"})
		i2, _ := s.AddImage(Image{SHA256: "aa", Board: "y"})
		i3, err := s.AddImage(Image{SHA256: "bb"})
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.AddCampaign(Campaign{State: CampaignFinished}, []Progress{{Device: "pk/a", State: ProgressFinished}})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Write(func(w *Writer) error {
			if d, err := w.DeleteDevice("pk", "a"); err != nil || d.DeviceName != "a" {
				t.Errorf("delete device: %+v, %v", d, err)
			}
			if _, err := w.DeleteDevice("pk", "a"); !errors.Is(err, ErrNotFound) {
				t.Errorf("second delete of a device: %v", err)
			}
			if _, shared, err := w.DeleteImage(i1.ID); err != nil || !shared {
				t.Errorf("delete image %d: shared %v, %v; want shared", i1.ID, shared, err)
			}
			if _, shared, err := w.DeleteImage(i3.ID); err != nil || shared {
				t.Errorf("delete image %d: shared %v, %v; want not shared", i3.ID, shared, err)
			}
			if err := w.DeleteCampaign(c.ID); err != nil {
				t.Errorf("delete campaign: %v", err)
			}
			return w.DeleteCampaign(c.ID)
		})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete of a campaign: %v", err)
		}
		// That error discarded the transaction: everything is still there.
		if _, err := s.Device("pk", "a"); err != nil {
			t.Errorf("device after a discarded delete: %v", err)
		}
		err = s.Write(func(w *Writer) error {
			if _, err := w.DeleteDevice("pk", "a"); err != nil {
				return err
			}
			if _, _, err := w.DeleteImage(i1.ID); err != nil {
				return err
			}
			return w.DeleteCampaign(c.ID)
		})
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := s.Images()
		if err != nil || len(imgs) != 2 || imgs[0].ID != i2.ID || imgs[1].ID != i3.ID {
			t.Errorf("images left: %+v, %v", imgs, err)
		}
		if _, err := s.Progress(c.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("progress of a deleted campaign: %v", err)
		}
		if ds, err := s.Devices(); err != nil || len(ds) != 0 {
			t.Errorf("devices left: %+v, %v", ds, err)
		}
	})
}

// TestTokensAndSettings: tokens by hash, unique live names, revocation,
// and settings read inside and outside a Write, on each backend.
func TestTokensAndSettings(t *testing.T) {
	backends(t, func(t *testing.T, db string) {
		s := open(t, db)
		defer s.Close()
		at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		if err := s.AddToken(Token{Name: "ci", Scope: "read", Hash: "h1", Created: at}); err != nil {
			t.Fatal(err)
		}
		if err := s.AddToken(Token{Name: "ci", Scope: "read", Hash: "h2", Created: at}); !errors.Is(err, ErrExists) {
			t.Errorf("a second live token named ci: %v", err)
		}
		if _, err := s.RevokeToken("ci", at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.AddToken(Token{Name: "ci", Scope: "admin", Hash: "h2", Created: at.Add(time.Hour)}); err != nil {
			t.Errorf("a token named as a revoked one: %v", err)
		}
		if err := s.TouchToken("h2", at.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		tok, err := s.TokenByHash("h2")
		if err != nil || !tok.LastUsed.Equal(at.Add(2*time.Hour)) || tok.Scope != "admin" {
			t.Errorf("token h2 = %+v, %v", tok, err)
		}
		ts, err := s.Tokens()
		if err != nil || len(ts) != 2 || ts[0].Hash != "h1" || ts[0].Revoked.IsZero() {
			t.Errorf("tokens = %+v, %v", ts, err)
		}
		if err := s.SetSetting("empty", ""); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := s.Setting("empty"); v != "" || !ok || err != nil {
			t.Errorf("empty setting = %q, %v, %v", v, ok, err)
		}
		err = s.Write(func(w *Writer) error {
			if v, ok := w.Setting("empty"); !ok || v != "" {
				t.Errorf("setting in a write = %q, %v", v, ok)
			}
			return w.DeleteSetting("empty")
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := s.Setting("empty"); ok || err != nil {
			t.Errorf("deleted setting: %v, %v", ok, err)
		}
	})
}

func TestPrefetchDevices_ReadsAsGetWould(t *testing.T) { backends(t, testPrefetchDevices) }

// Prefetched devices read as the database holds them, with the
// transaction's own writes on top, and a device that is not there is still
// not found.
func testPrefetchDevices(t *testing.T, db string) {
	s := open(t, db)
	defer s.Close()
	for _, dn := range []string{"a", "b", "c"} {
		if err := s.AddDevice(Device{ProductKey: "pk", DeviceName: dn, Board: "b", State: DeviceRegistered}); err != nil {
			t.Fatal(err)
		}
	}
	inc := func(d *Device) error { d.OrderCounter++; return nil }
	err := s.Write(func(w *Writer) error {
		if err := w.PrefetchDevices([]string{"pk/a", "pk/b", "pk/c", "pk/missing"}); err != nil {
			return err
		}
		for range 3 {
			if err := w.UpdateDevice("pk", "a", inc); err != nil {
				return err
			}
		}
		if _, err := w.DeleteDevice("pk", "b"); err != nil {
			return err
		}
		if err := w.UpdateDevice("pk", "b", inc); !errors.Is(err, ErrNotFound) {
			t.Errorf("UpdateDevice of a device deleted in the transaction: %v; want ErrNotFound", err)
		}
		if err := w.UpdateDevice("pk", "missing", inc); !errors.Is(err, ErrNotFound) {
			t.Errorf("UpdateDevice of a prefetched key of no device: %v; want ErrNotFound", err)
		}
		// A device added after the prefetch is read from the database.
		if err := put(w.tx, tableDevices, nameOf("pk/d"), Device{ProductKey: "pk", DeviceName: "d", Board: "b", State: DeviceRegistered}); err != nil {
			return err
		}
		return w.UpdateDevice("pk", "d", inc)
	})
	if err != nil {
		t.Fatal(err)
	}
	for dn, want := range map[string]uint64{"a": 3, "c": 0, "d": 1} {
		d, err := s.Device("pk", dn)
		if err != nil {
			t.Fatalf("device %s: %v", dn, err)
		}
		if d.OrderCounter != want {
			t.Errorf("device %s: order counter %d; want %d", dn, d.OrderCounter, want)
		}
	}
	if _, err := s.Device("pk", "b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("device b after the commit: %v; want ErrNotFound", err)
	}
}

// TestSessions: a sign-in link opens one session at most, from whichever
// process on the database takes it; a session is read by any; expired
// ones are forgotten at the next store; a deleted one is gone.
func TestSessions(t *testing.T) { backends(t, testSessions) }

func testSessions(t *testing.T, db string) {
	one := open(t, db)
	defer one.Close()
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	link := Session{Hash: "l1", Link: true, TokenHash: "t1", Expires: now.Add(5 * time.Minute)}
	old := Session{Hash: "s0", TokenHash: "t1", CSRF: "c0", Expires: now.Add(time.Minute)}
	for _, s := range []Session{link, old} {
		if err := one.PutSession(s, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := one.Session("l1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a link read as a session: %v, want ErrNotFound", err)
	}
	if _, err := one.TakeLink("s0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a session taken as a link: %v, want ErrNotFound", err)
	}
	// Another process on the same database, when it is shared.
	other := one
	if IsPostgresURL(db) {
		other = open(t, db)
		defer other.Close()
	}
	got, err := other.TakeLink("l1")
	if err != nil || got != link {
		t.Fatalf("TakeLink = %+v, %v; want %+v", got, err, link)
	}
	if _, err := one.TakeLink("l1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a link taken twice: %v, want ErrNotFound", err)
	}
	s1 := Session{Hash: "s1", TokenHash: "t1", CSRF: "c1", Expires: now.Add(12 * time.Hour)}
	if err := other.PutSession(s1, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, err := one.Session("s1"); err != nil || got != s1 {
		t.Errorf("Session(s1) = %+v, %v; want %+v", got, err, s1)
	}
	if _, err := one.Session("s0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("an expired session kept past the next store: %v, want ErrNotFound", err)
	}
	if err := one.DeleteSession("s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Session("s1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deleted session: %v, want ErrNotFound", err)
	}
	if err := one.DeleteSession("s1"); err != nil {
		t.Errorf("delete a session twice: %v", err)
	}
	// A session outlives the process that opened it (an otaserve restart).
	s2 := Session{Hash: "s2", TokenHash: "t1", CSRF: "c2", Expires: now.Add(12 * time.Hour)}
	if err := one.PutSession(s2, now); err != nil {
		t.Fatal(err)
	}
	if other != one {
		other.Close()
	}
	one.Close()
	again := open(t, db)
	defer again.Close()
	if got, err := again.Session("s2"); err != nil || got != s2 {
		t.Errorf("after a reopen Session(s2) = %+v, %v; want %+v", got, err, s2)
	}
}
