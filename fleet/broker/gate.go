package broker

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/otaport/otaport/core/cloud"
)

// Gate is the sign-in rule of every broker otaport runs devices on: the
// embedded one calls it from its hook, and an external broker through an
// authentication service (fleet/natsauth). It checks who a connection is
// (an operator's password, a device's certificate or its platform
// signature), the transport and freshness the device's signature claims,
// and counts failures per device and per address. Its methods are safe for
// concurrent use.
type Gate struct {
	lookup    func(pk, dn string) (string, bool)
	operators map[string][32]byte // name -> SHA-256 of the password
	policy    SignInPolicy
	byDevice  *failures // failed sign-ins per device
	byAddress *failures // and per address
}

// NewGate makes the gate of a broker whose devices' secrets lookup returns
// and whose operators sign in with the passwords of operators (name ->
// password).
func NewGate(lookup func(pk, dn string) (secret string, ok bool), operators map[string]string, policy SignInPolicy) *Gate {
	ops := make(map[string][32]byte, len(operators))
	for u, p := range operators {
		ops[u] = sha256.Sum256([]byte(p))
	}
	policy = policy.withDefaults()
	return &Gate{lookup: lookup, operators: ops, policy: policy,
		byDevice: newFailures(policy.MaxFailures, policy), byAddress: newFailures(addressFactor*policy.MaxFailures, policy)}
}

// Attempt is what a connection shows when it signs in.
type Attempt struct {
	// ClientID, Username and Password are the MQTT CONNECT's.
	ClientID, Username string
	Password           []byte
	// Remote is the client's address, host:port or host: failures are
	// counted per host.
	Remote string
	// TLS is the transport the connection came over.
	TLS bool
	// Plain is set for the listener without TLS of a migration period (the
	// embedded broker's PlainAddr): there a TLS broker takes securemode 3.
	Plain bool
	// CertName is the subject common name of a client certificate the TLS
	// handshake verified against the device CAs, "" without one.
	CertName string
}

// Principal is who a connection signed in as.
type Principal struct {
	// Operator is set for an operator, named by User.
	Operator bool
	User     string
	// ProductKey and DeviceName name a device, and Topics are its topics.
	ProductKey, DeviceName string
	Topics                 cloud.TopicSet
	// Plain is set for a device signed in on the listener without TLS of a
	// migration period.
	Plain bool
}

// ErrTooManyFailures is the refusal of a device or address past its count
// of failures, refused without its credentials being looked at.
var ErrTooManyFailures = errors.New("too many failures, wait for the window to pass")

// SignIn judges an attempt: the principal it signed in as, or why not.
// Failures are counted per address and per device, and a key past its
// count is refused before its credentials are looked at: guessing a
// secret, or replaying captures, costs a window per few tries.
func (g *Gate) SignIn(a Attempt) (Principal, error) {
	addr := addressKey(a.Remote)
	dev := ""
	if dn, pkey, ok := strings.Cut(a.Username, "&"); ok {
		dev = deviceKey(pkey, dn)
	}
	want, isOp := g.operators[a.Username]
	opRight := false
	if isOp {
		got := sha256.Sum256(a.Password)
		opRight = subtle.ConstantTimeCompare(got[:], want[:]) == 1
	}
	// An operator who signs in right is never held to the failures of its
	// address: otaserve's own connection shares loopback with local
	// devices. Anyone else holds a place in the counts of its address and
	// device while it is checked (acquire), given back or counted as a
	// failure when the check ends.
	if !opRight {
		ok := g.byAddress.acquire(addr)
		if ok && dev != "" && !g.byDevice.acquire(dev) {
			g.byAddress.release(addr, false)
			ok = false
		}
		if !ok {
			return Principal{}, fmt.Errorf("%w (at most %d per device and %d per address in %s)", ErrTooManyFailures,
				g.policy.MaxFailures, addressFactor*g.policy.MaxFailures, g.policy.FailureWindow)
		}
	}
	heldDev := dev
	p, err := g.check(a, isOp, opRight)
	if !opRight {
		g.byAddress.release(addr, err != nil)
		if heldDev != "" {
			g.byDevice.release(heldDev, err != nil)
		}
	}
	if err == nil && !p.Operator {
		// A device that signed in is not held to the mistakes of its
		// earlier attempts.
		g.byDevice.forget(deviceKey(p.ProductKey, p.DeviceName))
	}
	return p, err
}

