/*
 * Exercises a generated C port (ota_port.c) against a strict RAM flash:
 * erase on sector bounds only, program aligned and only over erased bytes,
 * like the Go flash emulator. Exit status 0 when every check passes.
 */
#include <stdio.h>
#include <string.h>

#include "ota_hal_plat.h"

static uint8_t flash[OTA_FLASH_SIZE];
static int failures;

#define CHECK(cond, what)                                              \
    do {                                                               \
        if (!(cond)) {                                                 \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, what);       \
            failures++;                                                \
        }                                                              \
    } while (0)

static const ota_sector_run_t runs[OTA_FLASH_SECTOR_RUN_COUNT] = OTA_FLASH_SECTOR_RUNS;

static int on_sector_bound(ota_addr_t off)
{
    ota_addr_t at = 0;
    uint32_t i;

    for (i = 0; i < OTA_FLASH_SECTOR_RUN_COUNT; i++) {
        ota_addr_t run = (ota_addr_t)runs[i].count * runs[i].size;
        if (off >= at && off < at + run) {
            return (off - at) % runs[i].size == 0;
        }
        at += run;
    }
    return at == off;
}

int ota_flash_erase(ota_addr_t addr, uint32_t len)
{
    ota_addr_t off = addr - OTA_FLASH_BASE;

    if (off > OTA_FLASH_SIZE || len > OTA_FLASH_SIZE - off || !on_sector_bound(off) || !on_sector_bound(off + len)) {
        printf("erase 0x%llx+%u refused\n", (unsigned long long)addr, len);
        return -1;
    }
    memset(flash + off, OTA_FLASH_ERASE_VALUE, len);
    return 0;
}

int ota_flash_program(ota_addr_t addr, const uint8_t *buf, uint32_t len)
{
    ota_addr_t off = addr - OTA_FLASH_BASE;
    uint32_t i;

    if (off > OTA_FLASH_SIZE || len > OTA_FLASH_SIZE - off || off % OTA_FLASH_WRITE_ALIGN != 0 ||
        len % OTA_FLASH_WRITE_ALIGN != 0) {
        printf("program 0x%llx+%u refused\n", (unsigned long long)addr, len);
        return -1;
    }
    for (i = 0; i < len; i++) {
        if (flash[off + i] != OTA_FLASH_ERASE_VALUE) {
            printf("program 0x%llx: not erased\n", (unsigned long long)(addr + i));
            return -1;
        }
    }
    memcpy(flash + off, buf, len);
    return 0;
}

int ota_flash_read(ota_addr_t addr, uint8_t *buf, uint32_t len)
{
    ota_addr_t off = addr - OTA_FLASH_BASE;

    if (off > OTA_FLASH_SIZE || len > OTA_FLASH_SIZE - off) {
        return -1;
    }
    memcpy(buf, flash + off, len);
    return 0;
}

/* What the harness's image check says of every slot: an image of n bytes. */
static uint32_t image_size;

int ota_image_check(int slot, ota_image_info_t *info)
{
    (void)slot;
    memset(info, 0, sizeof(*info));
    info->parses = info->bootable = image_size != 0;
    info->total_size = image_size;
    return 0;
}

/* CRC-32 (IEEE), bit by bit: the record log's checksum. */
static uint32_t crc32(const uint8_t *p, uint32_t n)
{
    uint32_t crc = 0xFFFFFFFFu, i;
    int b;

    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (b = 0; b < 8; b++) {
            crc = (crc & 1u) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
        }
    }
    return ~crc;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Checks the record at rec: magic, kind, CRC; returns its padded size. */
static uint32_t check_record(const uint8_t *rec, uint32_t kind, const char *what)
{
    uint32_t len = get32(rec + 12);

    CHECK(get32(rec) == 0x7041544Fu, what);
    CHECK((uint32_t)(rec[8] | (rec[9] << 8)) == kind, what);
    CHECK(get32(rec + 16 + len) == crc32(rec, 16 + len), what);
    return (16u + len + 4u + OTA_FLASH_WRITE_ALIGN - 1u) / OTA_FLASH_WRITE_ALIGN * OTA_FLASH_WRITE_ALIGN;
}

