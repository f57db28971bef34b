/*
 * boot.c: one power-on of a device that runs MCUboot's own bootloader
 * (boot/bootutil/src/loader.c and the swap code of the build's mode), over a
 * flash kept in a file. It reads the file, runs boot_go() once, writes the
 * file back and prints on stdout what MCUboot chose:
 *
 *     boot primary 0x<flash offset> <major>.<minor>.<revision>+<build>
 *     fail <rc>
 *
 * preceded by a "refused ..." line for every flash operation the back end
 * refused, and followed by "ops N", the number of writes and erases MCUboot
 * made. With --cut K the power fails instead of the K-th write or erase:
 * the flash is written back as it is and the harness prints "cut K" alone.
 * MCUboot's own log goes to stderr.
 *
 * Usage: boot [--cut K] FLASH SECTOR WRITE ERASED PRI_OFF PRI_SIZE SEC_OFF SEC_SIZE [SCR_OFF SCR_SIZE]
 * (numbers in C notation: 4096, 0x1000). The upgrade mode is compile-time
 * (-D), as in MCUboot; the public key is the pubkey.inc on the include path,
 * a C array as `otaimg getpub --lang c` (or imgtool getpub) prints it.
 *
 * The flash is strict, as MCUboot's simulator's: a write must start on a
 * write unit, be whole write units and land on erased bytes; an erase must
 * cover whole sectors. Anything else is refused, reported, and returned to
 * MCUboot as an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootutil/bootutil.h"
#include "bootutil/image.h"
#include "bootutil/sign_key.h"
#include "bootutil/fault_injection_hardening.h"
#include "flash_map_backend/flash_map_backend.h"
#include "sysflash/sysflash.h"

#include "pubkey.inc"

const struct bootutil_key bootutil_keys[] = {
    {.key = ecdsa_pub_key, .len = &ecdsa_pub_key_len},
};
const int bootutil_key_cnt = 1;

#if defined(MCUBOOT_ENC_IMAGES)
/* The device's decryption key (PKCS#8 DER), as a port compiles it in:
 * enckey.inc defines enc_key[] and enc_key_len. */
#include "enckey.inc"
const struct bootutil_key bootutil_enc_key = {.key = enc_key, .len = &enc_key_len};
#endif

#define NAREAS 3

static const char *area_names[NAREAS + 1] = {"", "primary", "secondary", "scratch"};
static struct flash_area areas[NAREAS + 1];
static int have_area[NAREAS + 1];
static uint8_t *flash;
static size_t flash_size;
static uint32_t sector_size;
static uint32_t write_size;
static uint8_t erased;
static const char *flash_path;
static unsigned long ops;
static unsigned long cut_at;

static int save(void)
{
    FILE *f = fopen(flash_path, "wb");
    if (f == NULL || fwrite(flash, 1, flash_size, f) != flash_size || fclose(f) != 0) {
        fprintf(stderr, "boot: write %s failed\n", flash_path);
        return 1;
    }
    return 0;
}

/* operation counts one write or erase; at the one --cut names, the power
 * fails before it: the flash keeps what the earlier ones did. */
static void operation(void)
{
    ops++;
    if (cut_at != 0 && ops == cut_at) {
        int rc = save();
        printf("cut %lu\n", ops);
        exit(rc);
    }
}

static void refuse(const char *op, const struct flash_area *fap, uint32_t off, uint32_t len, const char *why)
{
    printf("refused %s %s 0x%x 0x%x %s\n", op, area_names[fap->fa_id], off, len, why);
    fprintf(stderr, "[harness] refused %s of 0x%x bytes at 0x%x in the %s area: %s\n",
            op, len, off, area_names[fap->fa_id], why);
}

static int in_bounds(const struct flash_area *fap, uint32_t off, uint32_t len)
{
    return off <= fap->fa_size && len <= fap->fa_size - off;
}

int flash_area_open(uint8_t id, const struct flash_area **fap)
{
    if (id < 1 || id > NAREAS || !have_area[id]) {
        return -1;
    }
    *fap = &areas[id];
    return 0;
}

void flash_area_close(const struct flash_area *fap) { (void)fap; }

int flash_area_read(const struct flash_area *fap, uint32_t off, void *dst, uint32_t len)
{
    if (!in_bounds(fap, off, len)) {
        refuse("read", fap, off, len, "out-of-bounds");
        return -1;
    }
    memcpy(dst, flash + fap->fa_off + off, len);
    return 0;
}

int flash_area_write(const struct flash_area *fap, uint32_t off, const void *src, uint32_t len)
{
    if (!in_bounds(fap, off, len)) {
        refuse("write", fap, off, len, "out-of-bounds");
        return -1;
    }
    if (off % write_size != 0 || len % write_size != 0) {
        refuse("write", fap, off, len, "misaligned");
        return -1;
    }
    operation();
    uint8_t *p = flash + fap->fa_off + off;
    for (uint32_t i = 0; i < len; i++) {
        if (p[i] != erased) {
            refuse("write", fap, off, len, "not-erased");
            return -1;
        }
    }
    memcpy(p, src, len);
    return 0;
}

int flash_area_erase(const struct flash_area *fap, uint32_t off, uint32_t len)
{
    if (!in_bounds(fap, off, len)) {
        refuse("erase", fap, off, len, "out-of-bounds");
        return -1;
    }
    if (off % sector_size != 0 || len % sector_size != 0) {
        refuse("erase", fap, off, len, "not-whole-sectors");
        return -1;
    }
    operation();
    memset(flash + fap->fa_off + off, erased, len);
    return 0;
}

