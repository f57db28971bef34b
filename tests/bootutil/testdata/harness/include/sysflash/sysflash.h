/* One image: area 1 is its primary slot, 2 its secondary, 3 the scratch
 * area (swap-scratch builds only). */
#ifndef SYSFLASH_H
#define SYSFLASH_H
#define FLASH_AREA_IMAGE_PRIMARY(x)   ((void)(x), 1)
#define FLASH_AREA_IMAGE_SECONDARY(x) ((void)(x), 2)
#define FLASH_AREA_IMAGE_SCRATCH      3
#endif
