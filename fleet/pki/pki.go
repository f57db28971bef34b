// Package pki is the fleet's certificate authority: a CA of its own, kept in
// the server's data directory, that devices pin (the server's certificate
// comes from it unless the operator brings one) and that issues the client
// certificates devices sign in to the broker with (mutual TLS) instead of a
// password.
//
// A device makes its key pair and sends a certificate request; the CA
// signs the request's public key into a certificate whose subject common
// name is the device, "{deviceName}&{productKey}": the user name of the
// password sign-in, and what Mosquitto's use_identity_as_username takes.
// The device's private key never leaves it. Client and server certificates
// carry their own extended key usage, so neither passes for the other.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files of the CA in the data directory.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca.key"
)

// caValidity is how long the CA made at first start lasts: longer than the
// devices it signs for are expected to live.
const caValidity = 20 * 365 * 24 * time.Hour

// DefaultValidity is how long a device certificate lasts unless asked.
const DefaultValidity = 2 * 365 * 24 * time.Hour

// CA is a device certificate authority. Its methods are safe for
// concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	now     func() time.Time
}

// Open loads the CA of dir, or makes one there when dir has none (created
// true). The key file is readable by the owner only.
func Open(dir string) (ca *CA, created bool, err error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	switch {
	case cerr == nil && kerr == nil:
		ca, err := parse(certPEM, keyPEM)
		if err != nil {
			return nil, false, fmt.Errorf("fleet CA %s and %s: %w: restore both files, or remove both to make a new CA (every device certificate must then be issued again)", certPath, keyPath, err)
		}
		return ca, false, nil
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
	case cerr != nil && !errors.Is(cerr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("fleet CA: %w", cerr)
	case kerr != nil && !errors.Is(kerr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("fleet CA: %w", kerr)
	default:
		return nil, false, fmt.Errorf("fleet CA: one of %s and %s is missing: restore it, or remove the other to make a new CA (every device certificate must then be issued again)", certPath, keyPath)
	}
	certPEM, keyPEM, err = create(time.Now())
	if err != nil {
		return nil, false, err
	}
	// The key first: a certificate without its key would be refused at
	// the next start, a lone key is replaced.
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, false, fmt.Errorf("fleet CA: %w", err)
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return nil, false, fmt.Errorf("fleet CA: %w", err)
	}
	ca, err = parse(certPEM, keyPEM)
	return ca, true, err
}

func create(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet CA: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "otaport fleet CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet CA: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet CA: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

func parse(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("the certificate file holds no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("the key file holds no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the key is a %T, which cannot sign", k)
	}
	if !publicEqual(key.Public(), cert.PublicKey) {
		return nil, errors.New("the key is not the certificate's")
	}
	return &CA{cert: cert, certPEM: certPEM, key: key, now: time.Now}, nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("fleet CA: serial number: %w", err)
	}
	return n, nil
}

// CertPEM returns the CA's certificate, as a broker's client CA file.
func (c *CA) CertPEM() []byte { return c.certPEM }

// Pool returns a pool holding the CA, for a TLS listener's ClientCAs.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// CommonName is the subject common name of device pk/dn's certificate.
func CommonName(pk, dn string) string { return dn + "&" + pk }

// Issue signs the public key of csrPEM, a PEM certificate request the
// device made, into a client certificate of device pk/dn valid for
// validity (DefaultValidity when 0). The request's own subject is
// ignored: the certificate names the device the operator asked for.
func (c *CA) Issue(csrPEM []byte, pk, dn string, validity time.Duration) (certPEM []byte, notAfter time.Time, err error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, time.Time{}, errors.New("no PEM CERTIFICATE REQUEST: make one with the device's key (otaserve device cert does)")
	}
	req, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("certificate request: %w", err)
	}
	// The request's signature proves whoever sent it holds the key.
	if err := req.CheckSignature(); err != nil {
		return nil, time.Time{}, fmt.Errorf("certificate request: %w", err)
	}
	if validity <= 0 {
		validity = DefaultValidity
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, time.Time{}, err
	}
	now := c.now()
	notAfter = now.Add(validity)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: CommonName(pk, dn)},
		NotBefore:    now.Add(-5 * time.Minute), // devices' clocks drift
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, req.PublicKey, c.key)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("issue the certificate of %s/%s: %w", pk, dn, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), notAfter, nil
}

// NewRequest makes a PEM certificate request for key: what a device sends
// to be issued its certificate.
func NewRequest(key crypto.Signer, pk, dn string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: CommonName(pk, dn)},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ServerValidity is how long a server certificate made at start lasts: it
// is made again at every start, and devices pin the CA, not it.
const ServerValidity = 365 * 24 * time.Hour

// IssueServer makes a key and a server certificate for hosts (DNS names or
// IP addresses), for the server's own TLS listeners.
func (c *CA) IssueServer(hosts []string) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, errors.New("server certificate: no host names")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(ServerValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(c.cert.NotAfter) {
		tmpl.NotAfter = c.cert.NotAfter
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}
