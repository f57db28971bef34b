package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// DeviceState is what the fleet last knew a device to be doing.
type DeviceState string

// Device states.
const (
	// DeviceRegistered: added by an operator, never heard from.
	DeviceRegistered DeviceState = "registered"
	// DeviceIdle: reported its version and is not upgrading.
	DeviceIdle DeviceState = "idle"
	// DeviceUpgrading: ordered, reporting progress.
	DeviceUpgrading DeviceState = "upgrading"
	// DeviceFailed: its last upgrade failed or rolled back; LastError says why.
	DeviceFailed DeviceState = "failed"
)

// Device is one registered device. The product of a device is its
// ProductKey, as on the Alibaba Cloud IoT platform.
type Device struct {
	ProductKey string `json:"product_key"`
	DeviceName string `json:"device_name"`
	// DeviceSecret is kept as given: the broker recomputes the device's
	// HMAC sign-in with it, so it cannot be stored hashed.
	DeviceSecret string      `json:"device_secret"`
	Board        string      `json:"board"`
	Group        string      `json:"group,omitempty"`
	Version      string      `json:"version,omitempty"`
	State        DeviceState `json:"state"`
	LastError    string      `json:"last_error,omitempty"`
	LastSeen     time.Time   `json:"last_seen,omitzero"`
	Added        time.Time   `json:"added"`
	// Modules are the device's modules besides the default one, whose
	// board, version, state and last error are the fields above (so a
	// record of a device of one module reads as it always did).
	Modules []Module `json:"modules,omitempty"`
	// Nonce is the nonce of the default module's latest version report,
	// which its next order echoes (Module.Nonce for the others).
	Nonce string `json:"nonce,omitempty"`
	// OrderCounter is the counter of the last order signed for the
	// device, any module: the next one is above it, across restarts.
	OrderCounter uint64 `json:"order_counter,omitempty"`
	// PossiblyFrozen is what the device's latest version report said: it
	// has heard no release statement for longer than it allows, so its
	// orders may be withheld (Uptane's freeze).
	PossiblyFrozen bool `json:"possibly_frozen,omitempty"`
	// UnsignedOrders is what the device's latest version report said too:
	// it takes unsigned orders (an agent in the migration mode of a
	// device.yaml from before signed orders, or one without a nonce).
	UnsignedOrders bool `json:"unsigned_orders,omitempty"`
	// PlainSignIn: the device's latest sign-in on the embedded broker was
	// on the listener without TLS of a migration period.
	PlainSignIn bool `json:"plain_sign_in,omitempty"`
	// KeySet is the default module's key set version (Module.KeySet).
	KeySet uint64 `json:"key_set,omitempty"`
	// ImageHash is the default module's running image hash
	// (Module.ImageHash).
	ImageHash string `json:"image_hash,omitempty"`
}

// DefaultModule is the module of a device that names none, as the
// protocol's (core/cloud) DefaultModule.
const DefaultModule = "default"

// Module is one upgradable part of a device (its Wi-Fi module), with its
// own board and version.
type Module struct {
	Name      string      `json:"name"`
	Board     string      `json:"board,omitempty"`
	Version   string      `json:"version,omitempty"`
	State     DeviceState `json:"state"`
	LastError string      `json:"last_error,omitempty"`
	// Nonce is the nonce of the module's latest version report.
	Nonce string `json:"nonce,omitempty"`
	// KeySet is the key set version the module's latest version report
	// said it holds (core/keyset), 0 for none.
	KeySet uint64 `json:"key_set,omitempty"`
	// ImageHash is the hash of the image the module's latest version
	// report said it runs (lower-case hex of its SHA-256 hash TLV), ""
	// when it said none: a delta image whose base it is may be sent to it.
	ImageHash string `json:"image_hash,omitempty"`
}

// ModuleList returns every module of the device, the default one first.
func (d Device) ModuleList() []Module {
	out := []Module{{Name: DefaultModule, Board: d.Board, Version: d.Version, State: d.State, LastError: d.LastError, Nonce: d.Nonce, KeySet: d.KeySet, ImageHash: d.ImageHash}}
	return append(out, d.Modules...)
}

// Module returns one module of the device ("" is the default one).
func (d Device) Module(name string) (Module, bool) {
	for _, m := range d.ModuleList() {
		if m.Name == name || name == "" && m.Name == DefaultModule {
			return m, true
		}
	}
	return Module{}, false
}