int flash_area_get_sectors(int fa_id, uint32_t *count, struct flash_sector *sectors)
{
    const struct flash_area *fap;
    if (fa_id < 0 || fa_id > 255 || flash_area_open((uint8_t)fa_id, &fap) != 0) {
        return -1;
    }
    uint32_t n = fap->fa_size / sector_size;
    if (n > *count) {
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        sectors[i].fs_off = i * sector_size;
        sectors[i].fs_size = sector_size;
    }
    *count = n;
    return 0;
}

int flash_area_get_sector(const struct flash_area *fap, uint32_t off, struct flash_sector *sector)
{
    if (off >= fap->fa_size) {
        return -1;
    }
    sector->fs_off = off - off % sector_size;
    sector->fs_size = sector_size;
    return 0;
}

uint32_t flash_area_align(const struct flash_area *fap) { (void)fap; return write_size; }
uint8_t flash_area_erased_val(const struct flash_area *fap) { (void)fap; return erased; }

int flash_area_id_from_multi_image_slot(int image_index, int slot)
{
    switch (slot) {
    case 0: return FLASH_AREA_IMAGE_PRIMARY(image_index);
    case 1: return FLASH_AREA_IMAGE_SECONDARY(image_index);
    case 2: return FLASH_AREA_IMAGE_SCRATCH;
    }
    return -1;
}

int flash_area_id_from_image_slot(int slot) { return flash_area_id_from_multi_image_slot(0, slot); }

int flash_area_id_to_multi_image_slot(int image_index, int area_id)
{
    if (area_id == FLASH_AREA_IMAGE_PRIMARY(image_index)) {
        return 0;
    }
    if (area_id == FLASH_AREA_IMAGE_SECONDARY(image_index)) {
        return 1;
    }
    return -1;
}

static uint32_t num(const char *s, const char *what)
{
    char *end;
    unsigned long v = strtoul(s, &end, 0);
    if (*s == '\0' || *end != '\0' || v > 0xffffffffUL) {
        fprintf(stderr, "boot: %s \"%s\" is not a number\n", what, s);
        exit(2);
    }
    return (uint32_t)v;
}

static void add_area(int id, const char *off, const char *size)
{
    areas[id].fa_id = (uint8_t)id;
    areas[id].fa_off = num(off, "area offset");
    areas[id].fa_size = num(size, "area size");
    if ((uint64_t)areas[id].fa_off + areas[id].fa_size > flash_size) {
        fprintf(stderr, "boot: the %s area (0x%x bytes at 0x%x) ends past the flash file (0x%zx bytes)\n",
                area_names[id], areas[id].fa_size, areas[id].fa_off, flash_size);
        exit(2);
    }
    if (areas[id].fa_off % sector_size != 0 || areas[id].fa_size % sector_size != 0) {
        fprintf(stderr, "boot: the %s area is not whole sectors of 0x%x\n", area_names[id], sector_size);
        exit(2);
    }
    have_area[id] = 1;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--cut") == 0) {
        cut_at = num(argv[2], "cut");
        argc -= 2;
        argv += 2;
    }
    if (argc != 9 && argc != 11) {
        fprintf(stderr, "usage: boot [--cut K] FLASH SECTOR WRITE ERASED PRI_OFF PRI_SIZE SEC_OFF SEC_SIZE [SCR_OFF SCR_SIZE]\n");
        return 2;
    }
    flash_path = argv[1];
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0) {
        perror(argv[1]);
        return 1;
    }
    flash_size = (size_t)ftell(f);
    rewind(f);
    flash = malloc(flash_size);
    if (flash == NULL || fread(flash, 1, flash_size, f) != flash_size) {
        fprintf(stderr, "boot: read %s failed\n", argv[1]);
        return 1;
    }
    fclose(f);
    sector_size = num(argv[2], "sector size");
    write_size = num(argv[3], "write size");
    erased = (uint8_t)num(argv[4], "erased value");
    if (sector_size == 0 || write_size == 0 || sector_size % write_size != 0) {
        fprintf(stderr, "boot: sector size 0x%x must be a whole number of write units of %u\n", sector_size, write_size);
        return 2;
    }
    add_area(1, argv[5], argv[6]);
    add_area(2, argv[7], argv[8]);
    if (argc == 11) {
        add_area(3, argv[9], argv[10]);
    }

    struct boot_rsp rsp;
    memset(&rsp, 0, sizeof rsp);
    fih_ret rc = boot_go(&rsp);

    if (save() != 0) {
        return 1;
    }
    if (FIH_NOT_EQ(rc, FIH_SUCCESS)) {
        printf("fail %d\nops %lu\n", (int)rc, ops);
        return 0;
    }
    const char *name = "unknown";
    for (int id = 1; id <= NAREAS; id++) {
        if (have_area[id] && areas[id].fa_off == rsp.br_image_off) {
            name = area_names[id];
        }
    }
    const struct image_version *v = &rsp.br_hdr->ih_ver;
    printf("boot %s 0x%x %u.%u.%u+%u\nops %lu\n", name, rsp.br_image_off, v->iv_major, v->iv_minor,
           v->iv_revision, v->iv_build_num, ops);
    return 0;
}
