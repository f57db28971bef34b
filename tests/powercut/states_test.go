package powercut

// The engine's states as the suite names them (engine.State's values).
const (
	stateIdle        = "idle"
	stateDownloading = "downloading"
	stateVerifying   = "verifying"
	stateInstalled   = "installed"
	stateTesting     = "testing"
	stateConfirmed   = "confirmed"
	stateRolledBack  = "rolled-back"
	stateFailed      = "failed"
)
