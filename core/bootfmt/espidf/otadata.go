// Package espidf is ESP-IDF's otadata partition byte for byte: the two
// esp_ota_select_entry_t records, their CRC, the rollback states, which entry
// and which OTA slot the second-stage bootloader picks, and what the
// application's esp_ota_* calls write.
//
// It mirrors espressif/esp-idf: components/bootloader_support
// (esp_flash_partitions.h, src/bootloader_common_loader.c,
// src/bootloader_utility.c) and components/app_update/esp_ota_ops.c. Everything
// is pure: functions take the two entries as read and return the sector to
// erase and the 32 bytes to write there. It is not a bootloader: loading and
// verifying app images belongs elsewhere.
package espidf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// EntrySize is sizeof(esp_ota_select_entry_t): 32 bytes, "friendly to flash
// encryption" (esp_flash_partitions.h).
const EntrySize = 32

// SectorSize is the distance between the two entries: the bootloader reads
// entry 1 at SPI_SEC_SIZE and writes at FLASH_SECTOR_SIZE, 4 KiB on every
// ESP32 (the application uses the partition's erase size, the same 4 KiB).
// Each entry is the first 32 bytes of its own sector.
const SectorSize = 0x1000

// PartitionSize is the smallest otadata partition the bootloader accepts
// (bootloader_common_read_otadata: 2 * SPI_SEC_SIZE).
const PartitionSize = 2 * SectorSize

// State is esp_ota_img_states_t (esp_flash_partitions.h).
type State uint32

// The states of an entry, with ESP-IDF's values.
const (
	// StateNew: set by esp_ota_set_boot_partition with rollback enabled; the
	// bootloader turns it into PendingVerify when it boots the entry.
	StateNew State = 0x0
	// StatePendingVerify: booted once, not yet confirmed; the next boot turns it
	// into Aborted (with rollback enabled).
	StatePendingVerify State = 0x1
	// StateValid: confirmed by esp_ota_mark_app_valid_cancel_rollback.
	StateValid State = 0x2
	// StateInvalid: given up by esp_ota_mark_app_invalid_rollback(_and_reboot).
	StateInvalid State = 0x3
	// StateAborted: never confirmed; never selected again.
	StateAborted State = 0x4
	// StateUndefined: written without rollback support; boots without limits.
	StateUndefined State = 0xFFFFFFFF
)

var stateNames = map[State]string{
	StateNew:           "new",
	StatePendingVerify: "pending-verify",
	StateValid:         "valid",
	StateInvalid:       "invalid",
	StateAborted:       "aborted",
	StateUndefined:     "undefined",
}

// String returns the state as the board files and docs spell it.
func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(0x%x)", uint32(s))
}

// EmptySeq is the ota_seq of an erased entry (UINT32_MAX).
const EmptySeq = 0xFFFFFFFF

// Entry is esp_ota_select_entry_t, little-endian as on every ESP32.
type Entry struct {
	Seq   uint32   // ota_seq, offset 0
	Label [20]byte // seq_label, offset 4: never read by the bootloader
	State State    // ota_state, offset 24
	CRC   uint32   // crc, offset 28: CRC(Seq)
}

// CRC is bootloader_common_ota_select_crc (bootloader_common_loader.c):
// esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4), over the 4 little-endian bytes of
// ota_seq only. esp_rom_crc32_le inverts the value it is given on entry and its
// result on exit with the reflected 0xEDB88320 table, which is exactly what
// crc32.Update does; so the seed UINT32_MAX makes this differ from the plain
// CRC-32 of the 4 bytes (seq 1 gives 0x4743989A, not 0x99F8B879).
func CRC(seq uint32) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], seq)
	return crc32.Update(0xFFFFFFFF, crc32.IEEETable, b[:])
}

// NewEntry returns the entry the bootloader writes when it sets the actual
// sequence (set_actual_ota_seq): erased label, the given state, its CRC.
func NewEntry(seq uint32, state State) Entry {
	e := Entry{Seq: seq, State: state, CRC: CRC(seq)}
	for i := range e.Label {
		e.Label[i] = 0xFF
	}
	return e
}

// Bytes is the entry as it is written to flash.
func (e Entry) Bytes() [EntrySize]byte {
	var b [EntrySize]byte
	binary.LittleEndian.PutUint32(b[0:], e.Seq)
	copy(b[4:24], e.Label[:])
	binary.LittleEndian.PutUint32(b[24:], uint32(e.State))
	binary.LittleEndian.PutUint32(b[28:], e.CRC)
	return b
}

// ParseEntry reads an entry from the first EntrySize bytes of b.
func ParseEntry(b []byte) (Entry, error) {
	if len(b) < EntrySize {
		return Entry{}, fmt.Errorf("otadata entry: %d bytes, want %d", len(b), EntrySize)
	}
	var e Entry
	e.Seq = binary.LittleEndian.Uint32(b[0:])
	copy(e.Label[:], b[4:24])
	e.State = State(binary.LittleEndian.Uint32(b[24:]))
	e.CRC = binary.LittleEndian.Uint32(b[28:])
	return e, nil
}

