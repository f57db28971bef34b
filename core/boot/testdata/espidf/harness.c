/*
 * One power-on of ESP-IDF's bootloader, as far as otadata goes, over a
 * flash file: bootloader_utility_get_selected_boot_partition (with its
 * writes: pending-verify to aborted, new to pending-verify), then, as
 * bootloader_utility_load_boot_image does once the image of that slot has
 * loaded, set_actual_ota_seq. Usage: harness FLASH OTADATA_OFFSET APP_COUNT.
 * Prints "index N", N the OTA slot (or -1 factory), and writes the flash back.
 */
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

static uint8_t *flash;
static long flash_size;

const void *bootloader_mmap(uint32_t src_addr, uint32_t size)
{
    return (long)src_addr + (long)size <= flash_size ? flash + src_addr : NULL;
}

void bootloader_munmap(const void *mapping)
{
    (void)mapping;
}

esp_err_t bootloader_flash_erase_sector(size_t sector)
{
    if ((long)((sector + 1) * FLASH_SECTOR_SIZE) > flash_size) {
        return ESP_FAIL;
    }
    memset(flash + sector * FLASH_SECTOR_SIZE, 0xFF, FLASH_SECTOR_SIZE);
    return ESP_OK;
}

esp_err_t bootloader_flash_write(size_t dest_addr, void *src, size_t size, bool write_encrypted)
{
    (void)write_encrypted;
    if ((long)(dest_addr + size) > flash_size) {
        return ESP_FAIL;
    }
    for (size_t i = 0; i < size; i++) {
        flash[dest_addr + i] &= ((uint8_t *)src)[i]; /* NOR: bits go to 0 only */
    }
    return ESP_OK;
}

void set_actual_ota_seq_of(const bootloader_state_t *bs, int index);

int main(int argc, char **argv)
{
    FILE *f;
    bootloader_state_t bs;
    int index;

    if (argc != 4 || (f = fopen(argv[1], "rb")) == NULL) {
        fprintf(stderr, "usage: harness FLASH OTADATA_OFFSET APP_COUNT\n");
        return 2;
    }
    fseek(f, 0, SEEK_END);
    flash_size = ftell(f);
    rewind(f);
    flash = malloc(flash_size);
    if (fread(flash, 1, flash_size, f) != (size_t)flash_size) {
        return 2;
    }
    fclose(f);
    memset(&bs, 0, sizeof(bs));
    bs.ota_info.offset = (uint32_t)strtoul(argv[2], NULL, 0);
    bs.ota_info.size = 2 * SPI_SEC_SIZE;
    bs.app_count = (uint32_t)strtoul(argv[3], NULL, 0);
    index = bootloader_utility_get_selected_boot_partition(&bs);
    if (index >= 0) {
        set_actual_ota_seq_of(&bs, index);
    }
    printf("index %d\n", index);
    if ((f = fopen(argv[1], "wb")) == NULL || fwrite(flash, 1, flash_size, f) != (size_t)flash_size) {
        return 2;
    }
    fclose(f);
    return 0;
}
