package hal

// PartOtadata is ESP-IDF's otadata partition (type data, subtype ota): the
// boot request of a board whose bootloader is esp-idf. Only those boards
// have it.
const PartOtadata = "otadata"

// ESP-IDF's otadata geometry (bootloader_common_read_otadata in
// components/bootloader_support/src/bootloader_utility.c): one 32-byte entry
// at the start of each of two 4 KiB sectors.
const (
	OtadataSectorSize = 0x1000
	OtadataSize       = 2 * OtadataSectorSize
)

// partFactory is ESP-IDF's factory app partition, which an esp-idf board
// must not have (see otadata).
const partFactory = "factory"

// otadata: an esp-idf board keeps its boot request where ESP-IDF's
// bootloader reads it, two sectors of 4 KiB; params, otaport's key-value
// store, is then a partition of its own. A factory app partition is refused:
// with one, the bootloader boots it (or, when it is empty, falls back to
// ota_0 whatever otadata says) once both entries are given up, which may be
// the image a rollback just gave up; without one it boots ota_0 and records
// it (set_actual_ota_seq), which is otaport's "the first image is in app".
func (v *validator) otadata(l Layout, g *geom, byName map[string]*part) {
	if l.Bootloader.Name != BootloaderESPIDF || !v.known("bootloader.name") {
		return
	}
	if f := byName[partFactory]; f != nil {
		v.add(f.path+".name", "is ESP-IDF's factory app partition, but otaport installs into ota_0 (app) and ota_1 (ota) only, and with a factory partition ESP-IDF's bootloader boots factory, or falls back to ota_0 whatever otadata says, once both otadata entries are given up; remove the factory partition from the board and from its partition table (the first image goes into app)")
	}
	p := byName[PartOtadata]
	if p == nil {
		v.add("partitions", "has no otadata partition, where ESP-IDF's bootloader reads which slot to boot; add {name: otadata, offset: 0xd000, size: 8KiB}, where ESP-IDF's partitions_two_ota.csv puts it")
		return
	}
	if !p.sized {
		return
	}
	if p.Size != OtadataSize {
		v.add(p.path+".size", "is %s; ESP-IDF's otadata is two 4 KiB sectors, one entry at the start of each: make it 8KiB", formatSize(p.Size))
		return
	}
	if g == nil || !p.inside {
		return
	}
	if rs := g.m.Runs(p.Offset, p.End()); len(rs) != 1 || rs[0].Size != OtadataSectorSize {
		v.add(p.path+".offset", "lies in sectors %s; ESP-IDF erases and writes each otadata entry as one 4 KiB sector (SPI_FLASH_SEC_SIZE): place otadata in 4 KiB sectors (every ESP32's SPI flash has them: check flash.erase_size)", runsString(rs))
	}
}
