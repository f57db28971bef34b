/* Host configuration of MCUboot's bootutil_public.c for the trailer harness.
 * The upgrade mode and MCUBOOT_BOOT_MAX_ALIGN come from the compiler's -D
 * flags (see ../README.md); everything else is the smallest build. */
#ifndef MCUBOOT_CONFIG_H
#define MCUBOOT_CONFIG_H

#ifndef MCUBOOT_IMAGE_NUMBER
#define MCUBOOT_IMAGE_NUMBER 2
#endif
#define MCUBOOT_MAX_IMG_SECTORS 128
#define MCUBOOT_HAVE_ASSERT_H 1
#define MCUBOOT_FIH_PROFILE_OFF
#define MCUBOOT_SIGN_ED25519
#define MCUBOOT_WATCHDOG_FEED() do { } while (0)

#endif
