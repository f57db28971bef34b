package espidf

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// romCRC32LE is esp_rom_crc32_le as ESP-IDF defines it for the host, written
// out from components/esp_rom/linux/esp_rom_crc.c (lines 166-174 at IDF commit
// 4dd88329c1e): crc = ~crc; for each byte crc = crc32_le_table[(crc^b)&0xff] ^
// (crc>>8); return ~crc. The table (crc32_le_table, line 17) is the reflected
// table of 0xEDB88320; romTable builds it and the test checks entries of it
// against the source's literals.
func romCRC32LE(table *[256]uint32, crc uint32, buf []byte) uint32 {
	crc = ^crc
	for _, b := range buf {
		crc = table[(crc^uint32(b))&0xff] ^ (crc >> 8)
	}
	return ^crc
}

func romTable() *[256]uint32 {
	var t [256]uint32
	for i := range t {
		c := uint32(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xEDB88320
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return &t
}

// otaSelectCRC is bootloader_common_ota_select_crc
// (components/bootloader_support/src/bootloader_common_loader.c, line 69 at
// IDF commit 651d6a283f3): esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4).
func otaSelectCRC(seq uint32) uint32 {
	le := []byte{byte(seq), byte(seq >> 8), byte(seq >> 16), byte(seq >> 24)}
	return romCRC32LE(romTable(), 0xFFFFFFFF, le)
}

func TestCRC_TableIsTheSources(t *testing.T) {
	tab := romTable()
	// Literals of crc32_le_table in esp_rom_crc.c.
	for i, want := range map[int]uint32{1: 0x77073096, 2: 0xee0e612c, 128: 0xedb88320, 255: 0x2d02ef8d} {
		if tab[i] != want {
			t.Errorf("crc32_le_table[%d] = %#08x, the source has %#08x", i, tab[i], want)
		}
	}
}

func TestCRC_AsTheSourceComputesIt(t *testing.T) {
	for _, seq := range []uint32{0, 1, 2, 3, 4, 5, 0x10, 0xFFFF, 0x12345678, 0xFFFFFFFE, 0xFFFFFFFF} {
		if got, want := CRC(seq), otaSelectCRC(seq); got != want {
			t.Errorf("CRC(%d) = %#08x, ESP-IDF's computation gives %#08x", seq, got, want)
		}
	}
	// Not the plain CRC-32 of the 4 bytes: the seed UINT32_MAX cancels the
	// ROM function's inversion on entry.
	if CRC(1) == 0x99F8B879 {
		t.Error("CRC(1) is the plain CRC-32 of 01 00 00 00: the seed is wrong")
	}
}

type golden struct {
	seq   uint32
	state string
	crc   uint32
	bytes []byte
}

func readGolden(t *testing.T) []golden {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "entries.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var gs []golden
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var g golden
		var crc, b string
		if _, err := fmt.Sscan(line, &g.seq, &g.state, &crc, &b); err != nil {
			t.Fatalf("entries.txt: %q: %v", line, err)
		}
		c, err := strconv.ParseUint(crc, 16, 32)
		if err != nil {
			t.Fatal(err)
		}
		g.crc = uint32(c)
		if g.bytes, err = hex.DecodeString(b); err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	return gs
}

func stateNamed(t *testing.T, name string) State {
	for s, n := range stateNames {
		if n == name {
			return s
		}
	}
	t.Fatalf("no state %q", name)
	return 0
}

func TestEntries_Golden(t *testing.T) {
	gs := readGolden(t)
	if len(gs) < 3 {
		t.Fatalf("entries.txt holds %d entries, want seq 1 to 3 at least", len(gs))
	}
	for _, g := range gs {
		if got := CRC(g.seq); got != g.crc || otaSelectCRC(g.seq) != g.crc {
			t.Errorf("seq %d: CRC %#08x, source's loop %#08x, golden %#08x", g.seq, got, otaSelectCRC(g.seq), g.crc)
		}
		e := NewEntry(g.seq, stateNamed(t, g.state))
		b := e.Bytes()
		if !bytes.Equal(b[:], g.bytes) {
			t.Errorf("seq %d %s: bytes %x, golden %x", g.seq, g.state, b, g.bytes)
		}
		back, err := ParseEntry(g.bytes)
		if err != nil || back != e {
			t.Errorf("seq %d: ParseEntry = %+v, %v; want %+v", g.seq, back, err, e)
		}
	}
}

// TestESPIDFCRC compiles ESP-IDF's own host esp_rom_crc32_le with crc.c and
// checks the golden CRCs against it.
func TestESPIDFCRC(t *testing.T) {
	dir := os.Getenv("ESP_IDF_DIR")
	if dir == "" {
		t.Skip("ESP_IDF_DIR is not set: to check the golden CRCs against ESP-IDF's own C, run " +
			"ESP_IDF_DIR=<esp-idf source tree> go test ./core/bootfmt/espidf -run TestESPIDFCRC")
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: the CRC program is compiled with the system gcc")
	}
	rom := filepath.Join(dir, "components", "esp_rom")
	bin := filepath.Join(t.TempDir(), "crc")
	if out, err := exec.Command(cc, "-o", bin, "-I"+filepath.Join(rom, "include"), "testdata/crc/crc.c",
		filepath.Join(rom, "linux", "esp_rom_crc.c")).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	gs := readGolden(t)
	args := make([]string, len(gs))
	for i, g := range gs {
		args[i] = fmt.Sprint(g.seq)
	}
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i, g := range gs {
		if want := fmt.Sprintf("%d %08x", g.seq, g.crc); i >= len(lines) || lines[i] != want {
			t.Errorf("ESP-IDF prints %q, golden says %q", lines[min(i, len(lines)-1)], want)
		}
	}
}

func entry(seq uint32, s State) Entry { return NewEntry(seq, s) }

var blank = func() Entry {
	var e Entry
	b := bytes.Repeat([]byte{0xff}, EntrySize)
	e, _ = ParseEntry(b)
	return e
}()

func TestActive_Table(t *testing.T) {
	bad := entry(5, StateValid)
	bad.CRC ^= 1
	for _, c := range []struct {
		name string
		two  [2]Entry
		want int
	}{
		{"both blank", [2]Entry{blank, blank}, -1},
		{"only 0", [2]Entry{entry(1, StateValid), blank}, 0},
		{"only 1", [2]Entry{blank, entry(2, StateNew)}, 1},
		{"higher seq wins", [2]Entry{entry(3, StateValid), entry(4, StateUndefined)}, 1},
		{"higher seq wins in 0", [2]Entry{entry(7, StatePendingVerify), entry(6, StateValid)}, 0},
		{"tie goes to 0", [2]Entry{entry(2, StateValid), entry(2, StateValid)}, 0},
		{"invalid state loses", [2]Entry{entry(1, StateValid), entry(2, StateInvalid)}, 0},
		{"aborted loses", [2]Entry{entry(1, StateValid), entry(2, StateAborted)}, 0},
		{"bad crc loses", [2]Entry{entry(1, StateValid), bad}, 0},
		{"seq 0 with its crc counts", [2]Entry{entry(0, StateValid), blank}, 0},
		{"unknown state counts", [2]Entry{entry(1, 7), blank}, 0},
	} {
		if got := Active(c.two); got != c.want {
			t.Errorf("%s: Active = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestSlot_Mapping(t *testing.T) {
	for _, c := range []struct {
		seq     uint32
		n, want int
	}{
		{1, 2, 0}, {2, 2, 1}, {3, 2, 0}, {4, 2, 1},
		{1, 3, 0}, {5, 3, 1}, {9, 3, 2},
		{0, 2, 1}, // (0 - 1) wraps to 0xFFFFFFFF, odd
		{0, 3, 0}, // 0xFFFFFFFF % 3
		{16, 16, 15},
	} {
		got, err := Slot(c.seq, c.n)
		if err != nil || got != c.want {
			t.Errorf("Slot(%d, %d) = %d, %v; want %d", c.seq, c.n, got, err, c.want)
		}
	}
	if _, err := Slot(1, 0); err == nil {
		t.Error("Slot with 0 partitions: no error")
	}
}

func TestSetBootPartition_Table(t *testing.T) {
	for _, c := range []struct {
		name     string
		two      [2]Entry
		slot, n  int
		rollback bool
		sector   int
		seq      uint32
		state    State
	}{
		{"blank otadata: entry 0, seq slot+1", [2]Entry{blank, blank}, 1, 2, true, 0, 2, StateNew},
		{"blank otadata ota_0", [2]Entry{blank, blank}, 0, 2, false, 0, 1, StateUndefined},
		{"other slot: other sector, next seq", [2]Entry{entry(1, StateValid), blank}, 1, 2, true, 1, 2, StateNew},
		{"back to ota_0", [2]Entry{entry(1, StateValid), entry(2, StateValid)}, 0, 2, true, 0, 3, StateNew},
		{"same slot: same sector, same seq", [2]Entry{entry(1, StateValid), entry(2, StateValid)}, 1, 2, false, 1, 2, StateUndefined},
		{"three slots skip ahead", [2]Entry{entry(4, StateValid), entry(3, StateValid)}, 2, 3, true, 1, 6, StateNew},
		{"three slots wrap base 0", [2]Entry{entry(5, StateValid), blank}, 2, 3, true, 1, 6, StateNew},
		{"active aborted ignored", [2]Entry{entry(1, StateValid), entry(2, StateAborted)}, 1, 2, true, 1, 2, StateNew},
	} {
		w, err := SetBootPartition(c.two, c.slot, c.n, c.rollback)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if w.Sector != c.sector || w.Entry.Seq != c.seq || w.Entry.State != c.state || w.Entry.CRC != CRC(c.seq) {
			t.Errorf("%s: sector %d seq %d state %s crc %#x; want sector %d seq %d state %s", c.name,
				w.Sector, w.Entry.Seq, w.Entry.State, w.Entry.CRC, c.sector, c.seq, c.state)
		}
		two := c.two
		two[w.Sector] = w.Entry
		b, err := SelectBoot(two, Config{AppCount: c.n, Rollback: c.rollback})
		if err != nil || b.Index != c.slot {
			t.Errorf("%s: the bootloader then picks %d (%v), want ota_%d", c.name, b.Index, err, c.slot)
		}
	}
	if _, err := SetBootPartition([2]Entry{entry(0xFFFFFFFE, StateValid), blank}, 0, 2, true); err == nil {
		t.Error("sequence past 0xFFFFFFFE: no error")
	}
	if _, err := SetBootPartition([2]Entry{blank, blank}, 2, 2, true); err == nil {
		t.Error("slot 2 of 2: no error")
	}
}

func TestSetBootPartition_KeepsLabel(t *testing.T) {
	old := entry(1, StateAborted)
	old.Label[0] = 'x'
	w, err := SetBootPartition([2]Entry{entry(2, StateValid), old}, 0, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	if w.Sector != 1 || w.Entry.Label[0] != 'x' {
		t.Errorf("write %+v: want sector 1 with the label the sector held", w)
	}
}

func TestMarkValidAndInvalid(t *testing.T) {
	two := [2]Entry{entry(1, StateValid), entry(2, StatePendingVerify)}
	w, ok, err := MarkValid(two)
	if err != nil || !ok || w.Sector != 1 || w.Entry.State != StateValid || w.Entry.Seq != 2 || w.Entry.CRC != CRC(2) {
		t.Errorf("MarkValid = %+v, %v, %v", w, ok, err)
	}
	two[1] = w.Entry
	if _, ok, err := MarkValid(two); ok || err != nil {
		t.Errorf("MarkValid of a valid entry writes (%v, %v)", ok, err)
	}
	w, err = MarkInvalid(two)
	if err != nil || w.Sector != 1 || w.Entry.State != StateInvalid {
		t.Errorf("MarkInvalid = %+v, %v", w, err)
	}
	two[1] = w.Entry
	if b, _ := SelectBoot(two, Config{AppCount: 2, Rollback: true}); b.Index != 0 {
		t.Errorf("after MarkInvalid the bootloader picks %d, want ota_0", b.Index)
	}
	if _, _, err := MarkValid([2]Entry{blank, blank}); !errors.Is(err, ErrNoActive) {
		t.Errorf("MarkValid on blank otadata: %v", err)
	}
}

func TestSelectBoot_Table(t *testing.T) {
	for _, c := range []struct {
		name    string
		two     [2]Entry
		cfg     Config
		index   int
		writes  []Write
		initial bool
	}{
		{"blank with factory", [2]Entry{blank, blank}, Config{AppCount: 2, HasFactory: true}, Factory, nil, false},
		{"blank without factory", [2]Entry{blank, blank}, Config{AppCount: 2}, 0, nil, true},
		{"no OTA apps", [2]Entry{entry(1, StateValid), blank}, Config{AppCount: 0, HasFactory: true}, Factory, nil, false},
		{"valid ota_1", [2]Entry{entry(1, StateValid), entry(2, StateValid)}, Config{AppCount: 2}, 1, nil, false},
		{"new becomes pending", [2]Entry{entry(1, StateValid), entry(2, StateNew)}, Config{AppCount: 2, Rollback: true}, 1,
			[]Write{{1, entry(2, StatePendingVerify)}}, false},
		{"new without rollback stays", [2]Entry{entry(1, StateValid), entry(2, StateNew)}, Config{AppCount: 2}, 1, nil, false},
		{"pending is aborted: rollback", [2]Entry{entry(1, StateValid), entry(2, StatePendingVerify)}, Config{AppCount: 2, Rollback: true}, 0,
			[]Write{{1, entry(2, StateAborted)}}, false},
		{"pending without rollback boots", [2]Entry{entry(1, StateValid), entry(2, StatePendingVerify)}, Config{AppCount: 2}, 1, nil, false},
		{"both aborted, factory", [2]Entry{entry(1, StateAborted), entry(2, StatePendingVerify)}, Config{AppCount: 2, HasFactory: true, Rollback: true}, Factory,
			[]Write{{1, entry(2, StateAborted)}}, false},
		{"invalid states keep their seq: not initial", [2]Entry{entry(1, StateInvalid), entry(2, StateAborted)}, Config{AppCount: 2}, 0, nil, false},
		{"bad crcs, no factory: try every partition", [2]Entry{badCRC(1), badCRC(2)}, Config{AppCount: 2}, Factory, nil, false},
	} {
		b, err := SelectBoot(c.two, c.cfg)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if b.Index != c.index || b.Initial != c.initial || fmt.Sprint(b.Writes) != fmt.Sprint(c.writes) {
			t.Errorf("%s: %+v; want index %d initial %v writes %v", c.name, b, c.index, c.initial, c.writes)
		}
	}
}

func badCRC(seq uint32) Entry {
	e := entry(seq, StateValid)
	e.CRC++
	return e
}

func TestParsePartition(t *testing.T) {
	p := bytes.Repeat([]byte{0xff}, PartitionSize)
	b := entry(3, StateValid).Bytes()
	copy(p[SectorSize:], b[:])
	two, err := ParsePartition(p)
	if err != nil || two[0] != blank || two[1] != entry(3, StateValid) {
		t.Errorf("ParsePartition = %+v, %v", two, err)
	}
	if _, err := ParsePartition(p[:SectorSize]); err == nil || !strings.Contains(err.Error(), "two 4 KiB sectors") {
		t.Errorf("one sector: %v", err)
	}
}

// FuzzParsePartition reads any bytes as otadata: no panic, entries round-trip
// through Bytes, and the selection only ever names a slot that exists.
func FuzzParsePartition(f *testing.F) {
	e := entry(2, StateNew).Bytes()
	f.Add(e[:], e[:], uint8(2), true, false)
	f.Add([]byte{}, []byte{0xff}, uint8(0), false, true)
	f.Fuzz(func(t *testing.T, a, b []byte, n uint8, rollback, factory bool) {
		p := bytes.Repeat([]byte{0xff}, PartitionSize)
		copy(p, a[:min(len(a), SectorSize)])
		copy(p[SectorSize:], b[:min(len(b), SectorSize)])
		two, err := ParsePartition(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range two {
			got := e.Bytes()
			if !bytes.Equal(got[:], p[i*SectorSize:i*SectorSize+EntrySize]) {
				t.Fatalf("entry %d does not round-trip", i)
			}
		}
		cfg := Config{AppCount: int(n % 17), Rollback: rollback, HasFactory: factory}
		boot, err := SelectBoot(two, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if boot.Index != Factory && cfg.AppCount > 0 && boot.Index >= cfg.AppCount {
			t.Fatalf("boot index %d of %d slots", boot.Index, cfg.AppCount)
		}
		if cfg.AppCount > 0 {
			for slot := range cfg.AppCount {
				w, err := SetBootPartition(two, slot, cfg.AppCount, rollback)
				if err != nil {
					continue
				}
				next := two
				next[w.Sector] = w.Entry
				if a := Active(two); a >= 0 && two[a].Seq == 0 && w.Sector != a {
					// ESP-IDF's own edge: from an active seq 0 it computes
					// seq 0 for the slot after, a tie that entry 0 wins.
					continue
				}
				if got, _ := SelectBoot(next, Config{AppCount: cfg.AppCount}); got.Index != slot {
					t.Fatalf("set boot ota_%d, the bootloader picks %d (otadata %+v)", slot, got.Index, next)
				}
			}
		}
	})
}

func TestInvalidateInactive_Table(t *testing.T) {
	bad := entry(1, StateValid)
	bad.CRC ^= 1
	tests := []struct {
		name    string
		two     [2]Entry
		running int
		sector  int
		ok      bool
	}{
		{"the other entry names the slot being written", [2]Entry{entry(1, StateValid), entry(2, StateValid)}, 1, 0, true},
		{"whatever its state", [2]Entry{entry(1, StateAborted), entry(2, StateValid)}, 1, 0, true},
		{"the other entry names the running slot", [2]Entry{entry(3, StateNew), entry(2, StateValid)}, 1, 1, false},
		{"the other entry is empty", [2]Entry{blank, entry(2, StateValid)}, 1, 0, false},
		{"the other entry's CRC is wrong", [2]Entry{bad, entry(2, StateValid)}, 1, 0, false},
		{"no active entry", [2]Entry{entry(1, StateInvalid), entry(2, StateAborted)}, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sector, ok := InvalidateInactive(tt.two, tt.running, 2)
			if ok != tt.ok || (ok && sector != tt.sector) {
				t.Fatalf("InvalidateInactive = %d, %v; want %d, %v", sector, ok, tt.sector, tt.ok)
			}
		})
	}
}
