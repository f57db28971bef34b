// Package natsauth is otaport's authentication service for a NATS server
// cluster whose MQTT port the devices sign in to: it answers the NATS
// server's auth callout (nats-server 2.10 and later, `authorization {
// auth_callout { … } }`) with the sign-in rule of the embedded broker
// (broker.Gate: the platform's signature, the transport, a fresh timestamp,
// failures counted per device and per address) and a user whose publish and
// subscribe permissions are the device's topics as NATS subjects (Subject).
//
// It does not carry orders or reports: otaserve sends and reads those over
// the cluster's MQTT port, as with any external broker, so that an order to
// an offline device is kept in its persistent session. docs/otaserve.md
// shows the cluster's configuration.
package natsauth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/otaport/otaport/fleet/broker"
)

// CalloutSubject is where the NATS server asks who a client is.
const CalloutSubject = "$SYS.REQ.USER.AUTH"

// queueGroup lets several otaserve processes answer the callout: the
// server's request goes to one of them.
const queueGroup = "otaserve"

// Config configures a Service.
type Config struct {
	// URL is the cluster, one or more NATS URLs separated by commas, with
	// the user of the callout account that auth_callout's auth_users
	// names: "nats://callout:secret@10.0.0.1:4222,nats://10.0.0.2:4222".
	// The client moves to another node when its own dies, and learns the
	// cluster's other nodes from the one it reaches.
	URL string
	// Issuer is the account key pair whose public key is auth_callout's
	// issuer: it signs the answers and the users in them.
	Issuer nkeys.KeyPair
	// Account is the account every device and operator is placed in; it
	// must have JetStream, where the MQTT gateway keeps sessions.
	Account string
	// Gate is the sign-in rule.
	Gate *broker.Gate
	// DeviceCAs, when set, lets a device sign in by a client certificate
	// one of them issued (the server's TLS must ask for one: `verify:
	// true`); its common name names the device as in broker.Config.
	DeviceCAs *x509.CertPool
	// OnDeviceSignIn, when set, hears of every device that signed in.
	OnDeviceSignIn func(pk, dn string)
	// Logger receives the refusals and sign-ins; nil discards them.
	Logger *slog.Logger
}

// Service answers the callout until Close.
type Service struct {
	cfg    Config
	issuer string // the public key of cfg.Issuer
	log    *slog.Logger
	nc     *nats.Conn
}

// Start connects to the cluster and answers its callout. It returns once
// the subscription is in place on the node it reached, or when ctx ends.
func Start(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.URL == "" || cfg.Issuer == nil || cfg.Account == "" || cfg.Gate == nil {
		return nil, errors.New("natsauth: URL, Issuer, Account and Gate are all required")
	}
	pub, err := cfg.Issuer.PublicKey()
	if err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return nil, fmt.Errorf("natsauth: the issuer is not an account key (its public key starts with A): %v", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, issuer: pub, log: cfg.Logger}
	opts := []nats.Option{
		nats.Name("otaserve auth callout"),
		// Keep trying for as long as the process lives: without the
		// callout no device signs in, so giving up helps no one.
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				s.log.Warn("auth callout: disconnected from the NATS cluster; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.log.Info("auth callout: reconnected", "server", nc.ConnectedUrlRedacted())
		}),
	}
	// The user in one URL is the user for every node: the client
	// reconnects to nodes it was given without one, and to nodes it
	// learns from the cluster.
	if user, pass, ok := userInfo(cfg.URL); ok {
		opts = append(opts, nats.UserInfo(user, pass))
	}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(max(time.Millisecond, time.Until(dl))))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("natsauth: connect to %s: %w", redact(cfg.URL), err)
	}
	if _, err := nc.QueueSubscribe(CalloutSubject, queueGroup, s.handle); err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsauth: subscribe %s: %w", CalloutSubject, err)
	}
	// The subscription is in place once the server has seen it.
	if err := nc.FlushWithContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsauth: subscribe %s: %w", CalloutSubject, err)
	}
	s.nc = nc
	s.log.Info("auth callout serving", "server", nc.ConnectedUrlRedacted(), "issuer", pub, "account", cfg.Account)
	return s, nil
}

