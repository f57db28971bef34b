package boot

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/otaport/otaport/core/hal"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestRecordFormat_Golden pins the on-flash byte layout that
// docs/boot-schemes.md documents: a snapshot, a set, a delete and a boot
// record, at write_align 8 on an 0xFF flash.
func TestRecordFormat_Golden(t *testing.T) {
	st := state{
		params: Params{Pending: true, PendingSlot: SlotOTA, Mode: hal.BootTest, ImageSize: 0x1234,
			Active: SlotApp, Running: SlotApp, Confirmed: true, SecurityCounter: 7},
		kv: map[string][]byte{"b": []byte("2"), "a": []byte("one")},
	}
	var out bytes.Buffer
	for _, r := range []struct {
		name    string
		kind    uint16
		payload []byte
	}{
		{"snapshot", kindSnapshot, encodeSnapshot(st)},
		{"set a=xy", kindSet, encodeKey("a", []byte("xy"))},
		{"delete b", kindDelete, encodeKey("b", nil)},
		{"boot", kindBoot, st.params.encode()},
	} {
		out.WriteString("# " + r.name + "\n")
		out.WriteString(hex.Dump(encodeRecord(r.kind, 41, r.payload, 8, 0xFF)))
	}
	golden := filepath.Join("testdata", "records.golden")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("record bytes changed: the on-flash format is a compatibility promise; if the change is meant, bump paramsVersion, update docs/boot-schemes.md and run with -update\n got:\n%s", out.Bytes())
	}
}

func TestParams_RoundTrip(t *testing.T) {
	for _, p := range []Params{
		defaultParams(),
		{Pending: true, PendingSlot: SlotOTA, Mode: hal.BootPermanent, ImageSize: 1 << 20, Active: SlotOTA,
			Running: SlotApp, Trial: true, BootCount: 3, RolledBack: true, Rejected: true, Copy: CopyRunning, CopyDone: 0x4000, SecurityCounter: 0xFFFFFFFF},
	} {
		got, err := decodeParams(p.encode())
		if err != nil || got != p {
			t.Errorf("round trip of %+v = %+v, %v", p, got, err)
		}
	}
	bad := defaultParams().encode()
	bad[4] = 2
	if _, err := decodeParams(bad); err == nil {
		t.Error("slot 2 accepted")
	}
}

func TestSplitAreas(t *testing.T) {
	cases := []struct {
		secs []span
		want [2]span
	}{
		{[]span{{0, 4}, {4, 4}}, [2]span{{0, 4}, {4, 4}}},
		{[]span{{0, 4}, {4, 4}, {8, 4}, {12, 4}}, [2]span{{0, 8}, {8, 8}}},
		{[]span{{0, 4}, {4, 4}, {8, 8}}, [2]span{{0, 8}, {8, 8}}},
		{[]span{{0, 16}, {16, 64}}, [2]span{{0, 16}, {16, 64}}},
		{[]span{{0, 4}, {4, 4}, {8, 4}}, [2]span{{0, 4}, {4, 8}}},
	}
	for _, c := range cases {
		var g hal.FlashGeometry
		for _, s := range c.secs {
			g.Sectors = append(g.Sectors, hal.SectorRun{Count: 1, Size: uint64(s.size)})
			g.Size += uint64(s.size)
		}
		if got := splitAreas(g.Map(), hal.Partition{Name: "params", Size: g.Size}); got != c.want {
			t.Errorf("splitAreas(%v) = %v, want %v", c.secs, got, c.want)
		}
	}
}

// FuzzScanArea feeds arbitrary area contents to the log reader: it must not
// panic, and whatever it accepts must survive a snapshot round trip.
func FuzzScanArea(f *testing.F) {
	st := state{params: defaultParams(), kv: map[string][]byte{"k": []byte("v")}}
	snap := encodeRecord(kindSnapshot, 1, encodeSnapshot(st), 4, 0xFF)
	set := encodeRecord(kindSet, 2, encodeKey("k", []byte("w")), 4, 0xFF)
	f.Add(append(append(append([]byte(nil), snap...), set...), bytes.Repeat([]byte{0xFF}, 64)...))
	f.Add(snap)
	f.Add(bytes.Repeat([]byte{0xFF}, 128))
	f.Add(bytes.Repeat([]byte{0x00}, 128))
	torn := append(append([]byte(nil), snap...), set[:10]...)
	f.Add(torn)
	f.Fuzz(func(t *testing.T, b []byte) {
		sc := scanArea(b, 4, 0xFF)
		if !sc.valid {
			return
		}
		if sc.end > int64(len(b)) || sc.lastSeq < sc.snapSeq {
			t.Fatalf("scan = end %d of %d, seq %d..%d", sc.end, len(b), sc.snapSeq, sc.lastSeq)
		}
		again, err := decodeSnapshot(encodeSnapshot(sc.st))
		if err != nil || again.params != sc.st.params || len(again.kv) != len(sc.st.kv) {
			t.Fatalf("snapshot round trip: %v", err)
		}
		for k, v := range sc.st.kv {
			if !bytes.Equal(again.kv[k], v) {
				t.Fatalf("key %q: %q != %q", k, again.kv[k], v)
			}
		}
	})
}

// FuzzDecodeParams: any 24 bytes either decode to parameters that encode
// back to the same bytes, or are refused.
func FuzzDecodeParams(f *testing.F) {
	f.Add(defaultParams().encode())
	f.Add(make([]byte, paramsSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeParams(b)
		if err != nil {
			return
		}
		if again, err := decodeParams(p.encode()); err != nil || again != p {
			t.Fatalf("re-decode of %+v = %+v, %v", p, again, err)
		}
	})
}
