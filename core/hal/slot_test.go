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
