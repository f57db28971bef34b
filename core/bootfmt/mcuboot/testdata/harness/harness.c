/*
 * harness.c: runs MCUboot's own boot/bootutil/src/bootutil_public.c (and
 * bootutil_area.c for the trailer size) over flash kept in memory, and prints
 * what it writes and reads, so that otaport's Go encoding of the image trailer
 * can be compared byte for byte with MCUboot's.
 *
 * Usage: harness WRITE_SIZE ERASED_VAL SLOT_SIZE
 * The upgrade mode and MCUBOOT_BOOT_MAX_ALIGN are compile-time (-D), as in
 * MCUboot. The output format is read by golden_test.go; see ../README.md.
 *
 * The flash is strict, as MCUboot's simulator's: a write must be aligned to
 * the write size, a whole number of write units, and land on erased bytes;
 * otherwise it is refused and printed as such.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootutil/bootutil_public.h"
#include "bootutil_priv.h"
#include "bootutil_misc.h"
#include "bootutil_area.h"

#define NAREAS 5
#define SECTOR 4096u

static uint32_t write_size;
static uint8_t erased;
static uint32_t slot_size;
static uint8_t *mem[NAREAS + 1];
static struct flash_area areas[NAREAS + 1];
static int logging;

int flash_area_open(uint8_t id, const struct flash_area **fap)
{
    if (id < 1 || id > NAREAS) {
        return -1;
    }
    *fap = &areas[id];
    return 0;
}

void flash_area_close(const struct flash_area *fap) { (void)fap; }

int flash_area_read(const struct flash_area *fap, uint32_t off, void *dst, uint32_t len)
{
    if (off > fap->fa_size || len > fap->fa_size - off) {
        return -1;
    }
    memcpy(dst, mem[fap->fa_id] + off, len);
    return 0;
}

static void hex(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        printf("%02x", p[i]);
    }
}

int flash_area_write(const struct flash_area *fap, uint32_t off, const void *src, uint32_t len)
{
    const char *why = NULL;
    if (off > fap->fa_size || len > fap->fa_size - off) {
        why = "out-of-bounds";
    } else if (off % write_size != 0 || len % write_size != 0) {
        why = "misaligned";
    } else {
        for (uint32_t i = 0; i < len; i++) {
            if (mem[fap->fa_id][off + i] != erased) {
                why = "not-erased";
                break;
            }
        }
    }
    if (logging) {
        printf("write %u 0x%x ", fap->fa_id, off);
        hex(src, len);
        printf("%s%s\n", why ? " refused " : "", why ? why : "");
    }
    if (why) {
        return -1;
    }
    memcpy(mem[fap->fa_id] + off, src, len);
    return 0;
}

int flash_area_erase(const struct flash_area *fap, uint32_t off, uint32_t len)
{
    if (off > fap->fa_size || len > fap->fa_size - off) {
        return -1;
    }
    memset(mem[fap->fa_id] + off, erased, len);
    return 0;
}

int flash_area_get_sector(const struct flash_area *fap, uint32_t off, struct flash_sector *sector)
{
    if (off >= fap->fa_size) {
        return -1;
    }
    sector->fs_off = off - off % SECTOR;
    sector->fs_size = SECTOR;
    return 0;
}

uint32_t flash_area_align(const struct flash_area *fap) { (void)fap; return write_size; }
uint8_t flash_area_erased_val(const struct flash_area *fap) { (void)fap; return erased; }

static void blank(void)
{
    for (int id = 1; id <= NAREAS; id++) {
        memset(mem[id], erased, slot_size);
    }
}

/* raw puts bytes into flash without the back end's checks: the states MCUboot
 * itself never writes (a bad magic, a bad flag) are made this way. */
static void raw(int id, uint32_t off, const uint8_t *p, uint32_t n)
{
    memcpy(mem[id] + off, p, n);
}

static void print_state(int id)
{
    const struct flash_area *fap;
    struct boot_swap_state st;
    flash_area_open(id, &fap);
    int rc = boot_read_swap_state(fap, &st);
    printf("state %d rc=%d magic=%u swap_type=%u image_num=%u copy_done=%u image_ok=%u\n",
           id, rc, st.magic, st.swap_type, st.image_num, st.copy_done, st.image_ok);
}

/* setup puts a slot into one of the named starting states. */
static int setup(int id, const char *name)
{
    const struct flash_area *fap;
    flash_area_open(id, &fap);
    if (strcmp(name, "blank") == 0) {
        return 0;
    }
    if (strcmp(name, "magic") == 0) {
        return boot_write_magic(fap);
    }
    if (strcmp(name, "magic+image_ok") == 0) {
        return boot_write_magic(fap) || boot_write_image_ok(fap);
    }
    if (strcmp(name, "magic+copy_done") == 0) {
        return boot_write_magic(fap) || boot_write_copy_done(fap);
    }
    if (strcmp(name, "magic+copy_done+image_ok") == 0) {
        return boot_write_magic(fap) || boot_write_copy_done(fap) || boot_write_image_ok(fap);
    }
    if (strcmp(name, "bad-magic") == 0) {
        uint8_t m[BOOT_MAGIC_SZ];
        memcpy(m, BOOT_IMG_MAGIC, BOOT_MAGIC_SZ);
        m[BOOT_MAGIC_SZ - 1] ^= 0x01;
        raw(id, boot_magic_off(fap), m, BOOT_MAGIC_SZ);
        return 0;
    }
    return -1;
}

