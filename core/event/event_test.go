package event

import (
	"encoding/json"
	"testing"
)

// TestKind_WireStrings pins every kind to the string it has always had on
// the wire: a renamed constant is fine, a changed string breaks the tools
// and logs that read it.
func TestKind_WireStrings(t *testing.T) {
	wire := map[Kind]string{
		State: "state", Progress: "progress", Error: "error",
		Start: "start", Connected: "connected", Inform: "inform", Order: "order",
		Refused: "refused", Reboot: "reboot", Health: "health", Confirmed: "confirmed",
		RolledBack: "rolled-back", Failed: "failed", Stop: "stop",
		Pause: "pause", Resume: "resume", Cancel: "cancel",
	}
	// Two constants with one string would not compile here (a duplicate
	// map key): one word means one thing.
	for k, want := range wire {
		b, err := json.Marshal(struct {
			Kind Kind `json:"event"`
		}{k})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b); got != `{"event":"`+want+`"}` {
			t.Errorf("kind %q marshals as %s, want %q", string(k), got, want)
		}
	}
}
