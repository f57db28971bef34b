package broker

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/otaport/otaport/core/cloud"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// principal is who a connection signed in as.
type principal struct {
	operator bool
	user     string // operator name
	pk, dn   string // device
	topics   cloud.TopicSet
	plain    bool // signed in on the plain listener of a migration period
}

// allowed is the topic ACL: a device publishes only its own inform,
// progress and request topics and subscribes only to its own upgrade topic
// and its product's release statements and key sets, all by exact name, so no wildcard
// reaches another device; an operator uses anything under /ota/device/.
func (p principal) allowed(topic string, write bool) bool {
	if p.operator {
		return operatorAllowed(topic)
	}
	if write {
		return topic == p.topics.Inform || topic == p.topics.Progress || topic == p.topics.Request
	}
	return topic == p.topics.Upgrade || topic == p.topics.Release || topic == p.topics.KeySet
}

// accessHook signs clients in and enforces the ACL. It remembers the
// principal of each live connection, keyed by the connection itself so that
// a reused client id can never inherit another's rights.
type accessHook struct {
	mqtt.HookBase
	lookup    func(pk, dn string) (string, bool)
	operators map[string][32]byte // name -> SHA-256 of the password
	log       *slog.Logger
	policy    SignInPolicy
	tls       bool      // the listener's transport
	byDevice  *failures // failed sign-ins per device
	byAddress *failures // and per address
	// onDevice, when set, hears of every device sign-in and its listener
	// (Config.OnDeviceSignIn).
	onDevice func(pk, dn string, plain bool)

	mu    sync.Mutex
	conns map[*mqtt.Client]principal
}

func newAccessHook(lookup func(pk, dn string) (string, bool), operators map[string]string, policy SignInPolicy, tls bool, log *slog.Logger) *accessHook {
	ops := make(map[string][32]byte, len(operators))
	for u, p := range operators {
		ops[u] = sha256.Sum256([]byte(p))
	}
	policy = policy.withDefaults()
	return &accessHook{lookup: lookup, operators: ops, log: log, policy: policy, tls: tls,
		byDevice: newFailures(policy.MaxFailures, policy), byAddress: newFailures(addressFactor*policy.MaxFailures, policy),
		conns: map[*mqtt.Client]principal{}}
}

func (h *accessHook) ID() string { return "otaport-access" }

func (h *accessHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect}, []byte{b})
}

