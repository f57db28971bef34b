/* Host configuration of MCUboot's bootloader for the boot harness. The
 * upgrade mode (MCUBOOT_OVERWRITE_ONLY, MCUBOOT_SWAP_USING_MOVE, ...) and
 * MCUBOOT_MAX_IMG_SECTORS come from the compiler's -D flags, one build per
 * mode and flash (see ../../../README.md);
 * everything here is the same for every build: one image, ECDSA P-256 with
 * tinycrypt and mbedtls' ASN.1 parser, as a Zephyr board with
 * CONFIG_BOOT_SIGNATURE_TYPE_ECDSA_P256 and CONFIG_BOOT_ECDSA_TINYCRYPT. */
#ifndef MCUBOOT_CONFIG_H
#define MCUBOOT_CONFIG_H

#define MCUBOOT_IMAGE_NUMBER 1
#ifndef MCUBOOT_MAX_IMG_SECTORS /* the tests set it: the larger slot's sectors */
#define MCUBOOT_MAX_IMG_SECTORS 128
#endif
#define MCUBOOT_SIGN_EC256 1
#define MCUBOOT_USE_TINYCRYPT 1
#define MCUBOOT_VALIDATE_PRIMARY_SLOT 1
#define MCUBOOT_USE_FLASH_AREA_GET_SECTORS 1
#define MCUBOOT_HAVE_LOGGING 1
#define MCUBOOT_HAVE_ASSERT_H 1
#define MCUBOOT_FIH_PROFILE_OFF 1
#define MCUBOOT_WATCHDOG_FEED() do { } while (0)
#define MCUBOOT_CPU_IDLE() do { } while (0)

#endif