// EditModule applies fn to one module of the device, adding the module
// (registered, of an unknown board) when the device has none of that name:
// a device reports the modules it has.
func (d *Device) EditModule(name string, fn func(*Module)) {
	if name == "" || name == DefaultModule {
		m := d.ModuleList()[0]
		fn(&m)
		d.Version, d.State, d.LastError, d.Nonce, d.KeySet, d.ImageHash = m.Version, m.State, m.LastError, m.Nonce, m.KeySet, m.ImageHash
		return
	}
	for i := range d.Modules {
		if d.Modules[i].Name == name {
			fn(&d.Modules[i])
			return
		}
	}
	m := Module{Name: name, State: DeviceRegistered}
	fn(&m)
	d.Modules = append(d.Modules, m)
}

// Key is the device's registry key, "productKey/deviceName".
func (d Device) Key() string { return DeviceKey(d.ProductKey, d.DeviceName) }

// DeviceKey joins a product key and a device name into a registry key. The
// platform forbids '/' in both, so the join is unambiguous.
func DeviceKey(pk, dn string) string { return pk + "/" + dn }

// SplitDeviceKey is the inverse of DeviceKey.
func SplitDeviceKey(key string) (pk, dn string, ok bool) {
	return strings.Cut(key, "/")
}

// AddDevice registers a device. It fails with ErrExists if the key is taken.
func (s *Store) AddDevice(d Device) error { return s.AddDevices([]Device{d}) }

// AddDevices registers devices in one transaction: all of them, or none
// when one exists already (ErrExists, naming it) or is given twice.
func (s *Store) AddDevices(ds []Device) error {
	keys := make([]string, len(ds))
	for i, d := range ds {
		keys[i] = d.Key()
	}
	err := s.b.update(func(tx txn) error {
		if err := tx.prefetch(tableDevices, keys); err != nil {
			return err
		}
		for _, d := range ds {
			k := nameOf(d.Key())
			if ok, err := exists(tx, tableDevices, k); ok || err != nil {
				return fmt.Errorf("add device %s: %w", d.Key(), cmpErr(err, ErrExists))
			}
			if err := put(tx, tableDevices, k, d); err != nil {
				return fmt.Errorf("add device %s: %w", d.Key(), err)
			}
		}
		return nil
	})
	if err != nil && len(ds) > 1 {
		return fmt.Errorf("add %d devices: %w", len(ds), err)
	}
	return err
}

// Device returns one device.
func (s *Store) Device(pk, dn string) (Device, error) {
	var d Device
	err := s.read(func(tx txn) error {
		return get(tx, tableDevices, nameOf(DeviceKey(pk, dn)), &d)
	})
	if err != nil {
		return Device{}, fmt.Errorf("device %s: %w", DeviceKey(pk, dn), err)
	}
	return d, nil
}

