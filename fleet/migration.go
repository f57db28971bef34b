package fleet

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/fleet/store"
)

// The migration from the release before signed orders and TLS by default
// (docs/security.md, "Moving a fleet from before signed orders"): devices
// whose device.yaml predates both sign in on the plain MQTT listener
// (Config.MQTTPlainAddr), download over plain HTTP (Config.FirmwarePlainAddr)
// and learn the order key from the endorsement every signed order carries
// (EndorsementFile). The operator ends the period by dropping the plain
// listeners; LeftBehind then names the devices that cannot follow.

// EndorsementFile is the file of the data directory that holds the image
// signing key's endorsement of the order key (otaserve order-key
// --endorse), which signed orders then carry.
const EndorsementFile = "order-key.endorsement"

// EndorsementPath is where otaserve keeps the endorsement in data
// directory dir.
func EndorsementPath(dir string) string { return filepath.Join(dir, EndorsementFile) }

// loadEndorsement reads the endorsement of the order key, "" without one.
// One that the image keys (Config.Keys) do not verify for this order key
// stops the start: devices would refuse it, and the migration would stall
// without a word.
func (s *Server) loadEndorsement() (string, error) {
	path := EndorsementPath(s.cfg.DataDir)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the order key's endorsement: %w", err)
	}
	e := strings.TrimSpace(string(b))
	pub := s.orderKey.Public().(ed25519.PublicKey)
	if err := cloud.VerifyEndorsement(s.cfg.Keys, pub, e); err != nil {
		return "", fmt.Errorf("%s: %w: make it again with otaserve order-key --data %s --endorse IMAGE-KEY.pem, and run with --key of that image key", path, err, s.cfg.DataDir)
	}
	return e, nil
}

// listenPlainFirmware binds the plain firmware listener of a migration
// period, serving firmware and nothing else: the images are signed, and
// the API, the dashboard and their token stay on TLS.
func (s *Server) listenPlainFirmware(firmware http.Handler) error {
	if s.cfg.FirmwarePlainAddr == "" {
		return nil
	}
	if s.cfg.MQTTPlainAddr == "" || s.cfg.TLS == nil {
		return errors.New("plain firmware listener (--insecure-plain-http): it serves the devices of the plain MQTT listener; give --insecure-plain-mqtt too, without --insecure-plain")
	}
	ln, err := net.Listen("tcp", s.cfg.FirmwarePlainAddr)
	if err != nil {
		return fmt.Errorf("listen for plain firmware downloads on %s (--insecure-plain-http): %w%s", s.cfg.FirmwarePlainAddr, err, listenFix("--insecure-plain-http", err))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /firmware/{sha256}", firmware)
	s.plainLn = ln
	s.plainHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// deviceFirmwareURL is the URL device key downloads img from: over plain
// HTTP while it is signed in on the plain MQTT listener, since a device
// configured before TLS has no CA to check otaserve's certificate with.
func (s *Server) deviceFirmwareURL(base string, plainIn func(pk, dn string) bool) func(store.Image, string) string {
	return func(img store.Image, key string) string {
		pk, dn, _ := store.SplitDeviceKey(key)
		if s.plainLn != nil && plainIn(pk, dn) {
			return "http://" + s.plainLn.Addr().String() + "/firmware/" + img.SHA256
		}
		return base + "/firmware/" + img.SHA256
	}
}

// noteSignIn keeps whether a device's latest sign-in was on the plain
// listener, writing only a change.
func (s *Server) noteSignIn(pk, dn string, plain bool) {
	d, err := s.store.Device(pk, dn)
	if err != nil || d.PlainSignIn == plain {
		return
	}
	err = s.store.Write(func(w *store.Writer) error {
		return w.UpdateDevice(pk, dn, func(dev *store.Device) error {
			dev.PlainSignIn = plain
			return nil
		})
	})
	if err != nil {
		s.log.Warn("keep the device's listener", "device", pk+"/"+dn, "err", err)
	}
}

// LeftBehind names the devices the migration has not moved: those whose
// latest sign-in was on the plain MQTT listener, when this server has none
// (they cannot sign in until their device.yaml says ssl:// and ca), and
// those whose latest version report says they take unsigned orders.
func (s *Server) LeftBehind() (plain, unsigned []string, err error) {
	devs, err := s.store.Devices()
	if err != nil {
		return nil, nil, err
	}
	for _, d := range devs {
		if d.PlainSignIn && s.cfg.MQTTPlainAddr == "" {
			plain = append(plain, d.Key())
		}
		if d.UnsignedOrders {
			unsigned = append(unsigned, d.Key())
		}
	}
	return plain, unsigned, nil
}
