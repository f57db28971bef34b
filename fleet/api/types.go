package api

import (
	"time"

	"github.com/otaport/otaport/fleet/campaign"
	"github.com/otaport/otaport/fleet/store"
)

// The API's types are its own, each field listed, and filled from the
// store's records by the functions below: a field added to a record (a
// secret, a server path) is published only once it is added here too. A
// test keeps them from embedding or holding a store or campaign type.

// Device is a device as the API shows it: without its secret, which is
// only returned once, by AddDevice.
type Device struct {
	ProductKey   string    `json:"product_key"`
	DeviceName   string    `json:"device_name"`
	DeviceSecret string    `json:"device_secret,omitempty"`
	Board        string    `json:"board"`
	Group        string    `json:"group,omitempty"`
	Version      string    `json:"version,omitempty"`
	State        string    `json:"state"`
	LastError    string    `json:"last_error,omitempty"`
	LastSeen     time.Time `json:"last_seen,omitzero"`
	Added        time.Time `json:"added"`
	// PossiblyFrozen: the device's latest version report says it has heard
	// no release statement for longer than it allows (its orders may be
	// withheld).
	PossiblyFrozen bool `json:"possibly_frozen,omitempty"`
	// UnsignedOrders: the device's latest version report says it takes
	// unsigned orders (a device.yaml from before signed orders); PlainSignIn:
	// its latest sign-in was on the plain MQTT listener of a migration.
	UnsignedOrders bool `json:"unsigned_orders,omitempty"`
	PlainSignIn    bool `json:"plain_sign_in,omitempty"`
	// KeySet is the key set version the device's latest version report
	// said it holds (the default module's), 0 for none.
	KeySet uint64 `json:"key_set,omitempty"`
	// ImageHash is the hash of the image the default module's latest
	// version report said it runs (hex of its SHA-256 hash TLV): a delta
	// image whose base it is may be sent to it.
	ImageHash string `json:"image_hash,omitempty"`
	// Modules are every module of the device, the default one first (its
	// board, version and state are also the fields above).
	Modules []Module `json:"modules"`
}

// Module is one upgradable part of a device, with its own board and
// version.
type Module struct {
	Name      string `json:"name"`
	Board     string `json:"board,omitempty"`
	Version   string `json:"version,omitempty"`
	State     string `json:"state"`
	LastError string `json:"last_error,omitempty"`
	KeySet    uint64 `json:"key_set,omitempty"`
	ImageHash string `json:"image_hash,omitempty"`
}

// Key is the device's registry key, "productKey/deviceName".
func (d Device) Key() string { return store.DeviceKey(d.ProductKey, d.DeviceName) }

// toDevice shows a device without its secret.
func toDevice(d store.Device) Device {
	out := Device{
		ProductKey: d.ProductKey, DeviceName: d.DeviceName, Board: d.Board, Group: d.Group, Version: d.Version,
		State: string(d.State), LastError: d.LastError, LastSeen: d.LastSeen, Added: d.Added,
		PossiblyFrozen: d.PossiblyFrozen, UnsignedOrders: d.UnsignedOrders, PlainSignIn: d.PlainSignIn, KeySet: d.KeySet,
		ImageHash: d.ImageHash,
	}
	for _, m := range d.ModuleList() {
		out.Modules = append(out.Modules, Module{Name: m.Name, Board: m.Board, Version: m.Version, State: string(m.State), LastError: m.LastError, KeySet: m.KeySet, ImageHash: m.ImageHash})
	}
	return out
}

// Image is an uploaded, verified image.
type Image struct {
	ID      uint64 `json:"id"`
	Version string `json:"version"`
	Board   string `json:"board"`
	Size    int64  `json:"size"`
	// SHA256 and MD5 are lower-case hex digests of the whole file.
	SHA256          string `json:"sha256"`
	MD5             string `json:"md5"`
	SecurityCounter uint32 `json:"security_counter"`
	// SignatureType is the signing scheme ("ecdsa-p256", "ed25519", ...),
	// KeyID the hex SHA-256 of the key that verified it.
	SignatureType string    `json:"signature_type"`
	KeyID         string    `json:"key_id,omitempty"`
	Uploaded      time.Time `json:"uploaded"`
	// Hash is the hex of the image's SHA-256 hash TLV, what a device
	// running it reports (empty for images uploaded before it was kept).
	Hash string `json:"hash,omitempty"`
	// DeltaTarget, DeltaBase and DeltaBaseHash are set for a delta image:
	// the full image it rebuilds (the one a campaign names), the full
	// image it is made from, and that image's hash, which a device must
	// report running to be sent the delta.
	DeltaTarget   uint64 `json:"delta_target,omitempty"`
	DeltaBase     uint64 `json:"delta_base,omitempty"`
	DeltaBaseHash string `json:"delta_base_hash,omitempty"`
}

