package campaign

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/fleet/store"
)

// Publisher sends one MQTT message: the embedded broker's in-process
// publish, or the service's MQTT client to an external broker; tests may
// pass any other. Publish may block until the broker acknowledges; the
// service never calls it while it holds its lock.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Store is what the service needs of the fleet database (*store.Store).
// Its changes go through Write, so that a failed write changes nothing, in
// the database or in the service's memory.
type Store interface {
	Campaigns() ([]store.Campaign, error)
	Campaign(id uint64) (store.Campaign, error)
	Progress(id uint64) ([]store.Progress, error)
	Image(id uint64) (store.Image, error)
	Images() ([]store.Image, error)
	AddImage(img store.Image) (store.Image, error)
	Devices() ([]store.Device, error)
	Write(fn func(*store.Writer) error) error
}

// Config configures a Service.
type Config struct {
	Store Store
	// FirmwareURL returns the URL a device downloads an image from.
	FirmwareURL func(img store.Image) string
	// DeviceFirmwareURL, when set, replaces FirmwareURL with the URL for
	// one device (its store.DeviceKey): a device signed in without TLS, in
	// a migration period, gets a URL without TLS.
	DeviceFirmwareURL func(img store.Image, device string) string
	// OrderKey signs every order (cloud.SignOrder) for the device, board
	// and module, with an expiry, the device's next order counter and the
	// nonce of its latest version report. nil sends unsigned orders, which
	// only a device with signed_orders: false takes.
	OrderKey ed25519.PrivateKey
	// OrderTTL is how long a signed order is valid; 0 means
	// DefaultOrderTTL.
	OrderTTL time.Duration
	// Endorsement, with OrderKey, is the image signing key's endorsement of
	// the order key (cloud.Endorse): every signed order carries it with the
	// key, so that a device provisioned before signed orders learns the key
	// from it (its agent's migration mode).
	Endorsement string
	Logger      *slog.Logger
	// Replica, when set, makes the service one of several otaserve
	// processes on one PostgreSQL database: it runs the campaigns only
	// while Replica holds their lease, its orders go through the
	// database's outbox, and Store must be Replica.Store() (every write
	// fenced by the lease).
	Replica *Replica
}

// Service runs the campaigns: it keeps a Machine per active campaign, feeds
// it the devices' MQTT messages and the operator's actions, persists every
// change before it acts on it, and publishes the orders.
//
// Orders go through an outbox that its own goroutines publish: the lock over
// the machines is held for memory and the database only, never while a
// publish waits for the broker (a broker's acknowledgement can wait behind
// device reports that wait for the lock, which deadlocked a 10,000-device
// campaign).
type Service struct {
	cfg Config
	log *slog.Logger
	out orderQueue

	mu     sync.Mutex
	active map[uint64]*Machine
	// images holds each active campaign's images by image ID.
	images map[uint64]map[uint64]store.Image
	lastID int64
	// sent holds the ids of the last orders sent to each device, newest
	// last, so that a failure report about one a newer order replaced (a
	// device refusing it: its nonce is stale) does not fail the device.
	// Only ids the service sent count: the platform's SDKs report a
	// constant id. In memory only: after a restart every report counts.
	sent map[string][]int64
}

// maxSent is how many order ids per device sent remembers.
const maxSent = 8

// pending is an order the service decided on: a campaign's, for a device.
type pending struct {
	campaign uint64
	key      string
}

// NewService loads the active campaigns from the store. Orders wait until a
// publisher is attached with SetPublisher.
func NewService(cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, out: newOutbox(cfg.Logger), active: map[uint64]*Machine{}, images: map[uint64]map[uint64]store.Image{}, sent: map[string][]int64{}}
	if cfg.OrderTTL == 0 {
		s.cfg.OrderTTL = DefaultOrderTTL
	}
	if cfg.Replica != nil {
		// A replica runs campaigns only while it holds their lease
		// (Replica.Run loads them then).
		s.out = cfg.Replica.attach(s)
		return s, nil
	}
	if err := s.loadLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// loadLocked loads the active campaigns from the store.
func (s *Service) loadLocked() error {
	cs, err := s.cfg.Store.Campaigns()
	if err != nil {
		return err
	}
	all, err := s.cfg.Store.Images()
	if err != nil {
		return err
	}
	for _, c := range cs {
		if c.State != store.CampaignRunning && c.State != store.CampaignPaused {
			continue
		}
		ps, err := s.cfg.Store.Progress(c.ID)
		if err != nil {
			return err
		}
		imgs := map[uint64]store.Image{}
		for _, ci := range c.Images {
			img, err := s.cfg.Store.Image(ci.ID)
			if err != nil {
				return fmt.Errorf("load campaign %d: %w", c.ID, err)
			}
			imgs[img.ID] = img
		}
		s.images[c.ID] = imgs
		m := NewMachine(c, ps)
		m.SetDeltas(deltasOf(imgs, all))
		s.active[c.ID] = m
	}
	return nil
}

