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

static uint16_t crc16(const uint8_t *p, uint32_t n)
{
    uint16_t crc = 0;
    uint32_t i;
    int b;

    for (i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (b = 0; b < 8; b++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static const uint8_t *params(void)
{
    return flash + (OTA_PART_PARAMS_ADDR - OTA_FLASH_BASE);
}

/* Downloads an image of n bytes in chunks into the update slot at slot. */
static void download(ota_addr_t slot, uint8_t *img, uint32_t n, uint8_t seed)
{
    uint32_t chunk = OTA_FLASH_WRITE_ALIGN < 64u ? 64u : OTA_FLASH_WRITE_ALIGN;
    volatile uint32_t off = 0;
    uint32_t i;
    uint8_t back[4096];

    for (i = 0; i < n; i++) {
        img[i] = (uint8_t)(i * 7u + seed);
    }
    CHECK(hal_ota_init(NULL) == 0, "init");
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
    volatile uint32_t off;
    uint32_t resume;
    uint8_t byte = 0xA5;
    ota_finish_param_t fin;
    const uint8_t *rec = params();

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
    CHECK(hal_ota_set_boot(NULL, NULL) != 0, "set_boot without parameters refused");

    /* Resume from an aligned breakpoint keeps the data; a misaligned one is refused. */
    resume = 512;
    CHECK(hal_ota_init(&resume) == 0, "resume init");
    CHECK(memcmp(flash + (OTA_PART_OTA_ADDR - OTA_FLASH_BASE), img, n) == 0, "resume keeps the slot");
    if (OTA_FLASH_WRITE_ALIGN > 1u) {
        resume = 513;
        CHECK(hal_ota_init(&resume) != 0, "misaligned breakpoint refused");
    }
    resume = 0;
    CHECK(hal_ota_init(&resume) == 0, "fresh init");
    download(OTA_PART_OTA_ADDR, img, n, 1);

    memset(&fin, 0, sizeof(fin));
    fin.result_type = OTA_FINISH;
    CHECK(hal_ota_set_boot(NULL, &fin) == 0, "set_boot");
    CHECK(get32(rec + 8) == n, "record len");
    CHECK((uint16_t)(rec[12] | (rec[13] << 8)) == crc16(img, n), "record image crc");
    CHECK((uint16_t)(rec[31] | (rec[32] << 8)) == crc16(rec, OTA_BOOT_PARAM_LEN - 2u), "record param_crc");
#if OTA_SCHEME_DUAL_BANK
    CHECK(get32(rec + 0) == (uint32_t)OTA_PART_OTA_ADDR, "dual bank: boot the ota slot");
    CHECK(get32(rec + 4) == (uint32_t)OTA_PART_APP_ADDR, "dual bank: fall back to app");
    CHECK(get32(rec + 14) == OTA_UPGRADE_SWITCH, "dual bank: switch flag");
    /* The ota slot now runs: the next download goes to app. */
    download(OTA_PART_APP_ADDR, img, n, 2);
    CHECK(hal_ota_rollback(NULL, NULL) == 0, "rollback");
    CHECK(get32(rec + 0) == (uint32_t)OTA_PART_APP_ADDR, "rollback boots app again");
    CHECK(get32(rec + 14) == OTA_UPGRADE_ROLLBACK, "rollback flag");
#else
    CHECK(get32(rec + 0) == (uint32_t)OTA_PART_APP_ADDR, "single bank: copy to app");
    CHECK(get32(rec + 4) == (uint32_t)OTA_PART_OTA_ADDR, "single bank: copy from ota");
    CHECK(get32(rec + 14) == OTA_UPGRADE_ALL, "single bank: copy flag");
    CHECK(hal_ota_rollback(NULL, NULL) == 0, "rollback");
    CHECK(get32(rec + 14) == OTA_UPGRADE_NONE, "rollback cancels the copy");
#endif
    CHECK((uint16_t)(rec[31] | (rec[32] << 8)) == crc16(rec, OTA_BOOT_PARAM_LEN - 2u), "record param_crc after rollback");

    if (failures != 0) {
        printf("%d checks failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
