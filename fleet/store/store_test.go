package store

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore_ReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
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

func TestStore_Errors(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "fleet.db"))
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

func TestDevices_SortedByKey(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "fleet.db"))
	defer s.Close()
	for _, dn := range []string{"c", "a", "b"} {
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
	if !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("order = %v", got)
	}
}

func TestWrite_CommitsTogetherOrNotAtAll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
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
// report and a device's delta orders survive a reopen, and EditModule puts
// the default module's hash on the device record and another's on its own.
func TestStore_DeltaFieldsKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	s := open(t, path)
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
	s = open(t, path)
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
}