/* Downloads an image of n bytes in chunks into the update slot at slot. */
static void download(ota_addr_t slot, uint8_t *img, uint32_t n, uint8_t seed)
{
    uint32_t chunk = OTA_FLASH_WRITE_ALIGN < 64u ? 64u : OTA_FLASH_WRITE_ALIGN;
    volatile uint32_t off = 0;
    ota_init_param_t in;
    uint32_t i;
    uint8_t back[4096];

    for (i = 0; i < n; i++) {
        img[i] = (uint8_t)(i * 7u + seed);
    }
    in.image_size = n;
    in.breakpoint = 0;
    CHECK(hal_ota_init(&in) == 0, "init");
    CHECK(flash[slot - OTA_FLASH_BASE] == OTA_FLASH_ERASE_VALUE, "init erases the update slot");
    while (off < n) {
        uint32_t len = n - off < chunk ? n - off : chunk;
        CHECK(hal_ota_write(NULL, &off, img + off, len) == 0, "write chunk");
    }
    CHECK(off == n, "write advances the offset to the end");
    CHECK(memcmp(flash + (slot - OTA_FLASH_BASE), img, n) == 0, "image lands in the update slot");
    off = 0;
    CHECK(hal_ota_read(NULL, &off, back, n) == 0 && off == n, "read advances the offset");
    CHECK(memcmp(back, img, n) == 0, "read returns what was written");
}

