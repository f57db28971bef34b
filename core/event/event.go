// Package event names the kinds of events otaport's parts report: the
// upgrade engine's (what `otarun install --json` prints), the device
// agent's (what `otarun --json` prints) and the inputs of a campaign's
// state machine in the fleet. One type for all three means one list of
// names, and one word means one thing wherever it is read.
//
// The strings are protocol: they are printed as JSON, and tools and stored
// logs read them. Never change one; add a new kind instead.
//
// It holds names only, and imports nothing, so that both the device side
// (core) and the fleet can use it without depending on each other.
package event

// Kind says what an event reports.
type Kind string

// Kinds the upgrade engine reports (core/engine), which the device agent
// passes on.
const (
	// State: the engine persisted a new state.
	State Kind = "state"
	// Progress: bytes were written to the update slot. For a campaign: the
	// device published a step on its progress topic.
	Progress Kind = "progress"
	// Error: a step failed; the event's state is the one the engine is
	// left in. For the agent: an error it retries after.
	Error Kind = "error"
)

// Kinds the device agent reports (core/agent) beside the engine's.
const (
	// Start: the agent started.
	Start Kind = "start"
	// Connected: the agent is connected to the cloud.
	Connected Kind = "connected"
	// Inform: the device published its running version. A campaign
	// receives it too.
	Inform Kind = "inform"
	// Order: an upgrade order arrived.
	Order Kind = "order"
	// Refused: the agent refused an order.
	Refused Kind = "refused"
	// Reboot: the device reboots, or has rebooted.
	Reboot Kind = "reboot"
	// Health: the result of the health check of a new image.
	Health Kind = "health"
	// Confirmed: the new image is confirmed.
	Confirmed Kind = "confirmed"
	// RolledBack: the new image failed its health check and was rolled
	// back.
	RolledBack Kind = "rolled-back"
	// Failed: the order failed.
	Failed Kind = "failed"
	// Stop: the agent stopped, its state saved.
	Stop Kind = "stop"
	// Frozen: the agent heard no release statement from otaserve for
	// longer than it allows (its orders may be withheld), or, with
	// Message "thawed", hears them again.
	Frozen Kind = "frozen"
	// KeySet: a module took a new key set (core/keyset), or refused one,
	// with the reason in Message.
	KeySet Kind = "key-set"
)

// Operator actions on a campaign (fleet/campaign), beside the device
// reports Progress and Inform.
const (
	Pause  Kind = "pause"
	Resume Kind = "resume"
	Cancel Kind = "cancel"
)
