package main

import "testing"

// TestLedger_TallyCountsEachOutcome checks the arithmetic the spike's
// delivery figures rest on: a message delivered once, twice, never, and one
// nobody expected.
func TestLedger_TallyCountsEachOutcome(t *testing.T) {
	ds := devices(3)
	var l ledger
	l.add(ds[0].id, payload("m1", ds[0]))
	l.add(ds[0].id, payload("m2", ds[0]))
	l.add(ds[1].id, payload("m1", ds[1]))
	l.add(ds[1].id, payload("m1", ds[1])) // a repeat
	l.add(ds[2].id, payload("m9", ds[2])) // never sent
	want := func(d device) []string { return []string{payload("m1", d), payload("m2", d)} }

	got := l.tally(ds, want)
	// ds[0]: 2 delivered. ds[1]: m1 delivered twice, m2 lost. ds[2]: both
	// lost, one unexpected.
	if exp := (tally{delivered: 3, lost: 3, repeats: 1, unexpected: 1}); got != exp {
		t.Errorf("tally = %+v, want %+v", got, exp)
	}
	if n := l.count(ds[1].id); n != 2 {
		t.Errorf("count(%s) = %d, want 2", ds[1].id, n)
	}
}

// TestDevices_TopicsHaveTheOtaportShape keeps the spike's topics those of
// docs/protocol.md and its client IDs ones NATS accepts (no '.').
func TestDevices_TopicsHaveTheOtaportShape(t *testing.T) {
	ds := devices(2)
	if got, want := ds[1].topic, "/ota/device/upgrade/a1spike/dev00001"; got != want {
		t.Errorf("topic = %q, want %q", got, want)
	}
	for _, d := range ds {
		for _, c := range d.id {
			if c == '.' || c == '*' || c == '>' || c == ' ' {
				t.Errorf("client ID %q has %q, which NATS refuses", d.id, c)
			}
		}
	}
}
