package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
)

// Device is what an order is checked against before anything is
// downloaded: the facts of this board and of the image it runs.
type Device struct {
	// Board is the board name the port describes itself with.
	Board string
	// SlotSize is the size of the update slot in bytes.
	SlotSize uint64
	// Running is the version of the image that runs now.
	Running string
	// SecurityCounter is the highest security counter this device has
	// confirmed: an image below it may not be installed.
	SecurityCounter uint32
	// Schemes are the signature schemes of the keys the device holds
	// ("ecdsa-p256", "ed25519", "rsa-2048", "rsa-3072").
	Schemes []string
	// KeyIDs are the hex SHA-256 key hashes of those keys.
	KeyIDs []string
}

// Verdict is what CheckOrder decides.
type Verdict int

const (
	// Install: the order is acceptable; carry it out.
	Install Verdict = iota + 1
	// AlreadyRunning: the device runs the ordered version; report it
	// instead of installing it again (the cloud then counts it done).
	AlreadyRunning
)

// ErrRefused is wrapped by every refusal of CheckOrder.
var ErrRefused = errors.New("order refused")

// CheckOrder checks an order against the device before a byte is downloaded:
// the board (the "mix-and-match" threat), the size against the update slot,
// the version against the running one (a downgrade or a reinstall is
// refused unless allowDowngrade; the same version is AlreadyRunning), the
// security counter against the device's (always), and the signature scheme
// and key against the keys the device holds. A refusal wraps ErrRefused and
// says what did not match and what to do.
func CheckOrder(o *cloud.Order, d Device, allowDowngrade bool) (Verdict, error) {
	refuse := func(format string, a ...any) (Verdict, error) {
		return 0, fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, a...))
	}
	x := o.Data.Otaport
	if x == nil {
		x = &cloud.Extension{}
	}
	if x.Board != "" && x.Board != d.Board {
		return refuse("the image is built for board %s, this device is a %s: upload an image for %s", x.Board, d.Board, d.Board)
	}
	// A delta (isDiff) goes to the engine like any image: it applies a
	// delta image against the running one, and refuses, before writing
	// anything, one made from another base.
	if o.Data.Size <= 0 || uint64(o.Data.Size) > d.SlotSize {
		return refuse("the image is %d bytes and the update slot holds %d", o.Data.Size, d.SlotSize)
	}
	want, err := image.ParseVersion(o.Data.Version)
	if err != nil {
		return refuse("version %q: %v", o.Data.Version, err)
	}
	if x.SecurityCounter != 0 && x.SecurityCounter < d.SecurityCounter {
		return refuse("security counter %d is below this device's %d: the image is older than one this device has accepted (rollback protection)", x.SecurityCounter, d.SecurityCounter)
	}
	if x.Scheme != "" && len(d.Schemes) > 0 && !slices.Contains(d.Schemes, x.Scheme) {
		return refuse("the image is signed with %s and this device holds %s keys only", x.Scheme, strings.Join(d.Schemes, ", "))
	}
	if x.KeyID != "" && len(d.KeyIDs) > 0 && !slices.ContainsFunc(d.KeyIDs, func(k string) bool { return strings.EqualFold(k, x.KeyID) }) {
		return refuse("the image is signed with key %s, which this device does not hold", shortHex(x.KeyID))
	}
	if d.Running != "" {
		cur, err := image.ParseVersion(d.Running)
		if err == nil {
			switch c := want.Compare(cur); {
			case c == 0:
				return AlreadyRunning, nil
			case c < 0 && !allowDowngrade:
				return refuse("version %s is older than the running %s: downgrades are off (allow_downgrade in device.yaml)", want, cur)
			}
		}
	}
	return Install, nil
}

func shortHex(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// digestString returns the order's digest as the engine takes it,
// "sha256:HEX" or "md5:HEX", or "" when the order has none.
func digestString(o *cloud.Order) string {
	method, sum := o.Digest()
	if method == "" {
		return ""
	}
	return fmt.Sprintf("%s:%x", method, sum)
}