// deltasOf returns, by target ID, the delta images among all that rebuild
// one of imgs (a campaign's images).
func deltasOf(imgs map[uint64]store.Image, all []store.Image) map[uint64][]store.Image {
	out := map[uint64][]store.Image{}
	for _, d := range all {
		if _, ok := imgs[d.DeltaTarget]; ok && d.IsDelta() {
			out[d.DeltaTarget] = append(out[d.DeltaTarget], d)
		}
	}
	return out
}

// SetPublisher attaches the MQTT side and starts publishing the queued
// orders through it, replacing the previous publisher; nil stops publishing
// (the orders being published then may be lost, and the devices get them
// again when they next report their version; see Machine). It returns once
// the previous publisher's goroutines have stopped, so a server calls
// SetPublisher(nil) before it closes its MQTT connection.
func (s *Service) SetPublisher(p Publisher) {
	s.out.start(p)
}

// Flush waits until every order decided so far has been published (or has
// failed to be), or until ctx ends. Orders are published in the background;
// tests and tools that want them out call Flush.
func (s *Service) Flush(ctx context.Context) error {
	return s.out.flush(ctx)
}

// CreateRequest is an operator's new campaign.
type CreateRequest struct {
	// ImageIDs are the images to send, one per board of the target: each
	// device gets the image of its board.
	ImageIDs []uint64     `json:"image_ids"`
	Target   store.Target `json:"target"`
	// Module is the module of the target devices to upgrade; empty for
	// the default one. Each device's image is the one of its module's
	// board.
	Module         string `json:"module,omitempty"`
	Waves          string `json:"waves"` // "1,10%,100%"
	SuccessPercent int    `json:"success_percent"`
	ErrorPercent   int    `json:"error_percent"`
}

// ErrInvalid wraps every error of Create caused by the request itself.
var ErrInvalid = errors.New("invalid campaign")