// ParsePartition reads the two entries of an otadata partition: entry 0 at
// offset 0, entry 1 at SectorSize (bootloader_common_read_otadata, which also
// refuses a partition smaller than two sectors).
func ParsePartition(b []byte) ([2]Entry, error) {
	if len(b) < PartitionSize {
		return [2]Entry{}, fmt.Errorf("otadata partition: %d bytes, the bootloader needs at least %d (two 4 KiB sectors)", len(b), PartitionSize)
	}
	var two [2]Entry
	for i := range two {
		two[i], _ = ParseEntry(b[i*SectorSize:])
	}
	return two, nil
}

// Invalid is bootloader_common_ota_select_invalid: empty, or given up
// (Invalid or Aborted), whatever the rollback configuration. The CRC is not
// looked at.
func (e Entry) Invalid() bool {
	return e.Seq == EmptySeq || e.State == StateInvalid || e.State == StateAborted
}

// Valid is bootloader_common_ota_select_valid: not invalid and the CRC matches.
func (e Entry) Valid() bool { return !e.Invalid() && e.CRC == CRC(e.Seq) }

// initial is the bootloader's test for an entry with no usable sequence: empty
// or a CRC that does not match (bootloader_utility.c, ota_has_initial_contents).
func (e Entry) initial() bool { return e.Seq == EmptySeq || e.CRC != CRC(e.Seq) }

// Active is bootloader_common_get_active_otadata: the index of the valid entry
// with the larger ota_seq (entry 0 on a tie), the only valid one, or -1.
func Active(two [2]Entry) int {
	v0, v1 := two[0].Valid(), two[1].Valid()
	switch {
	case v0 && v1:
		if max(two[0].Seq, two[1].Seq) == two[0].Seq {
			return 0
		}
		return 1
	case v0:
		return 0
	case v1:
		return 1
	default:
		return -1
	}
}

// Slot is the OTA app partition (ota_N, subtype 0x10+N) an ota_seq selects:
// (seq - 1) % appCount in uint32 arithmetic, as the bootloader computes it.
func Slot(seq uint32, appCount int) (int, error) {
	if appCount < 1 || appCount > 16 {
		return 0, fmt.Errorf("otadata: %d OTA app partitions, ESP-IDF allows 1 to 16", appCount)
	}
	return int((seq - 1) % uint32(appCount)), nil
}

// Write is one update of otadata as ESP-IDF makes it: erase the sector of
// entry Sector (0 or 1), then program the 32 bytes of Entry at its start. A
// power cut between the two leaves that entry erased.
type Write struct {
	Sector int
	Entry  Entry
}

// ErrNoActive is returned by the calls that need an active entry (the running
// app is factory, or otadata holds no valid entry).
var ErrNoActive = errors.New("otadata: no valid entry: the running app is the factory app or otadata is blank")

// nextSeq is compute_ota_seq_for_target_slot (esp_ota_ops.c): the smallest
// (slot+1)%n + i*n that is not below current. ESP-IDF loops over i; this
// computes it, and refuses where ESP-IDF's uint32 would run into EmptySeq.
func nextSeq(current uint32, slot, n int) (uint32, error) {
	base := uint64((slot + 1) % n)
	seq := base
	if uint64(current) > base {
		i := (uint64(current) - base + uint64(n) - 1) / uint64(n)
		seq = base + i*uint64(n)
	}
	if seq >= EmptySeq {
		return 0, fmt.Errorf("otadata: ota_seq after %d for slot %d is past 0xFFFFFFFE: erase otadata (set the factory app) to start over", current, slot)
	}
	return uint32(seq), nil
}

// SetBootPartition is esp_ota_set_boot_partition for OTA slot slot (after the
// image there verified) as esp_rewrite_ota_data writes it. If the active entry
// already selects slot, that entry is rewritten in place with the new state;
// otherwise the other entry gets the next sequence that selects slot; with no
// valid entry, entry 0 gets seq slot+1. The state is New with rollback enabled
// (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE), Undefined without
// (set_new_state_otadata). The entry keeps the label bytes its sector held.
// Setting the factory app instead erases the whole partition.
//
// As in ESP-IDF, an active entry with ota_seq 0 (never written by ESP-IDF,
// but valid with its CRC) gives seq 0 for slot appCount-1, which ties and
// loses to entry 0: the request does not take effect.
func SetBootPartition(two [2]Entry, slot, appCount int, rollback bool) (Write, error) {
	if appCount < 1 || appCount > 16 || slot < 0 || slot >= appCount {
		return Write{}, fmt.Errorf("otadata: slot ota_%d is not one of the %d OTA app partitions", slot, appCount)
	}
	next, seq := 0, uint32(slot+1)
	if a := Active(two); a >= 0 {
		cur, _ := Slot(two[a].Seq, appCount)
		if cur == slot {
			next, seq = a, two[a].Seq
		} else {
			next = 1 - a
			var err error
			if seq, err = nextSeq(two[a].Seq, slot, appCount); err != nil {
				return Write{}, err
			}
		}
	}
	e := two[next]
	e.State = StateUndefined
	if rollback {
		e.State = StateNew
	}
	e.Seq, e.CRC = seq, CRC(seq)
	return Write{Sector: next, Entry: e}, nil
}