func toImage(i store.Image) Image {
	return Image{
		ID: i.ID, Version: i.Version, Board: i.Board, Size: i.Size, SHA256: i.SHA256, MD5: i.MD5,
		SecurityCounter: i.SecurityCounter, SignatureType: i.SignatureType, KeyID: i.KeyID, Uploaded: i.Uploaded,
		Hash: i.Hash, DeltaTarget: i.DeltaTarget, DeltaBase: i.DeltaBase, DeltaBaseHash: i.DeltaBaseHash,
	}
}

// Target selects a campaign's devices: every device of a product, of a
// group, or a list of device keys ("pk/dn"). Exactly one is set.
type Target struct {
	Product string   `json:"product,omitempty"`
	Group   string   `json:"group,omitempty"`
	Devices []string `json:"devices,omitempty"`
}

func (t Target) record() store.Target {
	return store.Target{Product: t.Product, Group: t.Group, Devices: t.Devices}
}

// CampaignImage is the image a campaign sends to the devices of one board.
type CampaignImage struct {
	ID      uint64 `json:"id"`
	Board   string `json:"board,omitempty"`
	Version string `json:"version"`
}

// Wave is one group of a campaign's devices, started together.
type Wave struct {
	Spec    string   `json:"spec"`
	Devices []string `json:"devices"`
	// State is waiting, running, paused, succeeded or canceled.
	State string `json:"state"`
	// Acknowledged is how many of the wave's failures the operator's last
	// resume acknowledged: the thresholds count the wave without them.
	Acknowledged int `json:"acknowledged,omitempty"`
}

