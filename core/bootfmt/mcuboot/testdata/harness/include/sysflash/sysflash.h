/* Image 0: areas 1 (primary) and 2 (secondary); image 1: areas 3 and 4. */
#ifndef SYSFLASH_H
#define SYSFLASH_H
#define FLASH_AREA_IMAGE_PRIMARY(x)   ((x) == 0 ? 1 : 3)
#define FLASH_AREA_IMAGE_SECONDARY(x) ((x) == 0 ? 2 : 4)
#define FLASH_AREA_IMAGE_SCRATCH      5
#endif