// Devices lists every device ordered by key.
func (s *Store) Devices() ([]Device, error) {
	var ds []Device
	err := s.read(func(tx txn) (err error) {
		ds, err = all[Device](tx, tableDevices, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	sortDevices(ds)
	return ds, nil
}

// UpdateDevice applies fn to a device in one transaction.
func (s *Store) UpdateDevice(pk, dn string, fn func(*Device) error) error {
	return s.Write(func(w *Writer) error { return w.UpdateDevice(pk, dn, fn) })
}

// PrefetchDevices reads the devices of keys (DeviceKey) in one go, so that
// a batch of UpdateDevice calls on them that follows costs no database
// round trip each (PostgreSQL; on bbolt reads are local and it does
// nothing). Keys of no device are fine: UpdateDevice still says
// ErrNotFound for them.
func (w *Writer) PrefetchDevices(keys []string) error {
	if err := w.tx.prefetch(tableDevices, keys); err != nil {
		return fmt.Errorf("read %d devices: %w", len(keys), err)
	}
	return nil
}

// UpdateDevice applies fn to a device within the writer's transaction. A
// failure (ErrNotFound, or fn's error) changes nothing, and the transaction
// may go on with other changes; a failure of the database itself ends it
// (Write returns that failure whatever fn returns).
func (w *Writer) UpdateDevice(pk, dn string, fn func(*Device) error) error {
	k := nameOf(DeviceKey(pk, dn))
	var d Device
	err := get(w.tx, tableDevices, k, &d)
	if err == nil {
		err = fn(&d)
	}
	if err == nil {
		err = put(w.tx, tableDevices, k, d)
	}
	if err != nil {
		return fmt.Errorf("update device %s: %w", DeviceKey(pk, dn), err)
	}
	return nil
}

// Image is one uploaded, verified firmware image.
type Image struct {
	ID      uint64 `json:"id"`
	Version string `json:"version"`
	Board   string `json:"board"`
	Size    int64  `json:"size"`
	// SHA256 and MD5 are lower-case hex digests of the whole file; the
	// SHA-256 also names the blob on disk and is the HTTP ETag.
	SHA256          string `json:"sha256"`
	MD5             string `json:"md5"`
	SecurityCounter uint32 `json:"security_counter"`
	// SignatureType is the signing scheme ("ecdsa-p256", "ed25519", ...),
	// KeyID the hex SHA-256 of the key that verified it.
	SignatureType string    `json:"signature_type"`
	KeyID         string    `json:"key_id,omitempty"`
	Uploaded      time.Time `json:"uploaded"`
	Path          string    `json:"path"`
	// Hash is the lower-case hex of the image's SHA-256 hash TLV: what a
	// device running it reports (its version report's imageHash) and what
	// a delta image made from it names as its base. Empty in records
	// from before delta images.
	Hash string `json:"hash,omitempty"`
	// DeltaTarget is set on a delta image only: the ID of the full image
	// it rebuilds, which a campaign sends; DeltaBase is the ID of the full
	// image it is made from, and DeltaBaseHash that image's Hash, which a
	// device must report running to be sent the delta.
	DeltaTarget   uint64 `json:"delta_target,omitempty"`
	DeltaBase     uint64 `json:"delta_base,omitempty"`
	DeltaBaseHash string `json:"delta_base_hash,omitempty"`
}

// IsDelta reports whether the image is a delta image (core/image's
// FlagDelta), which only a device running its base can install.
func (i Image) IsDelta() bool { return i.DeltaTarget != 0 }

// AddImage records an image and assigns its ID.
func (s *Store) AddImage(img Image) (Image, error) {
	err := s.b.update(func(tx txn) error {
		id, err := tx.nextID(tableImages)
		if err != nil {
			return err
		}
		img.ID = id
		if err := put(tx, tableImages, idOf(id), img); err != nil {
			return err
		}
		// Another replica may be running the campaigns a delta image
		// serves: it reads the images again when told.
		tx.notify(ImagesNotify)
		return nil
	})
	if err != nil {
		return Image{}, fmt.Errorf("add image %s for %s: %w", img.Version, img.Board, err)
	}
	return img, nil
}

// Image returns one image.
func (s *Store) Image(id uint64) (Image, error) {
	var img Image
	err := s.read(func(tx txn) error {
		return get(tx, tableImages, idOf(id), &img)
	})
	if err != nil {
		return Image{}, fmt.Errorf("image %d: %w", id, err)
	}
	return img, nil
}

// Images lists every image in upload order.
func (s *Store) Images() ([]Image, error) {
	var imgs []Image
	err := s.read(func(tx txn) (err error) {
		imgs, err = all[Image](tx, tableImages, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return imgs, nil
}

// CampaignState is where a campaign is in its life.
type CampaignState string

// Campaign states.
const (
	CampaignRunning  CampaignState = "running"
	CampaignPaused   CampaignState = "paused"
	CampaignFinished CampaignState = "finished"
	CampaignCanceled CampaignState = "canceled"
)

// WaveState is where one wave is.
type WaveState string

// Wave states.
const (
	WaveWaiting   WaveState = "waiting"
	WaveRunning   WaveState = "running"
	WavePaused    WaveState = "paused" // a running wave of a paused campaign
	WaveSucceeded WaveState = "succeeded"
	WaveCanceled  WaveState = "canceled" // an unfinished wave of a canceled campaign
)

// Target selects the devices of a campaign: every device of a product, of a
// group, or a list of device keys. Exactly one is set.
type Target struct {
	Product string   `json:"product,omitempty"`
	Group   string   `json:"group,omitempty"`
	Devices []string `json:"devices,omitempty"`
}

// Wave is one group of devices started together.
type Wave struct {
	// Spec is the operator's wording ("10%", "5"), kept for display.
	Spec    string    `json:"spec"`
	Devices []string  `json:"devices"`
	State   WaveState `json:"state"`
	// Acknowledged is how many of the wave's devices had failed when the
	// operator last resumed the campaign: the thresholds count the wave
	// without them from then on.
	Acknowledged int `json:"acknowledged,omitempty"`
}

// CampaignImage is one image a campaign sends: to the devices of its board.
type CampaignImage struct {
	ID      uint64 `json:"id"`
	Board   string `json:"board,omitempty"`
	Version string `json:"version"`
}

// Campaign is a rollout of an image per board to a set of devices in waves.
type Campaign struct {
	ID uint64 `json:"id"`
	// Module is the module of the devices the campaign upgrades; empty for
	// the default one (and in records from before modules).
	Module string `json:"module,omitempty"`
	// Images has one image per board of the target, sorted by board.
	Images []CampaignImage `json:"images"`
	Target Target          `json:"target"`
	// SuccessPercent: a wave succeeds when finished/total >= this.
	SuccessPercent int `json:"success_percent"`
	// ErrorPercent: the campaign pauses when failed/total > this in a wave.
	ErrorPercent int           `json:"error_percent"`
	Waves        []Wave        `json:"waves"`
	State        CampaignState `json:"state"`
	// Reason says why the campaign is paused, finished or canceled.
	Reason  string    `json:"reason,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// UnmarshalJSON reads a campaign record, including one written before
// campaigns took an image per board (image_id and version, one image).
func (c *Campaign) UnmarshalJSON(b []byte) error {
	type plain Campaign // without this method
	var v struct {
		plain
		ImageID uint64 `json:"image_id"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*c = Campaign(v.plain)
	if len(c.Images) == 0 && v.ImageID != 0 {
		c.Images = []CampaignImage{{ID: v.ImageID, Version: v.Version}}
	}
	return nil
}

// Image returns the image a device of the campaign is sent: the one its
// progress names, or the campaign's only image (records written before
// campaigns took an image per board name none).
func (c Campaign) Image(p Progress) (CampaignImage, bool) {
	for _, img := range c.Images {
		if img.ID == p.Image || (p.Image == 0 && len(c.Images) == 1) {
			return img, true
		}
	}
	return CampaignImage{}, false
}

// ModuleName is the campaign's module, DefaultModule when it names none.
func (c Campaign) ModuleName() string {
	if c.Module == "" {
		return DefaultModule
	}
	return c.Module
}

// ImageIDs lists the campaign's image IDs, for messages.
func (c Campaign) ImageIDs() []uint64 {
	ids := make([]uint64, len(c.Images))
	for i, img := range c.Images {
		ids[i] = img.ID
	}
	return ids
}

// ProgressState is where one device is in one campaign.
type ProgressState string

// Per-device states.
const (
	ProgressPending  ProgressState = "pending"
	ProgressOrdered  ProgressState = "ordered"
	ProgressRunning  ProgressState = "running"
	ProgressFinished ProgressState = "finished"
	ProgressFailed   ProgressState = "failed"
	ProgressCanceled ProgressState = "canceled"
)

// Terminal reports whether a device's part in a campaign is over.
func (p ProgressState) Terminal() bool {
	return p == ProgressFinished || p == ProgressFailed || p == ProgressCanceled
}

// Progress is one device's part in one campaign.
type Progress struct {
	Device string `json:"device"`
	// Image is the ID of the campaign's image for the device's board.
	Image uint64        `json:"image,omitempty"`
	Wave  int           `json:"wave"`
	State ProgressState `json:"state"`
	// Step is the last step the device reported ("0".."100", negative on
	// failure); Progressed says it reported any step since its order, which
	// tells a rollback apart from a device that reconnected before starting.
	Step        int    `json:"step"`
	Progressed  bool   `json:"progressed,omitempty"`
	Desc        string `json:"desc,omitempty"`
	FromVersion string `json:"from_version,omitempty"`
	// FromHash is the running image hash the device last reported before
	// its order (Module.ImageHash): a delta image whose base it is may be
	// sent instead of the full image.
	FromHash string `json:"from_hash,omitempty"`
	// Delta is the delta image the device's latest order carried, 0 when
	// it carried the full image. FailedDelta is a delta image the device
	// failed (refused it, or failed to apply it): its orders carry the
	// full image from then on.
	Delta       uint64    `json:"delta,omitempty"`
	FailedDelta uint64    `json:"failed_delta,omitempty"`
	Orders      int       `json:"orders"`
	Reason      string    `json:"reason,omitempty"`
	OrderedAt   time.Time `json:"ordered_at,omitzero"`
	Updated     time.Time `json:"updated,omitzero"`
}

// AddCampaign records a new campaign and its devices' initial progress in one
// transaction, and assigns its ID.
func (s *Store) AddCampaign(c Campaign, ps []Progress) (Campaign, error) {
	var out Campaign
	err := s.Write(func(w *Writer) (err error) {
		out, err = w.AddCampaign(c, ps)
		return err
	})
	return out, err
}

// AddCampaign is Store.AddCampaign within the writer's transaction.
func (w *Writer) AddCampaign(c Campaign, ps []Progress) (Campaign, error) {
	err := func(tx txn) error {
		id, err := tx.nextID(tableCampaigns)
		if err != nil {
			return err
		}
		c.ID = id
		if err := put(tx, tableCampaigns, idOf(id), c); err != nil {
			return err
		}
		for _, p := range ps {
			if err := put(tx, tableProgress, progressOf(id, p.Device), p); err != nil {
				return err
			}
		}
		return nil
	}(w.tx)
	if err != nil {
		return Campaign{}, fmt.Errorf("add campaign for images %v: %w", c.ImageIDs(), err)
	}
	return c, nil
}

// SaveCampaign writes a campaign and the progress records that changed, in
// one transaction, so the campaign's state never disagrees with its devices'.
func (s *Store) SaveCampaign(c Campaign, changed []Progress) error {
	return s.Write(func(w *Writer) error { return w.SaveCampaign(c, changed) })
}

// SaveCampaign writes a campaign and the progress records that changed
// within the writer's transaction.
func (w *Writer) SaveCampaign(c Campaign, changed []Progress) error {
	err := func() error {
		if ok, err := exists(w.tx, tableCampaigns, idOf(c.ID)); !ok || err != nil {
			return cmpErr(err, ErrNotFound)
		}
		if err := put(w.tx, tableCampaigns, idOf(c.ID), c); err != nil {
			return err
		}
		for _, p := range changed {
			if err := put(w.tx, tableProgress, progressOf(c.ID, p.Device), p); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		return fmt.Errorf("save campaign %d: %w", c.ID, err)
	}
	return nil
}

// Campaign returns one campaign.
func (s *Store) Campaign(id uint64) (Campaign, error) {
	var c Campaign
	err := s.read(func(tx txn) error {
		return get(tx, tableCampaigns, idOf(id), &c)
	})
	if err != nil {
		return Campaign{}, fmt.Errorf("campaign %d: %w", id, err)
	}
	return c, nil
}

// Campaigns lists every campaign in creation order.
func (s *Store) Campaigns() ([]Campaign, error) {
	var cs []Campaign
	err := s.read(func(tx txn) (err error) {
		cs, err = all[Campaign](tx, tableCampaigns, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	return cs, nil
}

// Progress lists a campaign's devices ordered by device key.
func (s *Store) Progress(id uint64) ([]Progress, error) {
	var ps []Progress
	err := s.read(func(tx txn) (err error) {
		if ok, err := exists(tx, tableCampaigns, idOf(id)); !ok || err != nil {
			return cmpErr(err, ErrNotFound)
		}
		ps, err = all[Progress](tx, tableProgress, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("progress of campaign %d: %w", id, err)
	}
	return ps, nil
}

// DeleteDevice removes a device from the registry within the writer's
// transaction; ErrNotFound if there is none. Its campaigns' records of it
// stay, as history.
func (w *Writer) DeleteDevice(pk, dn string) (Device, error) {
	k := nameOf(DeviceKey(pk, dn))
	var d Device
	err := get(w.tx, tableDevices, k, &d)
	if err == nil {
		err = w.tx.del(tableDevices, k)
	}
	if err != nil {
		return Device{}, fmt.Errorf("delete device %s: %w", DeviceKey(pk, dn), err)
	}
	return d, nil
}

// DeleteImage removes an image record within the writer's transaction and
// returns it; ErrNotFound if there is none. shared says whether another
// image record names the same file (the same bytes uploaded for another
// board), which must then stay on disk.
func (w *Writer) DeleteImage(id uint64) (img Image, shared bool, err error) {
	err = get(w.tx, tableImages, idOf(id), &img)
	if err == nil {
		err = w.tx.del(tableImages, idOf(id))
	}
	if err == nil {
		var imgs []Image
		imgs, err = all[Image](w.tx, tableImages, 0)
		for _, o := range imgs {
			shared = shared || o.SHA256 == img.SHA256
		}
	}
	if err != nil {
		return Image{}, false, fmt.Errorf("delete image %d: %w", id, err)
	}
	return img, shared, nil
}

// DeleteCampaign removes a campaign and its devices' progress within the
// writer's transaction; ErrNotFound if there is none.
func (w *Writer) DeleteCampaign(id uint64) error {
	err := func() error {
		if ok, err := exists(w.tx, tableCampaigns, idOf(id)); !ok || err != nil {
			return cmpErr(err, ErrNotFound)
		}
		// Progress first: PostgreSQL's progress rows refer to the campaign.
		if err := w.tx.dropProgress(id); err != nil {
			return err
		}
		return w.tx.del(tableCampaigns, idOf(id))
	}()
	if err != nil {
		return fmt.Errorf("delete campaign %d: %w", id, err)
	}
	return nil
}