// Campaign is a rollout of an image per board to a set of devices in waves.
type Campaign struct {
	ID uint64 `json:"id"`
	// Module is the module of the target devices the campaign upgrades.
	Module         string          `json:"module"`
	Images         []CampaignImage `json:"images"`
	Target         Target          `json:"target"`
	SuccessPercent int             `json:"success_percent"`
	ErrorPercent   int             `json:"error_percent"`
	Waves          []Wave          `json:"waves"`
	// State is running, paused, finished or canceled; Reason says why it
	// is paused, finished or canceled.
	State   string    `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

func toCampaign(c store.Campaign) Campaign {
	out := Campaign{
		ID: c.ID, Module: c.ModuleName(), Images: []CampaignImage{}, Target: Target{Product: c.Target.Product, Group: c.Target.Group, Devices: c.Target.Devices},
		SuccessPercent: c.SuccessPercent, ErrorPercent: c.ErrorPercent, Waves: []Wave{},
		State: string(c.State), Reason: c.Reason, Created: c.Created, Updated: c.Updated,
	}
	for _, i := range c.Images {
		out.Images = append(out.Images, CampaignImage{ID: i.ID, Board: i.Board, Version: i.Version})
	}
	for _, w := range c.Waves {
		out.Waves = append(out.Waves, Wave{Spec: w.Spec, Devices: w.Devices, State: string(w.State), Acknowledged: w.Acknowledged})
	}
	return out
}

// Progress is one device's part in a campaign.
type Progress struct {
	Device string `json:"device"`
	Image  uint64 `json:"image,omitempty"`
	Wave   int    `json:"wave"` // from 0
	// State is pending, ordered, running, finished, failed or canceled.
	State string `json:"state"`
	// Step is the last step the device reported ("0".."100", negative on
	// failure); Progressed says it reported any since its order.
	Step        int    `json:"step"`
	Progressed  bool   `json:"progressed,omitempty"`
	Desc        string `json:"desc,omitempty"`
	FromVersion string `json:"from_version,omitempty"`
	// FromHash is the running image hash the device reported before its
	// order; Delta the delta image its latest order carries (0: the full
	// image), FailedDelta a delta it failed, after which it is sent the
	// full image.
	FromHash    string    `json:"from_hash,omitempty"`
	Delta       uint64    `json:"delta,omitempty"`
	FailedDelta uint64    `json:"failed_delta,omitempty"`
	Orders      int       `json:"orders"`
	Reason      string    `json:"reason,omitempty"`
	OrderedAt   time.Time `json:"ordered_at,omitzero"`
	Updated     time.Time `json:"updated,omitzero"`
}

// Bytes compares what a campaign's orders carry with full images: Sent
// sums over the devices ordered so far the size of what each was ordered
// (a delta image, or the full image, and a delta it failed before), Full
// the size of each one's full image; Deltas counts the devices whose
// latest order carries a delta.
type Bytes struct {
	Sent   int64 `json:"sent"`
	Full   int64 `json:"full"`
	Deltas int   `json:"deltas"`
}

// WaveStatus counts one wave's devices by state.
type WaveStatus struct {
	Index    int    `json:"index"` // from 1
	Spec     string `json:"spec"`
	State    string `json:"state"`
	Total    int    `json:"total"`
	Pending  int    `json:"pending"`
	Running  int    `json:"running"` // ordered or reporting progress
	Finished int    `json:"finished"`
	Failed   int    `json:"failed"`
	Canceled int    `json:"canceled"`
}

// Status is a campaign with its per-wave counts and per-device progress.
type Status struct {
	Campaign Campaign     `json:"campaign"`
	Waves    []WaveStatus `json:"waves"`
	Devices  []Progress   `json:"devices"`
	Bytes    Bytes        `json:"bytes"`
}

func toStatus(st campaign.Status) Status {
	out := Status{Campaign: toCampaign(st.Campaign), Waves: []WaveStatus{}, Devices: []Progress{},
		Bytes: Bytes{Sent: st.Bytes.Sent, Full: st.Bytes.Full, Deltas: st.Bytes.Deltas}}
	for _, w := range st.Waves {
		out.Waves = append(out.Waves, WaveStatus{Index: w.Index, Spec: w.Spec, State: string(w.State), Total: w.Total,
			Pending: w.Pending, Running: w.Running, Finished: w.Finished, Failed: w.Failed, Canceled: w.Canceled})
	}
	for _, p := range st.Devices {
		out.Devices = append(out.Devices, Progress{
			Device: p.Device, Image: p.Image, Wave: p.Wave, State: string(p.State), Step: p.Step, Progressed: p.Progressed,
			Desc: p.Desc, FromVersion: p.FromVersion, FromHash: p.FromHash, Delta: p.Delta, FailedDelta: p.FailedDelta, Orders: p.Orders, Reason: p.Reason, OrderedAt: p.OrderedAt, Updated: p.Updated,
		})
	}
	return out
}

// CreateCampaign is the body of POST /campaigns. The images are one per
// board of the target, each device getting its board's: image_ids, or
// image_id for a target of one board.
type CreateCampaign struct {
	ImageID  uint64   `json:"image_id,omitempty"`
	ImageIDs []uint64 `json:"image_ids,omitempty"`
	Target   Target   `json:"target"`
	// Module is the module of the target devices to upgrade; empty means
	// "default".
	Module string `json:"module,omitempty"`
	// Waves are cumulative counts or percentages of the target: "1,10%,100%".
	Waves string `json:"waves"`
	// SuccessPercent: a wave succeeds when finished/total >= this.
	SuccessPercent int `json:"success_percent"`
	// ErrorPercent: the campaign pauses when failed/total > this in a wave.
	ErrorPercent int `json:"error_percent"`
}

func (c CreateCampaign) request() campaign.CreateRequest {
	ids := c.ImageIDs
	if c.ImageID != 0 {
		ids = append([]uint64{c.ImageID}, ids...)
	}
	return campaign.CreateRequest{ImageIDs: ids, Target: c.Target.record(), Module: c.Module, Waves: c.Waves,
		SuccessPercent: c.SuccessPercent, ErrorPercent: c.ErrorPercent}
}

// CertificateRequest is the body of POST /devices/{pk}/{dn}/certificate.
type CertificateRequest struct {
	// CSR is a PEM certificate request made with the device's key.
	CSR string `json:"csr"`
	// ValidDays is how long the certificate lasts; 0 means two years.
	ValidDays int `json:"valid_days,omitempty"`
}

// Certificate is a device's client certificate, with the CA that issued
// it (what a broker checks it against).
type Certificate struct {
	Certificate string    `json:"certificate"`
	CA          string    `json:"ca"`
	NotAfter    time.Time `json:"not_after"`
}