static const char *starts[] = {
    "blank", "magic", "magic+image_ok", "magic+copy_done", "magic+copy_done+image_ok", "bad-magic",
};

static void api_cases(void)
{
    /* op, image, area the op touches */
    static const struct { const char *op; int image; int area; } ops[] = {
        {"set_pending(0)", 0, 2}, {"set_pending(1)", 0, 2}, {"set_confirmed", 0, 1},
        {"set_pending(0)", 1, 4}, {"set_pending(1)", 1, 4}, {"set_confirmed", 1, 3},
    };
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
            blank();
            if (setup(ops[o].area, starts[s]) != 0) {
                printf("setup %s failed\n", starts[s]);
                exit(1);
            }
            printf("case %s image=%d area=%d from=%s\n", ops[o].op, ops[o].image, ops[o].area, starts[s]);
            logging = 1;
            int rc;
            if (strcmp(ops[o].op, "set_confirmed") == 0) {
                rc = boot_set_confirmed_multi(ops[o].image);
            } else {
                rc = boot_set_pending_multi(ops[o].image, ops[o].op[12] == '1');
            }
            logging = 0;
            printf("rc %d\n", rc);
            print_state(ops[o].area);
        }
    }
}

/* put_state writes the raw trailer for a (magic, image_ok, copy_done)
 * triple, each 0 = unset (left erased), 1 = good/set, 2 = bad. */
static void put_state(int id, int magic, int image_ok, int copy_done)
{
    const struct flash_area *fap;
    flash_area_open(id, &fap);
    if (magic) {
        uint8_t m[BOOT_MAGIC_SZ];
        memcpy(m, BOOT_IMG_MAGIC, BOOT_MAGIC_SZ);
        if (magic == 2) {
            m[0] ^= 0x80;
        }
        raw(id, boot_magic_off(fap), m, BOOT_MAGIC_SZ);
    }
    uint8_t v;
    if (image_ok) {
        v = image_ok == 1 ? BOOT_FLAG_SET : 0x02;
        raw(id, boot_image_ok_off(fap), &v, 1);
    }
    if (copy_done) {
        v = copy_done == 1 ? BOOT_FLAG_SET : 0x02;
        raw(id, boot_copy_done_off(fap), &v, 1);
    }
}

static void table_cases(void)
{
    for (int p = 0; p < 27; p++) {
        for (int s = 0; s < 27; s++) {
            blank();
            put_state(1, p / 9, p / 3 % 3, p % 3);
            put_state(2, s / 9, s / 3 % 3, s % 3);
            printf("table %d%d%d %d%d%d %d\n", p / 9, p / 3 % 3, p % 3, s / 9, s / 3 % 3, s % 3,
                   boot_swap_type_multi(0));
        }
    }
}

static void swap_info_cases(void)
{
    static const int vals[] = {-1, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x0f, 0x12, 0x13, 0x14, 0x15, 0xe4, 0xf2, 0xff};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        const struct flash_area *fap;
        blank();
        flash_area_open(1, &fap);
        uint8_t v = vals[i] < 0 ? erased : (uint8_t)vals[i];
        raw(1, boot_swap_info_off(fap), &v, 1);
        printf("swap_info %02x: ", v);
        print_state(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: harness WRITE_SIZE ERASED_VAL SLOT_SIZE\n");
        return 2;
    }
    write_size = strtoul(argv[1], NULL, 0);
    erased = (uint8_t)strtoul(argv[2], NULL, 0);
    slot_size = strtoul(argv[3], NULL, 0);
    for (int id = 1; id <= NAREAS; id++) {
        mem[id] = malloc(slot_size);
        areas[id].fa_id = id;
        areas[id].fa_off = id * slot_size;
        areas[id].fa_size = slot_size;
    }
    blank();

    const struct flash_area *fap;
    flash_area_open(1, &fap);
    printf("boot_max_align %d\n", BOOT_MAX_ALIGN);
    printf("magic ");
    hex(BOOT_IMG_MAGIC, BOOT_MAGIC_SZ);
    printf("\n");
    printf("magic_off 0x%x\n", boot_magic_off(fap));
    printf("image_ok_off 0x%x\n", boot_image_ok_off(fap));
    printf("copy_done_off 0x%x\n", boot_copy_done_off(fap));
    printf("swap_info_off 0x%x\n", boot_swap_info_off(fap));
#if defined(MCUBOOT_SWAP_USING_OFFSET)
    printf("unprotected_tlv_sizes_off 0x%x\n", boot_unprotected_tlv_sizes_off(fap));
#endif
    printf("swap_size_off 0x%x\n", boot_swap_size_off(fap));
    printf("status_sz 0x%x\n", boot_status_sz(write_size));
    printf("trailer_sz 0x%x\n", boot_trailer_sz(write_size));

    api_cases();
    table_cases();
    swap_info_cases();
    return 0;
}
