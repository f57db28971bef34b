package agent

import (
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
)

// orderAuth checks that an order is otaserve's and fresh: signed with the
// order key of device.yaml, for this device, unexpired (on a device whose
// clock is trusted), with a counter above the last order taken and the
// nonce of the latest version report. One per agent; the counter and the
// nonce are each module's (unit.rec, unit.nonce).
type orderAuth struct {
	key    ed25519.PublicKey
	pk, dn string
	clock  bool // the device's clock is trusted: check expiry
	now    func() time.Time
}

// newOrderAuth reads the order key of cfg; nil when orders are not signed.
// key, when not nil, replaces the file's.
func newOrderAuth(cfg Config, key crypto.PublicKey) (*orderAuth, error) {
	if key == nil {
		if !cfg.signedOrders() {
			if cfg.SignedOrders != nil && *cfg.SignedOrders {
				return nil, fmt.Errorf("agent: %s: not set while signed_orders is true: give otaserve's order-signing public key", cfg.where("order_key"))
			}
			return nil, nil
		}
		var err error
		if key, err = image.ReadPublicKey(cfg.OrderKey); err != nil {
			return nil, fmt.Errorf("agent: %s: %w", cfg.where("order_key"), err)
		}
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("agent: %s: a %T, want otaserve's Ed25519 order key (otaserve order-key), not an image key", cfg.where("order_key"), key)
	}
	return &orderAuth{
		key: pub, pk: cfg.Identity.ProductKey, dn: cfg.Identity.DeviceName,
		clock: cfg.TrustedClock == nil || *cfg.TrustedClock, now: time.Now,
	}, nil
}

// errDuplicate is authenticate's answer to the order the device took last,
// delivered again: ignored, not refused, so that no failure is reported for
// an upgrade that is running or done.
var errDuplicate = errors.New("the order this device took last, delivered again")

// authenticate refuses an order that is not otaserve's or not fresh, with
// the reason, wrapping ErrRefused. board is the device's board, last the
// counter of the last order the module took, nonce the nonce of the
// module's latest version report ("" before the first).
func (au *orderAuth) authenticate(o *cloud.Order, module, board string, last uint64, nonce string) error {
	refuse := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, a...))
	}
	if err := cloud.VerifyOrder(o, au.key); err != nil {
		return refuse("%v; this device takes orders signed with otaserve's order key only (order_key in device.yaml)", err)
	}
	x := o.Data.Otaport
	if x.ProductKey != au.pk || x.DeviceName != au.dn {
		return refuse("the order is for device %s/%s, this is %s/%s", x.ProductKey, x.DeviceName, au.pk, au.dn)
	}
	if x.Board != board {
		return refuse("the order is for board %q, this device is a %s", x.Board, board)
	}
	if m := o.Module(); m != module {
		return refuse("the order is for module %s, not %s", m, module)
	}
	if x.Counter == last && last != 0 {
		// otaserve signs one order per counter: this is the order the
		// device took, delivered again (a broker's redelivery, or a
		// replica that took over a campaign resending what it could not
		// tell was sent). Taking it again changes nothing, and
		// neither does its expiry.
		return errDuplicate
	}
	if au.clock {
		if x.Expires == 0 {
			return refuse("the order carries no expiry (data.otaport.expires)")
		}
		if now := au.now(); now.Unix() > x.Expires {
			return refuse("the order expired at %s; the device's clock says %s (trusted_clock: false in device.yaml if this device's clock cannot be trusted)",
				time.Unix(x.Expires, 0).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
	}
	if x.Counter < last {
		return refuse("order counter %d is not above %d, the last this device took: a replayed order", x.Counter, last)
	}
	if nonce == "" || !strings.EqualFold(x.Nonce, nonce) {
		return refuse("the order answers version report nonce %q, not %q of this device's latest report: made before that report (a replay, or sent before a reconnection; the cloud orders again after the report)",
			x.Nonce, nonce)
	}
	return nil
}

// checkStatement takes a release statement if it is otaserve's, for this
// device's product, issued after the last one taken (lastIssued) and, with
// a trusted clock, not expired.
func (au *orderAuth) checkStatement(s *cloud.Statement, lastIssued int64) error {
	if err := cloud.VerifyStatement(s, au.key); err != nil {
		return err
	}
	switch {
	case s.Product != au.pk:
		return fmt.Errorf("release statement for product %s, this device is of %s", s.Product, au.pk)
	case s.Issued <= lastIssued:
		return fmt.Errorf("release statement issued at %d, not after the last one taken (%d): a replay", s.Issued, lastIssued)
	case au.clock && au.now().Unix() >= s.Expires:
		return fmt.Errorf("release statement expired at %s", time.Unix(s.Expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}