int main(void)
{
    static uint8_t img[4096];
    const uint32_t n = 1003; /* not a multiple of any write unit: the last chunk is padded */
    const uint8_t *params = flash + (OTA_PART_PARAMS_ADDR - OTA_FLASH_BASE);
    volatile uint32_t off;
    uint8_t byte = 0xA5;
    ota_init_param_t in;
    ota_finish_param_t fin;
    const uint32_t unit = OTA_FLASH_WRITE_ALIGN < 64u ? 64u : OTA_FLASH_WRITE_ALIGN;
    uint32_t at;

    memset(flash, OTA_FLASH_ERASE_VALUE, sizeof(flash));

    download(OTA_PART_OTA_ADDR, img, n, 1);

    /* Refusals: misaligned, past the slot, NULL. */
    if (OTA_FLASH_WRITE_ALIGN > 1u) {
        off = 1;
        CHECK(hal_ota_write(NULL, &off, &byte, 1) != 0 && off == 1, "misaligned write refused, offset kept");
    }
    off = OTA_PART_OTA_SIZE;
    CHECK(hal_ota_write(NULL, &off, &byte, 1) != 0, "write past the slot refused");
    off = OTA_PART_OTA_SIZE - 1u;
    CHECK(hal_ota_read(NULL, &off, img + n, 2) != 0, "read past the slot refused");
    CHECK(hal_ota_write(NULL, NULL, &byte, 1) != 0, "NULL offset refused");
    CHECK(hal_ota_init(NULL) != 0, "init without parameters refused");

    /* Resume keeps the data; the same bytes again are skipped, others refused. */
    in.image_size = n;
    in.breakpoint = 512;
    CHECK(hal_ota_init(&in) == 0, "resume init");
    CHECK(memcmp(flash + (OTA_PART_OTA_ADDR - OTA_FLASH_BASE), img, n) == 0, "resume keeps the slot");
    off = 0;
    CHECK(hal_ota_write(NULL, &off, img, unit) == 0, "the same bytes again");
    img[0] ^= 0xFFu;
    off = 0;
    CHECK(hal_ota_write(NULL, &off, img, unit) == OTA_E_NOT_ERASED, "other bytes over a written unit refused");
    download(OTA_PART_OTA_ADDR, img, n, 1);

    image_size = n;
    memset(&fin, 0, sizeof(fin));
    fin.result_type = OTA_FINISH;
    fin.rollback = 1;
#if OTA_BOARD_OTADATA_OFFSET != 0
    {
        /* ESP-IDF: set_boot is esp_ota_set_boot_partition(ota_1) over a
         * blank otadata: sector 0 gets ota_seq 2, state new (0), CRC
         * 0x55f63774 (core/bootfmt/espidf/testdata/entries.txt); rollback
         * of that request rewrites it invalid (3). params stays erased. */
        static const uint8_t want[32] = {2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x74, 0x37, 0xf6, 0x55};
        const uint8_t *od = flash + OTA_BOARD_OTADATA_OFFSET;
        CHECK(hal_ota_set_boot(NULL, &fin) == 0, "set_boot");
        CHECK(memcmp(od, want, sizeof(want)) == 0, "otadata entry 0: ota_seq 2, new, its CRC");
        CHECK(od[0x1000] == 0xffu && od[32] == 0xffu, "the rest of otadata erased");
        CHECK(get32(params) == 0xFFFFFFFFu, "params untouched");
        CHECK(hal_ota_rollback(NULL, NULL) == 0, "rollback");
        CHECK(memcmp(od, want, 24) == 0 && get32(od + 24) == 3u && memcmp(od + 28, want + 28, 4) == 0,
              "rollback cancels the request: entry 0 invalid");
        (void)at;
        (void)check_record;
    }
#elif OTA_MCUBOOT_MODE != OTA_MCUBOOT_NONE
    /* MCUboot: a test request is boot_set_pending(0) on ota's trailer (the
     * magic of the build's BOOT_MAX_ALIGN, swap_info 0x02); the rollback
     * that cancels it erases ota's first sector and the trailer. */
    {
        static const uint8_t legacy[16] = {0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f,
                                           0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80};
        static const uint8_t tail[14] = {0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b, 0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f, 0x1f, 0x8a};
        const uint32_t a = OTA_MCUBOOT_MAX_ALIGN;
        const uint8_t *end = flash + (OTA_PART_OTA_ADDR - OTA_FLASH_BASE) + OTA_PART_OTA_SIZE;
        const uint32_t ok = (OTA_PART_OTA_SIZE - 16u - a) / a * a;
        const uint8_t *slot = end - OTA_PART_OTA_SIZE;
        uint8_t magic[16];

        if (a == 8u) {
            memcpy(magic, legacy, 16);
        } else {
            magic[0] = (uint8_t)a;
            magic[1] = (uint8_t)(a >> 8);
            memcpy(magic + 2, tail, 14);
        }
        CHECK(hal_ota_set_boot(NULL, &fin) == 0, "set_boot");
        CHECK(memcmp(end - 16, magic, 16) == 0, "the magic ends ota");
        CHECK(slot[ok] == OTA_FLASH_ERASE_VALUE, "image_ok unset: a test request");
        CHECK(slot[ok - 2u * a] == 0x02u, "swap_info: test, image 0");
        CHECK(params[0] == OTA_FLASH_ERASE_VALUE, "no record in params");
        CHECK(hal_ota_rollback(NULL, NULL) == 0, "rollback");
        CHECK(end[-1] == OTA_FLASH_ERASE_VALUE && slot[0] == OTA_FLASH_ERASE_VALUE, "rollback erases the header and the trailer");
        (void)at;
        (void)check_record;
    }
#else
    /* Set boot: the first record is the snapshot of the whole state. */
    CHECK(hal_ota_set_boot(NULL, &fin) == 0, "set_boot");
    at = check_record(params, 1, "snapshot record");
    CHECK(params[16] == 1u, "params version");
    CHECK((params[17] & 1u) != 0, "pending");
    CHECK(params[18] == 1u, "test mode");
    CHECK(params[19] == 1u, "pending slot ota");
    CHECK(get32(params + 24) == n, "image size");
    CHECK(hal_ota_rollback(NULL, NULL) == 0, "rollback");
    check_record(params + at, 4, "boot record after the snapshot");
    CHECK((params[at + 17] & 1u) == 0, "rollback cancels the request");
#endif

    if (failures != 0) {
        printf("%d checks failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