// OnConnectAuthenticate signs a client in: an operator by name and password,
// anyone else as a device with the platform's scheme. A will message is
// checked against the ACL here, since the broker publishes it later without
// asking.
func (h *accessHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	remote := cl.Net.Remote
	// Failures are counted per address and per device, and a key past its
	// count is refused before its credentials are looked at: guessing a
	// secret, or replaying captures, costs a window per few tries.
	addr := addressKey(remote)
	dev := ""
	if dn, pkey, ok := strings.Cut(user, "&"); ok {
		dev = deviceKey(pkey, dn)
	}
	want, isOp := h.operators[user]
	opRight := false
	if isOp {
		got := sha256.Sum256(pk.Connect.Password)
		opRight = subtle.ConstantTimeCompare(got[:], want[:]) == 1
	}
	// An operator who signs in right is never held to the failures of its
	// address: otaserve's own connection shares loopback with local
	// devices. Anyone else holds a place in the counts of its address and
	// device while it is checked (acquire), given back or counted as a
	// failure when the check ends.
	held, heldDev := !opRight, dev
	if held {
		ok := h.byAddress.acquire(addr)
		if ok && heldDev != "" && !h.byDevice.acquire(heldDev) {
			h.byAddress.release(addr, false)
			ok = false
		}
		if !ok {
			h.log.Warn("sign-in refused: too many failures, wait for the window to pass", "user", user, "remote", remote,
				"max_per_device", h.policy.MaxFailures, "window", h.policy.FailureWindow)
			return false
		}
	}
	failed := false
	defer func() {
		if held {
			h.byAddress.release(addr, failed)
			if heldDev != "" {
				h.byDevice.release(heldDev, failed)
			}
		}
	}()
	refuse := func(msg string, args ...any) bool {
		failed = true
		h.log.Warn(msg, append([]any{"user", user, "remote", remote}, args...)...)
		return false
	}
	var p principal
	if isOp {
		if !opRight {
			return refuse("operator sign-in refused: wrong password")
		}
		p = principal{operator: true, user: user}
		cl.ID = operatorSessionID(pk.Connect.ClientIdentifier)
	} else if cn, ok := clientCertName(cl); ok {
		// The TLS handshake verified the certificate against the
		// device CAs: it names the device, which must still exist.
		dn, pkey, found := strings.Cut(cn, "&")
		if !found || dn == "" || pkey == "" {
			return refuse("device sign-in refused", "err", fmt.Sprintf("certificate common name %q: want \"{deviceName}&{productKey}\"", cn))
		}
		if user != "" && user != cn {
			return refuse("device sign-in refused", "err", fmt.Sprintf("user name %q is not the certificate's device %q", user, cn))
		}
		if _, known := h.lookup(pkey, dn); !known {
			return refuse("device sign-in refused", "err", fmt.Sprintf("certificate of %s/%s, which is not registered", pkey, dn))
		}
		dev = deviceKey(pkey, dn)
		p = principal{pk: pkey, dn: dn, topics: cloud.Topics(pkey, dn)}
		cl.ID = sessionID(pkey, dn)
		h.byDevice.forget(dev)
	} else {
		id, err := cloud.VerifyCredentials(pk.Connect.ClientIdentifier, user, pk.Connect.Password, h.lookup)
		if err != nil {
			return refuse("device sign-in refused", "err", err)
		}
		// The plain listener of a migration period is the one place a
		// TLS broker takes securemode 3.
		plain := cl.Net.Listener == plainListenerID
		if err := h.policy.check(id, h.tls && !plain); err != nil {
			return refuse("device sign-in refused", "err", err)
		}
		if plain {
			h.log.Warn("device signed in without TLS, on the listener of the migration period: move it to ssl://", "device", id.ProductKey+"/"+id.DeviceName, "remote", remote)
		}
		p = principal{pk: id.ProductKey, dn: id.DeviceName, topics: cloud.Topics(id.ProductKey, id.DeviceName), plain: plain}
		cl.ID = sessionID(id.ProductKey, id.DeviceName)
		h.byDevice.forget(dev)
	}
	if pk.Connect.WillFlag && !p.allowed(pk.Connect.WillTopic, true) {
		h.log.Warn("sign-in refused: will on a forbidden topic", "user", user, "topic", pk.Connect.WillTopic)
		return false
	}
	h.mu.Lock()
	h.conns[cl] = p
	h.mu.Unlock()
	if !p.operator && h.onDevice != nil {
		h.onDevice(p.pk, p.dn, p.plain)
	}
	h.log.Info("signed in", "user", user, "operator", p.operator, "session", cl.ID, "remote", remote)
	return true
}

// clientCertName returns the common name of the client certificate that
// the connection's TLS handshake verified, if any.
func clientCertName(cl *mqtt.Client) (string, bool) {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return "", false
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return "", false
	}
	return st.VerifiedChains[0][0].Subject.CommonName, true
}

// OnACLCheck allows a publish (write) or subscribe to topic for the
// connection's principal; a connection that did not sign in through this
// hook gets nothing.
func (h *accessHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	h.mu.Lock()
	p, ok := h.conns[cl]
	h.mu.Unlock()
	if ok && p.allowed(topic, write) {
		return true
	}
	h.log.Warn("topic refused", "session", cl.ID, "topic", topic, "publish", write)
	return false
}

// OnDisconnect forgets the connection.
func (h *accessHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	delete(h.conns, cl)
	h.mu.Unlock()
}

func (h *accessHook) devices() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, p := range h.conns {
		if !p.operator {
			out = append(out, p.pk+"/"+p.dn)
		}
	}
	sort.Strings(out)
	// A device is signed in once: while a new connection takes over its
	// session, the old one is still here until the broker's disconnect
	// of it reaches this hook.
	return slices.Compact(out)
}

// plain reports whether device pk/dn is signed in on the plain listener.
func (h *accessHook) plain(pk, dn string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.conns {
		if !p.operator && p.pk == pk && p.dn == dn && p.plain {
			return true
		}
	}
	return false
}

// clients returns the live connections of device pk/dn.
func (h *accessHook) clients(pk, dn string) []*mqtt.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*mqtt.Client
	for cl, p := range h.conns {
		if !p.operator && p.pk == pk && p.dn == dn {
			out = append(out, cl)
		}
	}
	return out
}