// Create checks a request, stores the campaign and starts its first wave.
// It honours ctx as the operator actions do (see Pause).
func (s *Service) Create(ctx context.Context, req CreateRequest) (store.Campaign, error) {
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if len(req.ImageIDs) == 0 {
		return store.Campaign{}, invalid("no image: give the image of each board of the target (see the image list)")
	}
	module := cloud.ModuleName(req.Module)
	if err := cloud.CheckModule(module); err != nil {
		return store.Campaign{}, invalid("%v", err)
	}
	byBoard := map[string]store.Image{}
	byID := map[uint64]store.Image{}
	for _, id := range req.ImageIDs {
		img, err := s.cfg.Store.Image(id)
		if errors.Is(err, store.ErrNotFound) {
			return store.Campaign{}, invalid("image %d does not exist: see the image list", id)
		} else if err != nil {
			return store.Campaign{}, err
		}
		if other, ok := byBoard[img.Board]; ok && other.ID != img.ID {
			return store.Campaign{}, invalid("images %d and %d are both for board %s: give one image per board", other.ID, img.ID, img.Board)
		}
		byBoard[img.Board], byID[img.ID] = img, img
	}
	specs, err := ParseWaves(req.Waves)
	if err != nil {
		return store.Campaign{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	devs, err := s.cfg.Store.Devices()
	if err != nil {
		return store.Campaign{}, err
	}
	keys, picked, err := selectTarget(req.Target, module, devs, byBoard)
	if err != nil {
		return store.Campaign{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	versions := map[string]string{}
	for k, m := range picked {
		versions[k] = m.Version
	}
	var images []store.CampaignImage
	for _, img := range byBoard {
		images = append(images, store.CampaignImage{ID: img.ID, Board: img.Board, Version: img.Version})
	}
	slices.SortFunc(images, func(a, b store.CampaignImage) int { return strings.Compare(a.Board, b.Board) })

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return store.Campaign{}, fmt.Errorf("create campaign: %w", err)
	}
	for id, m := range s.active {
		if m.c.ModuleName() != module {
			continue // a device's modules upgrade independently
		}
		for _, k := range keys {
			if p, ok := m.Device(k); ok && !p.State.Terminal() {
				return store.Campaign{}, invalid("device %s is still in campaign %d (%s) for module %s: cancel that campaign or wait for it to finish", k, id, m.Campaign().State, module)
			}
		}
	}
	now := time.Now().UTC()
	c, ps, err := NewCampaign(store.Campaign{
		Images: images, Target: req.Target, Module: cloud.ModuleField(module),
		SuccessPercent: req.SuccessPercent, ErrorPercent: req.ErrorPercent, Created: now, Updated: now,
	}, keys, specs, versions)
	if err != nil {
		return store.Campaign{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for i := range ps {
		mod := picked[ps[i].Device]
		ps[i].Image, ps[i].FromHash = byBoard[mod.Board].ID, mod.ImageHash
	}
	all, err := s.cfg.Store.Images()
	if err != nil {
		return store.Campaign{}, err
	}
	// The campaign, its first wave's orders and the registry's mirror of
	// them are stored in one transaction: a failure leaves no campaign
	// behind that would wait for a start it never gets.
	var m *Machine
	var orders []string
	err = s.cfg.Store.Write(func(w *store.Writer) error {
		stored, err := w.AddCampaign(c, ps)
		if err != nil {
			return err
		}
		m = NewMachine(stored, ps)
		m.SetDeltas(deltasOf(byID, all))
		orders = m.Start(now)
		return s.persist(w, m)
	})
	if err != nil {
		return store.Campaign{}, err
	}
	c = m.Campaign()
	s.active[c.ID] = m
	s.images[c.ID] = byID
	s.sendLocked(pendingOf(c.ID, orders))
	s.settleLocked(m)
	s.log.Info("campaign created", "campaign", c.ID, "module", module, "images", c.ImageIDs(), "devices", len(keys), "waves", len(c.Waves))
	return m.Campaign(), nil
}

// selectTarget returns the device keys a target selects, in key order, with
// the records of their module. Every device must have the module, and an
// image of the module's board among images (by board), and every image a
// device: sending an image to another board is the "mix-and-match" mistake.
func selectTarget(t store.Target, module string, devs []store.Device, images map[string]store.Image) ([]string, map[string]store.Module, error) {
	set := 0
	for _, on := range []bool{t.Product != "", t.Group != "", len(t.Devices) > 0} {
		if on {
			set++
		}
	}
	if set != 1 {
		return nil, nil, errors.New("target: give exactly one of product=PK, group=G or devices=pk/dn1,pk/dn2")
	}
	byKey := map[string]store.Device{}
	for _, d := range devs {
		byKey[d.Key()] = d
	}
	var picked []store.Device
	switch {
	case t.Product != "":
		for _, d := range devs {
			if d.ProductKey == t.Product {
				picked = append(picked, d)
			}
		}
	case t.Group != "":
		for _, d := range devs {
			if d.Group == t.Group {
				picked = append(picked, d)
			}
		}
	default:
		seen := map[string]bool{}
		for _, k := range t.Devices {
			d, ok := byKey[k]
			if !ok {
				return nil, nil, fmt.Errorf("target device %q is not registered (devices are named productKey/deviceName)", k)
			}
			if !seen[k] {
				seen[k] = true
				picked = append(picked, d)
			}
		}
	}
	if len(picked) == 0 {
		return nil, nil, fmt.Errorf("target %s selects no registered device", describeTarget(t))
	}
	var keys []string
	mods := map[string]store.Module{}
	used := map[string]bool{}
	for _, d := range picked {
		m, ok := d.Module(module)
		if !ok {
			var have []string
			for _, m := range d.ModuleList() {
				have = append(have, m.Name)
			}
			return nil, nil, fmt.Errorf("device %s has no module %s (it has %s): register it (otaserve device add --module %s=BOARD), or target only devices that have it",
				d.Key(), module, strings.Join(have, ", "), module)
		}
		if m.Board == "" {
			return nil, nil, fmt.Errorf("device %s reported module %s but its board is not registered: register it (otaserve device add --module %s=BOARD)", d.Key(), module, module)
		}
		if _, ok := images[m.Board]; !ok {
			what := "device " + d.Key()
			if module != store.DefaultModule {
				what = fmt.Sprintf("device %s's module %s", d.Key(), module)
			}
			return nil, nil, fmt.Errorf("%s is a %s board and the campaign has no image for %s (it has %s): add a %s image, or target only devices of those boards",
				what, m.Board, m.Board, describeImages(images), m.Board)
		}
		used[m.Board] = true
		keys = append(keys, d.Key())
		mods[d.Key()] = m
	}
	for board, img := range images {
		if !used[board] {
			return nil, nil, fmt.Errorf("image %d is for %s and target %s selects no %s device: leave it out", img.ID, board, describeTarget(t), board)
		}
	}
	slices.Sort(keys)
	return keys, mods, nil
}

// describeImages lists images by board, "image 3 for b1, image 4 for b2".
func describeImages(images map[string]store.Image) string {
	var out []string
	for board, img := range images {
		out = append(out, fmt.Sprintf("image %d for %s", img.ID, board))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

func describeTarget(t store.Target) string {
	switch {
	case t.Product != "":
		return "product=" + t.Product
	case t.Group != "":
		return "group=" + t.Group
	}
	return "devices=" + strings.Join(t.Devices, ",")
}

// Pause, Resume and Cancel are the operator's actions on a campaign.
//
// Each waits for the campaigns' lock, which a large batch of device reports
// may hold for a while. An operator's request that has given up meanwhile
// (ctx done) changes nothing and returns ctx's error, so a request that
// timed out never acts behind the operator's back; once the change has begun
// it runs to its end, since a database transaction is not interrupted
// half-way.
func (s *Service) Pause(ctx context.Context, id uint64) (store.Campaign, error) {
	return s.operate(ctx, id, event.Pause)
}

// Resume continues a paused campaign, starting the waves that are due.
func (s *Service) Resume(ctx context.Context, id uint64) (store.Campaign, error) {
	return s.operate(ctx, id, event.Resume)
}

// Cancel ends a campaign: no further orders; devices not yet ordered are
// canceled. Devices already upgrading finish on their own.
func (s *Service) Cancel(ctx context.Context, id uint64) (store.Campaign, error) {
	return s.operate(ctx, id, event.Cancel)
}

func (s *Service) operate(ctx context.Context, id uint64, k event.Kind) (store.Campaign, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return store.Campaign{}, fmt.Errorf("%s campaign %d: %w", k, id, err)
	}
	m, ok := s.active[id]
	if !ok {
		c, err := s.cfg.Store.Campaign(id)
		if err != nil {
			return store.Campaign{}, err
		}
		return c, fmt.Errorf("campaign %d is %s: %w", id, c.State, ErrState)
	}
	d := m.Draft()
	orders, err := d.Apply(Event{Kind: k, At: time.Now().UTC()})
	if err != nil {
		return m.Campaign(), err
	}
	if err := s.cfg.Store.Write(func(w *store.Writer) error { return s.persist(w, d) }); err != nil {
		return m.Campaign(), fmt.Errorf("%s campaign %d: %w", k, id, err)
	}
	// Memory changes only now that the write has committed; then the
	// orders go out: an order is never sent that a restart would forget.
	m.Commit(d)
	s.sendLocked(pendingOf(id, orders))
	s.settleLocked(m)
	return m.Campaign(), nil
}

// persist writes a machine's campaign and changed progress, and mirrors
// the changes into the registry, within one transaction.
func (s *Service) persist(w *store.Writer, m *Machine) error {
	changed := m.Changed()
	if err := w.SaveCampaign(m.Campaign(), changed); err != nil {
		return err
	}
	keys := make([]string, len(changed))
	for i, p := range changed {
		keys[i] = p.Device
	}
	if err := w.PrefetchDevices(keys); err != nil {
		return err
	}
	for _, p := range changed {
		s.syncDevice(w, p, m.c.Module)
	}
	return nil
}

// settleLocked forgets a campaign that has ended, once it is stored.
func (s *Service) settleLocked(m *Machine) {
	if m.Active() {
		return
	}
	c := m.Campaign()
	if _, ok := s.active[c.ID]; ok {
		delete(s.active, c.ID)
		delete(s.images, c.ID)
		s.log.Info("campaign ended", "campaign", c.ID, "state", c.State, "reason", c.Reason)
	}
}

// syncDevice mirrors a device's campaign progress into the registry's
// record of the campaign's module.
func (s *Service) syncDevice(w *store.Writer, p store.Progress, module string) {
	pk, dn, _ := store.SplitDeviceKey(p.Device)
	err := w.UpdateDevice(pk, dn, func(dev *store.Device) error {
		dev.EditModule(module, func(d *store.Module) {
			switch p.State {
			case store.ProgressOrdered, store.ProgressRunning:
				d.State = store.DeviceUpgrading
			case store.ProgressFailed:
				d.State, d.LastError = store.DeviceFailed, p.Reason
			case store.ProgressFinished:
				d.State, d.LastError = store.DeviceIdle, ""
			}
		})
		return nil
	})
	if err != nil {
		s.log.Warn("registry update", "device", p.Device, "err", err)
	}
}

func pendingOf(campaign uint64, keys []string) []pending {
	out := make([]pending, len(keys))
	for i, k := range keys {
		out[i] = pending{campaign, k}
	}
	return out
}

// seal is what makes one order authentic and fresh (see Config.OrderKey).
type seal struct {
	counter uint64
	nonce   string
	expires time.Time
}

// sendLocked encodes the orders, signs them and queues them in the outbox,
// which never blocks. Signing takes each device's next order counter, and
// the counters of the batch are stored in one transaction before any order
// goes out, so a restart never signs a counter twice. When that write
// fails nothing is sent: the devices are ordered again when they next
// report their version.
func (s *Service) sendLocked(orders []pending) {
	if len(orders) == 0 {
		return
	}
	seals := make([]*seal, len(orders))
	if s.cfg.OrderKey != nil {
		expires := time.Now().Add(s.cfg.OrderTTL)
		keys := make([]string, len(orders))
		for i, o := range orders {
			keys[i] = o.key
		}
		err := s.cfg.Store.Write(func(w *store.Writer) error {
			if err := w.PrefetchDevices(keys); err != nil {
				return err
			}
			for i, o := range orders {
				m, ok := s.active[o.campaign]
				if !ok {
					continue
				}
				pk, dn, _ := store.SplitDeviceKey(o.key)
				err := w.UpdateDevice(pk, dn, func(d *store.Device) error {
					d.OrderCounter++
					mod, _ := d.Module(m.c.ModuleName())
					seals[i] = &seal{counter: d.OrderCounter, nonce: mod.Nonce, expires: expires}
					return nil
				})
				if errors.Is(err, store.ErrNotFound) {
					continue // deleted meanwhile: no order
				} else if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			s.log.Error("orders not sent: the order counters could not be stored", "orders", len(orders), "err", err)
			return
		}
	}
	var batch []queued
	for i, o := range orders {
		if s.cfg.OrderKey != nil && seals[i] == nil {
			continue
		}
		payload, err := s.orderLocked(o.campaign, o.key, seals[i])
		if err != nil {
			s.log.Error("order not sent", "campaign", o.campaign, "device", o.key, "err", err)
			continue
		}
		pk, dn, _ := store.SplitDeviceKey(o.key)
		batch = append(batch, queued{o.key, outgoing{campaign: o.campaign, topic: cloud.Topics(pk, dn).Upgrade, payload: payload}})
	}
	s.out.queue(batch)
}

// orderLocked encodes the order of a campaign for one device, signed with
// sl when it is not nil.
func (s *Service) orderLocked(campaign uint64, key string, sl *seal) ([]byte, error) {
	m, ok := s.active[campaign]
	if !ok {
		return nil, fmt.Errorf("order for %s: campaign %d is not active", key, campaign)
	}
	p, _ := m.Device(key)
	ci, ok := m.c.Image(p)
	if !ok {
		return nil, fmt.Errorf("order for %s: campaign %d names no image for it", key, campaign)
	}
	img := s.images[campaign][ci.ID]
	file := img
	if p.Delta != 0 {
		// The delta image rebuilds img from what the device runs: the
		// order names the delta's file (its URL, size and digest, which
		// the signature covers) and img's version, which the delta's
		// header carries too. isDiff tells the platform's devices; an
		// otaport device knows a delta by its header.
		d, ok := m.delta(ci.ID, p.Delta)
		if !ok {
			return nil, fmt.Errorf("order for %s: campaign %d has no delta image %d for image %d", key, campaign, p.Delta, ci.ID)
		}
		file = d
	}
	// Order ids are milliseconds like the platform's, kept increasing so
	// two orders never share one.
	id := max(time.Now().UnixMilli(), s.lastID+1)
	s.lastID = id
	o := cloud.Order{
		Code: cloud.OrderCodeSuccess, Message: cloud.OrderMessageSuccess, ID: id,
		Data: cloud.OrderData{
			Module: cloud.ModuleField(m.c.ModuleName()),
			Size:   file.Size, Version: img.Version, URL: s.firmwareURL(file, key),
			Sign: file.SHA256, SignMethod: "SHA256", MD5: file.MD5,
			Otaport: &cloud.Extension{
				Scheme: file.SignatureType, KeyID: file.KeyID, SecurityCounter: img.SecurityCounter,
				Campaign: strconv.FormatUint(campaign, 10), Board: img.Board,
			},
		},
	}
	if file.IsDelta() {
		o.Data.IsDiff = 1
	}
	if sl != nil {
		x := o.Data.Otaport
		x.ProductKey, x.DeviceName, _ = store.SplitDeviceKey(key)
		x.Expires, x.Counter, x.Nonce = sl.expires.Unix(), sl.counter, sl.nonce
		if s.cfg.Endorsement != "" {
			x.OrderKey = base64.StdEncoding.EncodeToString(s.cfg.OrderKey.Public().(ed25519.PublicKey))
			x.Endorsement = s.cfg.Endorsement
		}
		if err := cloud.SignOrder(&o, s.cfg.OrderKey); err != nil {
			return nil, fmt.Errorf("order for %s: %w", key, err)
		}
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("order for %s: %w", key, err)
	}
	s.sent[key] = append(s.sent[key], id)
	if n := len(s.sent[key]); n > maxSent {
		s.sent[key] = s.sent[key][n-maxSent:]
	}
	// cloud.Marshal, not json.Marshal: it leaves '&' (common in signed
	// download URLs) unescaped, as the C devices' JSON parsers expect.
	payload, err := cloud.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("order for %s: %w", key, err)
	}
	return payload, nil
}

// firmwareURL is where device key downloads img.
func (s *Service) firmwareURL(img store.Image, key string) string {
	if s.cfg.DeviceFirmwareURL != nil {
		return s.cfg.DeviceFirmwareURL(img, key)
	}
	return s.cfg.FirmwareURL(img)
}

// Message is one MQTT message from a device topic.
type Message struct {
	Topic   string
	Payload []byte
	// ack acknowledges the message to the broker, for a Client that
	// acknowledges once stored (MQTTConfig.AckStored); nil otherwise.
	ack func()
}

// HandleMessage takes one message from a device topic (inform, progress or
// request), updates the registry and the campaigns, and queues the orders
// that follow. Messages on other topics are ignored.
func (s *Service) HandleMessage(topic string, payload []byte) error {
	return s.HandleMessages([]Message{{Topic: topic, Payload: payload}})
}

// deviceEvent is a parsed device message about one module.
type deviceEvent struct {
	pk, dn, module string
	ev             Event
	nonce          string // of an inform
	frozen         bool   // an inform that says the device may be frozen
	unsigned       bool   // an inform of a device that takes unsigned orders
	keySet         uint64 // the key set version an inform says
	hash           string // the running image hash an inform says
	order          int64  // the order id of a progress report
}

// request is a device's request for the pending order of one module.
type request struct{ key, module string }

// HandleMessages takes device messages in arrival order, as HandleMessage
// does, and stores all their changes in one transaction: a busy fleet's
// reports arrive faster than one disk write each, so the MQTT side hands
// over whatever has queued up. The orders that follow are queued once that
// transaction is committed. A message that does not parse is reported in
// the error and skipped; the others still count.
//
// It takes no context, on purpose: it waits for nothing it could give up
// (the campaigns' lock and one database transaction, both bounded), and the
// messages it is given have been acknowledged to the broker already, so
// giving up on them would lose device reports rather than defer them.
func (s *Service) HandleMessages(msgs []Message) error {
	_, err := s.handleMessages(msgs, nil)
	return err
}

// handleMessages is HandleMessages; also, when not nil, runs in the
// transaction that stores the messages' changes (a replica deletes them from
// its inbox there), and stored says whether that transaction committed.
func (s *Service) handleMessages(msgs []Message, also func(*store.Writer) error) (stored bool, _ error) {
	now := time.Now().UTC()
	var errs []error
	var evs []deviceEvent
	var requests []request
	for _, msg := range msgs {
		kind, pk, dn, ok := cloud.ParseTopic(msg.Topic)
		if !ok {
			continue
		}
		key := store.DeviceKey(pk, dn)
		switch kind {
		case cloud.KindInform:
			in, err := cloud.ParseInform(msg.Payload)
			if err != nil {
				errs = append(errs, fmt.Errorf("inform from %s: %w", key, err))
				continue
			}
			evs = append(evs, deviceEvent{pk: pk, dn: dn, module: in.Module(), nonce: in.Params.Nonce, frozen: in.Params.PossiblyFrozen, keySet: in.Params.KeySet, hash: in.Params.ImageHash,
				// A device that sends no nonce cannot take a signed order.
				unsigned: in.Params.UnsignedOrders || in.Params.Nonce == "",
				ev:       Event{Kind: event.Inform, Device: key, Version: in.Params.Version, Hash: in.Params.ImageHash, At: now}})
		case cloud.KindProgress:
			pr, err := cloud.ParseProgress(msg.Payload)
			if err != nil {
				errs = append(errs, fmt.Errorf("progress from %s: %w", key, err))
				continue
			}
			step, err := strconv.Atoi(string(pr.Params.Step))
			if err != nil {
				errs = append(errs, fmt.Errorf("progress from %s: step %q: %w", key, pr.Params.Step, err))
				continue
			}
			evs = append(evs, deviceEvent{pk: pk, dn: dn, module: pr.Module(), order: pr.ID,
				ev: Event{Kind: event.Progress, Device: key, Step: step, Desc: pr.Params.Desc, At: now}})
		case cloud.KindRequest:
			module := cloud.DefaultModule
			if in, err := cloud.ParseInform(msg.Payload); err == nil {
				module = in.Module()
			}
			requests = append(requests, request{key, module})
		}
	}
	if len(evs) == 0 && len(requests) == 0 {
		if also != nil {
			if err := s.cfg.Store.Write(also); err != nil {
				return false, errors.Join(append(errs, err)...)
			}
		}
		return true, errors.Join(errs...)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	evs = slices.DeleteFunc(evs, func(de deviceEvent) bool {
		ids := s.sent[de.ev.Device]
		stale := de.ev.Kind == event.Progress && de.ev.Step < 0 && len(ids) > 1 &&
			slices.Contains(ids[:len(ids)-1], de.order) && de.order != ids[len(ids)-1]
		if stale {
			s.log.Info("failure report about an order since replaced; ignored", "device", de.ev.Device, "order", de.order, "latest", ids[len(ids)-1], "desc", de.ev.Desc)
		}
		return stale
	})
	var orders []pending
	var applyErrs []error
	// The events are applied to drafts of the machines they touch, and
	// the drafts replace nothing until the write has committed: a failed
	// write leaves memory as the database is.
	var drafts map[uint64]*Machine
	err := s.cfg.Store.Write(func(w *store.Writer) error {
		// A write may run again (store.Writer, on PostgreSQL): each run
		// starts from memory as it is, not from the drafts of the last.
		orders, applyErrs, drafts = nil, nil, map[uint64]*Machine{}
		keys := make([]string, len(evs))
		for i, de := range evs {
			keys[i] = de.ev.Device
		}
		if err := w.PrefetchDevices(keys); err != nil {
			return err
		}
		for _, de := range evs {
			ev := de.ev
			err := w.UpdateDevice(de.pk, de.dn, func(dev *store.Device) error {
				dev.LastSeen = now
				if ev.Kind == event.Inform {
					// Every version report says it, one way or the other.
					dev.PossiblyFrozen, dev.UnsignedOrders = de.frozen, de.unsigned
				}
				dev.EditModule(de.module, func(d *store.Module) {
					switch ev.Kind {
					case event.Inform:
						d.Version, d.Nonce, d.KeySet, d.ImageHash = ev.Version, de.nonce, de.keySet, de.hash
						if d.State == store.DeviceRegistered {
							d.State = store.DeviceIdle
						}
					case event.Progress:
						if ev.Step < 0 {
							d.State, d.LastError = store.DeviceFailed, fmt.Sprintf("step %d: %s", ev.Step, ev.Desc)
						}
					}
				})
				return nil
			})
			if errors.Is(err, store.ErrNotFound) {
				// Only possible with an external broker that lets
				// unregistered devices in.
				s.log.Warn("message from an unregistered device", "device", ev.Device)
				continue
			} else if err != nil {
				return err
			}
			for _, id := range s.activeIDs() {
				m := s.active[id]
				if _, ok := m.Device(ev.Device); !ok || m.c.ModuleName() != de.module {
					continue
				}
				d := drafts[id]
				if d == nil {
					d = m.Draft()
					drafts[id] = d
				}
				keys, err := d.Apply(ev)
				if err != nil {
					applyErrs = append(applyErrs, err)
					continue
				}
				orders = append(orders, pendingOf(id, keys)...)
			}
		}
		for _, d := range drafts {
			if err := s.persist(w, d); err != nil {
				return err
			}
		}
		if also != nil {
			return also(w)
		}
		return nil
	})
	errs = append(errs, applyErrs...)
	if err != nil {
		// Nothing was stored and nothing changed in memory, so nothing
		// is sent; the devices report again.
		return false, errors.Join(append(errs, err)...)
	}
	for id, d := range drafts {
		s.active[id].Commit(d)
	}
	// The orders are encoded from the machines, so before an ended
	// campaign's machine is forgotten.
	for _, r := range requests {
		if p, ok := s.requestedLocked(r.key, r.module); ok {
			orders = append(orders, p)
		}
	}
	s.sendLocked(orders)
	for id := range drafts {
		s.settleLocked(s.active[id])
	}
	return true, errors.Join(errs...)
}

// requestedLocked finds the order a device's request for the pending order
// of a module is answered with.
func (s *Service) requestedLocked(key, module string) (pending, bool) {
	for _, id := range s.activeIDs() {
		m := s.active[id]
		p, ok := m.Device(key)
		if ok && m.c.ModuleName() == module && m.c.State == store.CampaignRunning &&
			(p.State == store.ProgressOrdered || p.State == store.ProgressRunning) {
			return pending{id, key}, true
		}
	}
	return pending{}, false
}

// usesImage reports whether active campaign cid sends image id, as a
// campaign image or as a delta image of one.
func (s *Service) usesImage(cid, id uint64) bool {
	if _, ok := s.images[cid][id]; ok {
		return true
	}
	for _, ds := range s.active[cid].deltas {
		for _, d := range ds {
			if d.ID == id {
				return true
			}
		}
	}
	return false
}

func (s *Service) activeIDs() []uint64 {
	ids := make([]uint64, 0, len(s.active))
	for id := range s.active {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Bytes compares what a campaign's orders carry with what full images
// would have: Sent sums, over the devices ordered so far, the size of the
// file each was ordered (a delta image, or the full image) and of a delta
// it failed before; Full sums the size of each one's full image. Deltas
// counts the devices whose latest order carries a delta image.
type Bytes struct {
	Sent   int64 `json:"sent"`
	Full   int64 `json:"full"`
	Deltas int   `json:"deltas"`
}

// WaveStatus counts one wave's devices.
type WaveStatus struct {
	Index    int             `json:"index"` // from 1
	Spec     string          `json:"spec"`
	State    store.WaveState `json:"state"`
	Total    int             `json:"total"`
	Pending  int             `json:"pending"`
	Running  int             `json:"running"` // ordered or reporting progress
	Finished int             `json:"finished"`
	Failed   int             `json:"failed"`
	Canceled int             `json:"canceled"`
}

// Status is a campaign with its per-wave counts and per-device progress.
type Status struct {
	Campaign store.Campaign   `json:"campaign"`
	Waves    []WaveStatus     `json:"waves"`
	Devices  []store.Progress `json:"devices"`
	Bytes    Bytes            `json:"bytes"`
}

// Status reads a campaign's state.
func (s *Service) Status(id uint64) (Status, error) {
	s.mu.Lock()
	m, ok := s.active[id]
	var c store.Campaign
	var ps []store.Progress
	sizes := map[uint64]int64{}
	if ok {
		c, ps = m.Campaign(), m.Devices()
		for _, img := range s.images[id] {
			sizes[img.ID] = img.Size
		}
		for _, ds := range m.deltas {
			for _, d := range ds {
				sizes[d.ID] = d.Size
			}
		}
	}
	s.mu.Unlock()
	if !ok {
		var err error
		if c, err = s.cfg.Store.Campaign(id); err != nil {
			return Status{}, err
		}
		if ps, err = s.cfg.Store.Progress(id); err != nil {
			return Status{}, err
		}
		// An ended campaign's images may have been deleted since: their
		// bytes then count as 0.
		imgs, err := s.cfg.Store.Images()
		if err != nil {
			return Status{}, err
		}
		for _, img := range imgs {
			sizes[img.ID] = img.Size
		}
	}
	return MakeStatus(c, ps, sizes), nil
}

// MakeStatus counts a campaign's devices by wave and state, and the bytes
// of their orders with sizes, the size of each image by ID.
func MakeStatus(c store.Campaign, ps []store.Progress, sizes map[uint64]int64) Status {
	st := Status{Campaign: c, Devices: ps}
	for _, p := range ps {
		if p.Orders == 0 {
			continue
		}
		img, _ := c.Image(p)
		st.Bytes.Full += sizes[img.ID]
		if p.Delta != 0 {
			st.Bytes.Sent += sizes[p.Delta]
			st.Bytes.Deltas++
		} else {
			st.Bytes.Sent += sizes[img.ID]
		}
		if p.FailedDelta != 0 {
			st.Bytes.Sent += sizes[p.FailedDelta]
		}
	}
	for i, w := range c.Waves {
		st.Waves = append(st.Waves, WaveStatus{Index: i + 1, Spec: w.Spec, State: w.State, Total: len(w.Devices)})
	}
	for _, p := range ps {
		if p.Wave < 0 || p.Wave >= len(st.Waves) {
			continue
		}
		w := &st.Waves[p.Wave]
		switch p.State {
		case store.ProgressPending:
			w.Pending++
		case store.ProgressOrdered, store.ProgressRunning:
			w.Running++
		case store.ProgressFinished:
			w.Finished++
		case store.ProgressFailed:
			w.Failed++
		case store.ProgressCanceled:
			w.Canceled++
		}
	}
	return st
}