// Close stops answering; sign-ins wait for another service or time out.
func (s *Service) Close() error {
	if err := s.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		s.nc.Close()
		return fmt.Errorf("natsauth: close: %w", err)
	}
	return nil
}

// handle answers one request: a user for the principal, or a refusal.
func (s *Service) handle(m *nats.Msg) {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
	if err != nil {
		// Without the request's user key there is no one to refuse: the
		// server times the client out.
		s.log.Warn("auth callout: request that is not an authorization request", "err", err)
		return
	}
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	user, err := s.authorize(req)
	if err != nil {
		// The client learns "not authorized" whatever the reason, so that
		// a refusal teaches a guesser nothing; the log has the reason.
		resp.Error = "not authorized"
	} else {
		resp.Jwt = user
	}
	tok, err := resp.Encode(s.cfg.Issuer)
	if err != nil {
		s.log.Error("auth callout: sign the answer", "err", err)
		return
	}
	if err := m.Respond([]byte(tok)); err != nil {
		s.log.Warn("auth callout: answer", "err", err)
	}
}

// authorize judges a request with the gate and encodes the user it
// signed in as.
func (s *Service) authorize(req *jwt.AuthorizationRequestClaims) (string, error) {
	ci, co := req.ClientInformation, req.ConnectOptions
	a := broker.Attempt{ClientID: ci.MQTT, Username: co.Username, Password: []byte(co.Password),
		Remote: ci.Host, TLS: req.TLS != nil}
	if ci.Type != "mqtt" {
		// Devices and otaserve's operator speak MQTT; a NATS client with a
		// device's credentials would get its subjects without the MQTT
		// gateway's rules.
		err := fmt.Errorf("a %q client, not MQTT: only MQTT clients sign in through otaserve", ci.Type)
		s.log.Warn("sign-in refused", "user", a.Username, "remote", a.Remote, "err", err)
		return "", err
	}
	if req.TLS != nil && s.cfg.DeviceCAs != nil {
		a.CertName = s.certName(req.TLS)
	}
	p, err := s.cfg.Gate.SignIn(a)
	if err != nil {
		s.log.Warn("sign-in refused", "user", a.Username, "client_id", ci.MQTT, "remote", a.Remote, "server", req.Server.Name, "err", err)
		return "", err
	}
	pub, err := permissions(p.Publish())
	if err != nil {
		return "", fmt.Errorf("permissions of %s: %w", a.Username, err)
	}
	sub, err := permissions(p.Subscribe())
	if err != nil {
		return "", fmt.Errorf("permissions of %s: %w", a.Username, err)
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Audience = s.cfg.Account // the account the user is placed in
	uc.Name = a.Username
	uc.Pub.Allow.Add(pub...)
	uc.Sub.Allow.Add(sub...)
	uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeMqtt)
	tok, err := uc.Encode(s.cfg.Issuer)
	if err != nil {
		return "", fmt.Errorf("sign the user of %s: %w", a.Username, err)
	}
	if !p.Operator && s.cfg.OnDeviceSignIn != nil {
		s.cfg.OnDeviceSignIn(p.ProductKey, p.DeviceName)
	}
	s.log.Info("signed in", "user", a.Username, "operator", p.Operator, "client_id", ci.MQTT, "remote", a.Remote, "server", req.Server.Name)
	return tok, nil
}

// certName is the common name of the client certificate the server
// verified, if it chains to one of the device CAs too: the server's own CA
// file may trust more than the fleet's devices.
func (s *Service) certName(t *jwt.ClientTLS) string {
	if len(t.VerifiedChains) == 0 || len(t.VerifiedChains[0]) == 0 {
		return ""
	}
	blk, _ := pem.Decode([]byte(t.VerifiedChains[0][0]))
	if blk == nil {
		return ""
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return ""
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: s.cfg.DeviceCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		s.log.Warn("client certificate not of a device CA; signing in by secret", "subject", cert.Subject.String(), "err", err)
		return ""
	}
	return cert.Subject.CommonName
}

// redact drops the passwords from a comma-separated URL list, for errors.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// userInfo is the first user and password in a comma-separated URL list.
func userInfo(urls string) (user, pass string, ok bool) {
	for _, p := range strings.Split(urls, ",") {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			pass, _ := u.User.Password()
			return u.User.Username(), pass, true
		}
	}
	return "", "", false
}