// MarkValid is esp_ota_mark_app_valid_cancel_rollback: the active entry,
// rewritten in place as Valid. ok is false when it is Valid already (nothing
// is written).
func MarkValid(two [2]Entry) (w Write, ok bool, err error) {
	a := Active(two)
	if a < 0 {
		return Write{}, false, ErrNoActive
	}
	if two[a].State == StateValid {
		return Write{}, false, nil
	}
	e := two[a]
	e.State, e.CRC = StateValid, CRC(e.Seq)
	return Write{Sector: a, Entry: e}, true, nil
}

// MarkInvalid is esp_ota_mark_app_invalid_rollback(_and_reboot): the active
// entry, rewritten in place as Invalid. ESP-IDF first checks that another
// bootable app exists (esp_ota_check_rollback_is_possible); that needs the
// images, so it is the caller's.
func MarkInvalid(two [2]Entry) (Write, error) {
	a := Active(two)
	if a < 0 {
		return Write{}, ErrNoActive
	}
	e := two[a]
	e.State, e.CRC = StateInvalid, CRC(e.Seq)
	return Write{Sector: a, Entry: e}, nil
}

// Factory is the index the bootloader uses for the factory app (FACTORY_INDEX
// in bootloader_config.h); OTA slots are 0 to 15.
const Factory = -1

// Config is the part of a build and partition table the selection depends on.
type Config struct {
	// AppCount is the number of OTA app partitions (ota_0 ...), 0 to 16.
	AppCount int
	// HasFactory is whether the table has a factory app partition.
	HasFactory bool
	// Rollback is CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE.
	Rollback bool
}

// Boot is what the bootloader decided before loading an app.
type Boot struct {
	// Index is the partition to try first: Factory or an OTA slot. If its image
	// does not load, bootloader_utility_load_boot_image falls back to other
	// partitions without writing otadata.
	Index int
	// Writes are made before the app is loaded, in order.
	Writes []Write
	// Initial is ota_has_initial_contents: no factory app and neither entry
	// has a usable sequence. Once an OTA app at index k has loaded, the
	// bootloader writes entry 0 = NewEntry(k+1, StateValid) to sector 0
	// (set_actual_ota_seq).
	Initial bool
}

// SelectBoot is bootloader_utility_get_selected_boot_partition without
// anti-rollback (CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK, which also skips entries
// whose app's secure version is below the eFuse's): with rollback enabled
// every PendingVerify entry becomes Aborted first (that is the rollback of an
// app that did not confirm itself), then the active entry selects the slot
// and, if New, becomes PendingVerify. The otadata partition is assumed
// present; without one the bootloader boots the factory app.
func SelectBoot(two [2]Entry, c Config) (Boot, error) {
	if c.AppCount < 0 || c.AppCount > 16 {
		return Boot{}, fmt.Errorf("otadata: %d OTA app partitions, ESP-IDF allows 0 to 16", c.AppCount)
	}
	var b Boot
	if c.Rollback {
		for i := range two {
			if two[i].State == StatePendingVerify {
				two[i].State = StateAborted
				b.Writes = append(b.Writes, Write{Sector: i, Entry: two[i]})
			}
		}
	}
	if (two[0].Invalid() && two[1].Invalid()) || c.AppCount == 0 {
		b.Index = Factory
		if !c.HasFactory {
			b.Index = 0
			b.Initial = two[0].initial() && two[1].initial()
		}
		return b, nil
	}
	a := Active(two)
	if a < 0 {
		// No factory either: the loader then tries every partition.
		b.Index = Factory
		return b, nil
	}
	b.Index, _ = Slot(two[a].Seq, c.AppCount)
	if c.Rollback && two[a].State == StateNew {
		two[a].State = StatePendingVerify
		b.Writes = append(b.Writes, Write{Sector: a, Entry: two[a]})
	}
	return b, nil
}

// InvalidateInactive is esp_ota_invalidate_inactive_ota_data_slot, which
// esp_ota_begin calls with rollback enabled after it erased the OTA slot it
// is about to write (erase_last_boot_app_partition, app_update/esp_ota_ops.c):
// when there is an active entry and the other one has a usable ota_seq (not
// empty, its CRC matching, whatever its state) naming a slot other than the
// running one, that other entry's sector is erased. ok is false when nothing
// is erased.
func InvalidateInactive(two [2]Entry, running, appCount int) (sector int, ok bool) {
	a := Active(two)
	if a < 0 || appCount < 1 {
		return 0, false
	}
	in := 1 - a
	if two[in].initial() {
		return 0, false
	}
	if s, _ := Slot(two[in].Seq, appCount); s == running {
		return 0, false
	}
	return in, true
}
