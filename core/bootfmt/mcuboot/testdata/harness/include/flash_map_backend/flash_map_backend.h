/* A flash-area back end over memory: what bootutil_public.c calls, and
 * nothing else. The areas live in harness.c. */
#ifndef FLASH_MAP_BACKEND_H
#define FLASH_MAP_BACKEND_H

#include <stdint.h>
#include <stddef.h>

struct flash_area {
    uint8_t fa_id;
    uint32_t fa_off;
    uint32_t fa_size;
};

struct flash_sector {
    uint32_t fs_off;
    uint32_t fs_size;
};

int flash_area_open(uint8_t id, const struct flash_area **fap);
void flash_area_close(const struct flash_area *fap);
int flash_area_read(const struct flash_area *fap, uint32_t off, void *dst, uint32_t len);
int flash_area_write(const struct flash_area *fap, uint32_t off, const void *src, uint32_t len);
int flash_area_erase(const struct flash_area *fap, uint32_t off, uint32_t len);
int flash_area_get_sector(const struct flash_area *fap, uint32_t off, struct flash_sector *sector);
uint32_t flash_area_align(const struct flash_area *fap);
uint8_t flash_area_erased_val(const struct flash_area *fap);

static inline uint32_t flash_area_get_off(const struct flash_area *fa) { return fa->fa_off; }
static inline uint32_t flash_area_get_size(const struct flash_area *fa) { return fa->fa_size; }
static inline uint8_t flash_area_get_id(const struct flash_area *fa) { return fa->fa_id; }
static inline uint32_t flash_sector_get_off(const struct flash_sector *fs) { return fs->fs_off; }
static inline uint32_t flash_sector_get_size(const struct flash_sector *fs) { return fs->fs_size; }

#endif
