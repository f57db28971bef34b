package hal

import (
	"strings"
	"testing"
)

func TestLayout_UpdateSlot(t *testing.T) {
	for _, tc := range []struct {
		scheme  Scheme
		running string
		want    string
	}{
		{SingleBank, PartApp, PartOTA},
		{SingleBank, PartOTA, PartOTA},
		{SingleBank, "", PartOTA},
		{DualBank, PartApp, PartOTA},
		{DualBank, PartOTA, PartApp},
		{DualBank, "", PartOTA},
	} {
		if got := (Layout{Scheme: tc.scheme}).UpdateSlot(tc.running); got != tc.want {
			t.Errorf("%s, running %q: UpdateSlot = %q, want %q", tc.scheme, tc.running, got, tc.want)
		}
	}
}

func TestInfo_UpdateSlot(t *testing.T) {
	app := Partition{Name: PartApp, Offset: 0x10000, Size: 0x20000}
	ota := Partition{Name: PartOTA, Offset: 0x30000, Size: 0x20000}
	layout := func(s Scheme, parts ...Partition) Layout {
		return Layout{Board: "b", Scheme: s, Partitions: parts}
	}
	running := func(name string) BootState {
		return BootState{Slots: []SlotState{
			{Name: PartApp, Active: name == PartApp},
			{Name: PartOTA, Active: name == PartOTA},
		}}
	}
	for _, tc := range []struct {
		name string
		info Info
		want Partition
		err  string
	}{
		{"single-bank writes ota", Info{Layout: layout(SingleBank, app, ota), Boot: running(PartApp)}, ota, ""},
		{"dual-bank from app writes ota", Info{Layout: layout(DualBank, app, ota), Boot: running(PartApp)}, ota, ""},
		{"dual-bank from ota writes app", Info{Layout: layout(DualBank, app, ota), Boot: running(PartOTA)}, app, ""},
		{"nothing runs writes ota", Info{Layout: layout(DualBank, app, ota)}, ota, ""},
		{"no ota partition", Info{Layout: layout(SingleBank, app), Boot: running(PartApp)}, Partition{}, `board "b" describes no ota partition`},
		{"dual-bank from ota without app", Info{Layout: layout(DualBank, ota), Boot: running(PartOTA)}, Partition{}, "describes no app partition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.info.UpdateSlot()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("UpdateSlot = %v, %v; want error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("UpdateSlot = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestInfo_MaxImageSize(t *testing.T) {
	small := Partition{Name: PartApp, Offset: 0x10000, Size: 0x10000}
	big := Partition{Name: PartOTA, Offset: 0x20000, Size: 0x30000}
	bigApp := Partition{Name: PartApp, Offset: 0x10000, Size: 0x40000}
	smallOTA := Partition{Name: PartOTA, Offset: 0x50000, Size: 0x8000}
	active := func(name string) BootState {
		return BootState{Slots: []SlotState{{Name: name, Active: true}}}
	}
	for _, tc := range []struct {
		name   string
		scheme Scheme
		parts  []Partition
		runs   string
		want   uint64
		err    bool
	}{
		{"single-bank: no more than app takes", SingleBank, []Partition{small, big}, PartApp, 0x10000, false},
		{"single-bank: no more than ota holds", SingleBank, []Partition{bigApp, smallOTA}, PartApp, 0x8000, false},
		{"dual-bank from app: ota's size", DualBank, []Partition{small, big}, PartApp, 0x30000, false},
		{"dual-bank from ota: app's size", DualBank, []Partition{small, big}, PartOTA, 0x10000, false},
		{"single-bank without app: ota's size", SingleBank, []Partition{big}, "", 0x30000, false},
		{"no update slot", DualBank, []Partition{big}, PartOTA, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := Info{Layout: Layout{Board: "b", Scheme: tc.scheme, Partitions: tc.parts}, Boot: active(tc.runs)}
			got, err := info.MaxImageSize()
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("MaxImageSize = %#x, %v; want %#x, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}
