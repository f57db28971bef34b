/*
 * crc.c: prints bootloader_common_ota_select_crc's value for the ota_seq
 * values on the command line, computed by ESP-IDF's own esp_rom_crc32_le
 * (components/esp_rom/linux/esp_rom_crc.c, the host build of the ROM
 * function) called as bootloader_common_ota_select_crc calls it
 * (components/bootloader_support/src/bootloader_common_loader.c):
 * esp_rom_crc32_le(UINT32_MAX, (uint8_t*)&s->ota_seq, 4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include "esp_rom_crc.h"

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        uint32_t seq = (uint32_t)strtoul(argv[i], NULL, 0);
        uint8_t le[4] = { seq, seq >> 8, seq >> 16, seq >> 24 };
        printf("%u %08x\n", seq, esp_rom_crc32_le(UINT32_MAX, le, 4));
    }
    return 0;
}