func (g *Gate) check(a Attempt, isOp, opRight bool) (Principal, error) {
	switch {
	case isOp:
		if !opRight {
			return Principal{}, errors.New("operator sign-in refused: wrong password")
		}
		return Principal{Operator: true, User: a.Username}, nil
	case a.CertName != "":
		// The TLS handshake verified the certificate against the device
		// CAs: it names the device, which must still exist.
		dn, pkey, found := strings.Cut(a.CertName, "&")
		if !found || dn == "" || pkey == "" {
			return Principal{}, fmt.Errorf("device sign-in refused: certificate common name %q: want \"{deviceName}&{productKey}\"", a.CertName)
		}
		if a.Username != "" && a.Username != a.CertName {
			return Principal{}, fmt.Errorf("device sign-in refused: user name %q is not the certificate's device %q", a.Username, a.CertName)
		}
		if _, known := g.lookup(pkey, dn); !known {
			return Principal{}, fmt.Errorf("device sign-in refused: certificate of %s/%s, which is not registered", pkey, dn)
		}
		return Principal{ProductKey: pkey, DeviceName: dn, Topics: cloud.Topics(pkey, dn)}, nil
	}
	id, err := cloud.VerifyCredentials(a.ClientID, a.Username, a.Password, g.lookup)
	if err != nil {
		return Principal{}, fmt.Errorf("device sign-in refused: %w", err)
	}
	if err := g.policy.check(id, a.TLS && !a.Plain); err != nil {
		return Principal{}, fmt.Errorf("device sign-in refused: %w", err)
	}
	return Principal{ProductKey: id.ProductKey, DeviceName: id.DeviceName,
		Topics: cloud.Topics(id.ProductKey, id.DeviceName), Plain: a.Plain}, nil
}

// Allowed is the topic ACL: a device publishes only its own inform,
// progress and request topics and subscribes only to its own upgrade topic
// and its product's release statements and key sets, all by exact name, so
// no wildcard reaches another device; an operator uses anything under
// /ota/device/.
func (p Principal) Allowed(topic string, write bool) bool {
	if p.Operator {
		return operatorAllowed(topic)
	}
	if write {
		return slices.Contains(p.Publish(), topic)
	}
	return slices.Contains(p.Subscribe(), topic)
}

// Publish lists the topics a principal may publish on, Subscribe those it
// may subscribe to, for a broker that takes an ACL as lists: a device's are
// exact names. An operator's are filters: the OTA tree, and on an external
// broker the products' release statements and key sets too, which otaserve
// publishes through its operator connection there (the embedded broker's
// operator has no need of them: otaserve publishes them in-process).
func (p Principal) Publish() []string {
	if p.Operator {
		return []string{operatorFilter, cloud.ReleaseTopic("+"), cloud.KeySetTopic("+")}
	}
	return []string{p.Topics.Inform, p.Topics.Progress, p.Topics.Request}
}

// Subscribe: see Publish.
func (p Principal) Subscribe() []string {
	if p.Operator {
		return []string{operatorFilter}
	}
	return []string{p.Topics.Upgrade, p.Topics.Release, p.Topics.KeySet}
}

func logRefusal(log *slog.Logger, a Attempt, err error) {
	log.Warn(refusalMessage(err), "user", a.Username, "remote", a.Remote, "err", err)
}

func refusalMessage(err error) string {
	if errors.Is(err, ErrTooManyFailures) {
		return "sign-in refused: too many failures, wait for the window to pass"
	}
	return "sign-in refused"
}
