package broker

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"slices"
	"sort"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// accessHook signs clients in through the Gate and enforces the ACL. It
// remembers the principal of each live connection, keyed by the connection
// itself so that a reused client id can never inherit another's rights.
type accessHook struct {
	mqtt.HookBase
	gate *Gate
	log  *slog.Logger
	tls  bool // the listener's transport
	// onDevice, when set, hears of every device sign-in and its listener
	// (Config.OnDeviceSignIn).
	onDevice func(pk, dn string, plain bool)

	mu    sync.Mutex
	conns map[*mqtt.Client]Principal
}

func newAccessHook(gate *Gate, tls bool, log *slog.Logger) *accessHook {
	return &accessHook{gate: gate, log: log, tls: tls, conns: map[*mqtt.Client]Principal{}}
}

func (h *accessHook) ID() string { return "otaport-access" }

func (h *accessHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect}, []byte{b})
}

// OnConnectAuthenticate signs a client in: an operator by name and password,
// anyone else as a device with the platform's scheme or its certificate. A
// will message is checked against the ACL here, since the broker publishes
// it later without asking.
func (h *accessHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	a := Attempt{
		ClientID: pk.Connect.ClientIdentifier, Username: string(pk.Connect.Username), Password: pk.Connect.Password,
		Remote: cl.Net.Remote, TLS: h.tls, Plain: cl.Net.Listener == plainListenerID,
	}
	if cn, ok := clientCertName(cl); ok {
		a.CertName = cn
	}
	p, err := h.gate.SignIn(a)
	if err != nil {
		logRefusal(h.log, a, err)
		return false
	}
	if p.Operator {
		cl.ID = operatorSessionID(pk.Connect.ClientIdentifier)
	} else {
		cl.ID = sessionID(p.ProductKey, p.DeviceName)
	}
	if p.Plain {
		h.log.Warn("device signed in without TLS, on the listener of the migration period: move it to ssl://", "device", p.ProductKey+"/"+p.DeviceName, "remote", a.Remote)
	}
	if pk.Connect.WillFlag && !p.Allowed(pk.Connect.WillTopic, true) {
		h.log.Warn("sign-in refused: will on a forbidden topic", "user", a.Username, "topic", pk.Connect.WillTopic)
		return false
	}
	h.mu.Lock()
	h.conns[cl] = p
	h.mu.Unlock()
	if !p.Operator && h.onDevice != nil {
		h.onDevice(p.ProductKey, p.DeviceName, p.Plain)
	}
	h.log.Info("signed in", "user", a.Username, "operator", p.Operator, "session", cl.ID, "remote", a.Remote)
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
	if ok && p.Allowed(topic, write) {
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
		if !p.Operator {
			out = append(out, p.ProductKey+"/"+p.DeviceName)
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
		if !p.Operator && p.ProductKey == pk && p.DeviceName == dn && p.Plain {
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
		if !p.Operator && p.ProductKey == pk && p.DeviceName == dn {
			out = append(out, cl)
		}
	}
	return out
}
