// Package haltest is test support for code written against core/hal: the
// layouts of real boards of the catalog, for tests that need a real geometry
// (non-uniform sectors, wide write units, flash that erases to 0x00, one or
// three boot attempts) without importing the ports, which core must not
// depend on.
//
// Each layout is a copy of what its port declares; a test in ports/all keeps
// every copy equal to the catalog, so a board that changes there fails until
// it changes here too. It holds only the boards core's tests use. Only test
// files import it.
package haltest

import (
	"slices"

	"github.com/otaport/otaport/core/hal"
)

// Layout returns the layout of the catalog board called name, as its port
// declares it, and false for a board this package does not hold. Every call
// returns a fresh copy that the caller may change.
func Layout(name string) (hal.Layout, bool) {
	for _, l := range append(layouts(), extras()...) {
		if l.Board == name {
			return l, true
		}
	}
	return hal.Layout{}, false
}

// Boards returns the names of the catalog boards it holds, sorted (Extra's
// are not among them).
func Boards() []string { return names(layouts()) }

// names returns the boards' names, sorted.
func names(ls []hal.Layout) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Board)
	}
	slices.Sort(out)
	return out
}

// Extra returns the names of the boards it holds that the catalog does not
// (yet): layouts of real parts for a scheme no catalog board uses, which
// Layout returns too. A test in ports/all checks only Boards.
func Extra() []string { return names(extras()) }

// extras returns the boards of Extra, built anew at each call.
func extras() []hal.Layout {
	return []hal.Layout{
		// swap (MCUboot swap-move), 4 KiB pages, word writes (nRF52840
		// NVMC): the partitions of nRF Connect SDK's nrf52840dk with
		// MCUboot, app (slot0) one sector larger than ota (slot1) for the
		// move, as boot_slots_compatible recommends.
		{
			Board: "nrf52840-dk-swap", Vendor: "Nordic Semiconductor", SoC: "nRF52840",
			Scheme:     hal.Swap,
			Bootloader: hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeSwapMove},
			Flash: hal.FlashGeometry{Base: 0x0, Size: 0x100000, Sectors: []hal.SectorRun{{Count: 256, Size: 0x1000}},
				WriteAlign: 4, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0xc000},
				{Name: "app", Offset: 0xc000, Size: 0x77000},
				{Name: "ota", Offset: 0x83000, Size: 0x76000},
				{Name: "params", Offset: 0xf9000, Size: 0x7000},
			},
			Signature: "ecdsa-p256", BootAttempts: 1,
		},
		// dual-bank (MCUboot direct-xip with revert), the partitions of
		// Zephyr's nrf52840dk (two equal slots of 0x67000 bytes, 4 KiB
		// pages, word writes): each slot runs in place, an image linked for
		// the slot it is written to (imgtool --rom-fixed).
		{
			Board: "nrf52840-dk-xip", Vendor: "Nordic Semiconductor", SoC: "nRF52840",
			Scheme:     hal.DualBank,
			Bootloader: hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeDirectXIP},
			Flash: hal.FlashGeometry{Base: 0x0, Size: 0x100000, Sectors: []hal.SectorRun{{Count: 256, Size: 0x1000}},
				WriteAlign: 4, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0xc000},
				{Name: "app", Offset: 0xc000, Size: 0x67000},
				{Name: "ota", Offset: 0x73000, Size: 0x67000},
				{Name: "params", Offset: 0xf8000, Size: 0x8000},
			},
			Signature: "ecdsa-p256", BootAttempts: 1,
		},
	}
}

