package engine_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/otaport/otaport/core/engine"
)

// The device keeps one record: the engine's state and its caller's note
// under one key, so that each write of either is one KV Set of both.
func TestRecord_OneRecordForEngineAndNote(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "esp32-devkitc", boardKeys(t, "esp32-devkitc"))
	d.factory("1.0.0", 8<<10)
	e := d.engine(engine.Options{})
	note := []byte(`{"order":{"id":7,"version":"1.1.0"},"phase":"installing"}`)
	if err := e.SetNote(ctx, note); err != nil {
		t.Fatal(err)
	}
	if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.1.0", 8<<10, 1))}); err != nil {
		t.Fatal(err)
	}
	// The install's saves kept the note, and the note's save the state.
	got, err := e.Note(ctx)
	if err != nil || string(got) != string(note) {
		t.Fatalf("note after the install = %s, %v; want %s", got, err, note)
	}
	if err := e.SetNote(ctx, []byte(`{"phase":"rebooting"}`)); err != nil {
		t.Fatal(err)
	}
	if st := d.status(); st.State != engine.Installed || st.Image != "1.1.0+0" {
		t.Fatalf("after a note: state %s of %s, want installed 1.1.0+0", st.State, st.Image)
	}
	for _, k := range []string{"otaport.engine", "otaport.agent"} {
		if _, ok, _ := d.plat.Get(ctx, k); ok {
			t.Errorf("key %q is set: the record must be one", k)
		}
	}
	b, ok, err := d.plat.Get(ctx, "otaport.device")
	if err != nil || !ok {
		t.Fatalf("the device record: %v, set %v", err, ok)
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if string(rec["state"]) != `"installed"` || string(rec["note"]) != `{"phase":"rebooting"}` {
		t.Errorf("the device record holds state %s and note %s", rec["state"], rec["note"])
	}
	if _, ok := rec["min_counter"]; ok {
		t.Error("the record keeps a copy of the security counter")
	}
	if err := e.SetNote(ctx, []byte("{not json")); err == nil {
		t.Error("SetNote took a note that is not JSON")
	}
}

// A device upgraded from an otaport that kept two records reads both into
// one, and the first save removes them.
func TestRecord_ReadsTheTwoRecordsOfAnEarlierVersion(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "esp32-devkitc", boardKeys(t, "esp32-devkitc"))
	d.factory("1.0.0", 8<<10)
	if err := d.plat.Set(ctx, "otaport.device", nil); err != nil {
		t.Fatal(err)
	}
	old := `{"format":1,"seq":4,"state":"failed","source":"http://example.invalid/x","error":"download failed","min_counter":3}`
	agentRec := `{"failed":[{"version":"1.2.0","step":-2,"reason":"bad"}]}`
	for k, v := range map[string]string{"otaport.engine": old, "otaport.agent": agentRec} {
		if err := d.plat.Set(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	e := d.engine(engine.Options{})
	st := d.status()
	if st.State != engine.Failed || st.Source != "http://example.invalid/x" {
		t.Fatalf("status from the earlier records: %s from %q, want failed from http://example.invalid/x", st.State, st.Source)
	}
	if n, err := e.Note(ctx); err != nil || string(n) != agentRec {
		t.Fatalf("note from the earlier agent record = %s, %v", n, err)
	}
	if err := e.SetNote(ctx, []byte(agentRec)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"otaport.engine", "otaport.agent"} {
		if _, ok, _ := d.plat.Get(ctx, k); ok {
			t.Errorf("key %q kept after the first save", k)
		}
	}
	if st := d.status(); st.State != engine.Failed {
		t.Errorf("after the first save: state %s, want failed", st.State)
	}
}

// The security counter has one copy, the bootloader's: losing the engine's
// record loses nothing of it.
func TestRecord_SecurityCounterIsTheBootloaders(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "esp32-devkitc", boardKeys(t, "esp32-devkitc"))
	d.factory("1.0.0", 8<<10)
	e := d.engine(engine.Options{AllowDowngrade: true})
	if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.1.0", 8<<10, 2))}); err != nil {
		t.Fatal(err)
	}
	d.expectRuns("1.1.0+0")
	if err := e.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.plat.Set(ctx, "otaport.device", nil); err != nil {
		t.Fatal(err)
	}
	if st := d.status(); st.SecurityCounter != 2 {
		t.Fatalf("security counter after the record's loss = %d, want the bootloader's 2", st.SecurityCounter)
	}
	err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.0.5", 8<<10, 1))})
	wantIs(t, err, engine.ErrRefused)
}