// layouts returns the boards, built anew at each call so that no caller
// shares a slice with another.
func layouts() []hal.Layout {
	return []hal.Layout{
		// dual-bank, 2 KiB pages, 8-byte double words, 3 boot attempts (RM0351)
		{
			Board: "b-l475e-iot01a", Vendor: "STMicroelectronics", SoC: "STM32L475VG",
			Scheme: hal.DualBank,
			Flash: hal.FlashGeometry{Base: 0x8000000, Size: 0x100000, Sectors: []hal.SectorRun{{Count: 512, Size: 0x800}},
				WriteAlign: 8, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0x8000},
				{Name: "app", Offset: 0x8000, Size: 0x75000},
				{Name: "params", Offset: 0x7d000, Size: 0x2000},
				{Name: "bootloader-b", Offset: 0x80000, Size: 0x8000},
				{Name: "ota", Offset: 0x88000, Size: 0x75000},
				{Name: "params-b", Offset: 0xfd000, Size: 0x2000},
			},
			Signature: "ecdsa-p256", BootAttempts: 3,
		},
		// dual-bank, 4 KiB sectors, 16-byte writes (ESP-IDF two-OTA table)
		{
			Board: "esp32-devkitc", Vendor: "Espressif", SoC: "ESP32-D0WD-V3",
			Scheme: hal.DualBank, Bootloader: hal.Bootloader{Name: hal.BootloaderESPIDF},
			Flash: hal.FlashGeometry{Base: 0x0, Size: 0x400000, Sectors: []hal.SectorRun{{Count: 1024, Size: 0x1000}},
				WriteAlign: 16, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0x8000},
				{Name: "partition-table", Offset: 0x8000, Size: 0x1000},
				{Name: "nvs", Offset: 0x9000, Size: 0x4000},
				{Name: "otadata", Offset: 0xd000, Size: 0x2000},
				{Name: "phy_init", Offset: 0xf000, Size: 0x1000},
				{Name: "params", Offset: 0x10000, Size: 0x2000},
				{Name: "app", Offset: 0x110000, Size: 0x100000},
				{Name: "ota", Offset: 0x210000, Size: 0x100000},
			},
			Signature: "ed25519", BootAttempts: 1,
		},
		// single-bank, 1 KiB pages, half-word writes (GD32VF103)
		{
			Board: "longan-nano", Vendor: "Sipeed", SoC: "GD32VF103CBT6",
			Scheme: hal.SingleBank,
			Flash: hal.FlashGeometry{Base: 0x8000000, Size: 0x20000, Sectors: []hal.SectorRun{{Count: 128, Size: 0x400}},
				WriteAlign: 2, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0x4000},
				{Name: "params", Offset: 0x4000, Size: 0x2000},
				{Name: "app", Offset: 0x6000, Size: 0xd000},
				{Name: "ota", Offset: 0x13000, Size: 0xd000},
			},
			Signature: "ed25519", BootAttempts: 1,
		},
		// dual-bank, 4 KiB sectors, 4-byte writes (ESP8266_RTOS_SDK two-OTA table)
		{
			Board: "nodemcu-esp8266", Vendor: "Espressif", SoC: "ESP8266EX",
			Scheme: hal.DualBank,
			Flash: hal.FlashGeometry{Base: 0x0, Size: 0x400000, Sectors: []hal.SectorRun{{Count: 1024, Size: 0x1000}},
				WriteAlign: 4, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0x8000},
				{Name: "partition-table", Offset: 0x8000, Size: 0x1000},
				{Name: "nvs", Offset: 0x9000, Size: 0x4000},
				{Name: "params", Offset: 0xd000, Size: 0x2000},
				{Name: "phy_init", Offset: 0xf000, Size: 0x1000},
				{Name: "app", Offset: 0x10000, Size: 0xf0000},
				{Name: "ota", Offset: 0x110000, Size: 0xf0000},
			},
			Signature: "ecdsa-p256", BootAttempts: 1,
		},
		// swap (MCUboot swap-move), 4 KiB pages, word writes (nRF52840 NVMC),
		// same-size slots as Zephyr's partition table
		{
			Board: "nrf52840-dk", Vendor: "Nordic Semiconductor", SoC: "nRF52840",
			Scheme: hal.Swap, Bootloader: hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeSwapMove},
			Flash: hal.FlashGeometry{Base: 0x0, Size: 0x100000, Sectors: []hal.SectorRun{{Count: 256, Size: 0x1000}},
				WriteAlign: 4, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0xc000},
				{Name: "app", Offset: 0xc000, Size: 0x67000},
				{Name: "ota", Offset: 0x73000, Size: 0x67000},
				{Name: "scratch", Offset: 0xda000, Size: 0x1e000},
				{Name: "params", Offset: 0xf8000, Size: 0x8000},
			},
			Signature: "ecdsa-p256", BootAttempts: 1,
		},
		// single-bank (MCUboot overwrite-only), 4 KiB pages, word writes
		// (nRF5340 NVMC), TF-M areas between ota and params
		{
			Board: "nrf5340-dk", Vendor: "Nordic Semiconductor", SoC: "nRF5340",
			Scheme: hal.SingleBank, Bootloader: hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeOverwriteOnly},
			Flash: hal.FlashGeometry{Base: 0x0, Size: 0x100000, Sectors: []hal.SectorRun{{Count: 256, Size: 0x1000}},
				WriteAlign: 4, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0x10000},
				{Name: "app", Offset: 0x10000, Size: 0x70000},
				{Name: "ota", Offset: 0x80000, Size: 0x70000},
				{Name: "tfm-ps", Offset: 0xf0000, Size: 0x4000},
				{Name: "tfm-its", Offset: 0xf4000, Size: 0x2000},
				{Name: "tfm-otp", Offset: 0xf6000, Size: 0x2000},
				{Name: "params", Offset: 0xf8000, Size: 0x8000},
			},
			Signature: "ecdsa-p256", BootAttempts: 1,
		},
		// dual-bank, 128 KiB sectors, 32-byte flash words, 2 boot attempts (RM0433)
		{
			Board: "nucleo-h743zi", Vendor: "STMicroelectronics", SoC: "STM32H743ZI",
			Scheme: hal.DualBank,
			Flash: hal.FlashGeometry{Base: 0x8000000, Size: 0x200000, Sectors: []hal.SectorRun{{Count: 16, Size: 0x20000}},
				WriteAlign: 32, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0x20000},
				{Name: "params", Offset: 0x20000, Size: 0x40000},
				{Name: "app", Offset: 0x60000, Size: 0xa0000},
				{Name: "bootloader-b", Offset: 0x100000, Size: 0x20000},
				{Name: "params-b", Offset: 0x120000, Size: 0x40000},
				{Name: "ota", Offset: 0x160000, Size: 0xa0000},
			},
			Signature: "ecdsa-p256", BootAttempts: 2,
		},
		// single-bank, 256-byte pages, word writes, erased 0x00 (RM0038)
		{
			Board: "nucleo-l152re", Vendor: "STMicroelectronics", SoC: "STM32L152RE",
			Scheme: hal.SingleBank,
			Flash: hal.FlashGeometry{Base: 0x8000000, Size: 0x80000, Sectors: []hal.SectorRun{{Count: 2048, Size: 0x100}},
				WriteAlign: 4, EraseValue: 0x00},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0x8000},
				{Name: "params", Offset: 0x8000, Size: 0x2000},
				{Name: "app", Offset: 0x10000, Size: 0x38000},
				{Name: "ota", Offset: 0x48000, Size: 0x38000},
			},
			Signature: "ed25519", BootAttempts: 1,
		},
		// single-bank, 4 KiB sectors, 256-byte program pages (Pico SDK)
		{
			Board: "rpi-pico", Vendor: "Raspberry Pi", SoC: "RP2040",
			Scheme: hal.SingleBank,
			Flash: hal.FlashGeometry{Base: 0x10000000, Size: 0x200000, Sectors: []hal.SectorRun{{Count: 512, Size: 0x1000}},
				WriteAlign: 256, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0x8000},
				{Name: "params", Offset: 0x8000, Size: 0x2000},
				{Name: "app", Offset: 0x10000, Size: 0xf0000},
				{Name: "ota", Offset: 0x100000, Size: 0xf0000},
				{Name: "storage", Offset: 0x1f0000, Size: 0x10000},
			},
			Signature: "ed25519", BootAttempts: 1,
		},
		// dual-bank, 64 MiB eMMC of 512-byte blocks, erased 0x00
		{
			Board: "rpi4-b", Vendor: "Raspberry Pi", SoC: "BCM2711",
			Scheme: hal.DualBank,
			Flash: hal.FlashGeometry{Base: 0x0, Size: 0x4000000, Sectors: []hal.SectorRun{{Count: 131072, Size: 0x200}},
				WriteAlign: 512, EraseValue: 0x00},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0x100000},
				{Name: "params", Offset: 0x100000, Size: 0x100000},
				{Name: "app", Offset: 0x200000, Size: 0x1f00000},
				{Name: "ota", Offset: 0x2100000, Size: 0x1f00000},
			},
			Signature: "rsa-3072", BootAttempts: 1,
		},
		// dual-bank, two banks of 16/64/128 KiB sectors, byte writes (RM0410)
		{
			Board: "stm32f769i-disco", Vendor: "STMicroelectronics", SoC: "STM32F769NI",
			Scheme: hal.DualBank,
			Flash: hal.FlashGeometry{Base: 0x8000000, Size: 0x200000, Sectors: []hal.SectorRun{{Count: 4, Size: 0x4000}, {Count: 1, Size: 0x10000}, {Count: 7, Size: 0x20000}, {Count: 4, Size: 0x4000}, {Count: 1, Size: 0x10000}, {Count: 7, Size: 0x20000}},
				WriteAlign: 1, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0x8000},
				{Name: "params", Offset: 0x8000, Size: 0x8000},
				{Name: "storage", Offset: 0x10000, Size: 0x10000},
				{Name: "app", Offset: 0x20000, Size: 0xe0000},
				{Name: "bootloader-b", Offset: 0x100000, Size: 0x8000},
				{Name: "params-b", Offset: 0x108000, Size: 0x8000},
				{Name: "storage-b", Offset: 0x110000, Size: 0x10000},
				{Name: "ota", Offset: 0x120000, Size: 0xe0000},
			},
			Signature: "ecdsa-p256", BootAttempts: 3,
		},
		// single-bank, 16/64/128 KiB sectors, byte writes (RM0090): the
		// board of issue 9's reboot loop
		{
			Board: "stm32f407-disco", Vendor: "STMicroelectronics", SoC: "STM32F407VG",
			Scheme: hal.SingleBank,
			Flash: hal.FlashGeometry{Base: 0x08000000, Size: 0x100000, Sectors: []hal.SectorRun{{Count: 4, Size: 0x4000}, {Count: 1, Size: 0x10000}, {Count: 7, Size: 0x20000}},
				WriteAlign: 1, EraseValue: 0xff},
			Partitions: []hal.Partition{
				{Name: "bootloader", Offset: 0x0, Size: 0x8000},
				{Name: "params", Offset: 0x8000, Size: 0x8000},
				{Name: "storage", Offset: 0x10000, Size: 0x10000},
				{Name: "app", Offset: 0x20000, Size: 0x60000},
				{Name: "ota", Offset: 0x80000, Size: 0x80000},
			},
			Signature: "ecdsa-p256", BootAttempts: 1,
		},
	}
}
