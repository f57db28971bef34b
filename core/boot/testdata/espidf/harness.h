/*
 * What ESP-IDF's otadata functions need around them on the host, so that
 * they are compiled as ESP-IDF's tree has them: the test copies them out of
 * components/bootloader_support/src/bootloader_common_loader.c and
 * bootloader_utility.c into one file after this header. The types are
 * ESP-IDF's own (esp_flash_partitions.h); the flash is a file in RAM.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/param.h>

#include "sdkconfig.h"
#include "esp_flash_partitions.h"
#include "esp_rom_crc.h"

#define ESP_LOGD(tag, ...) ((void)(tag))
#define ESP_LOGI(tag, ...) ((void)(tag))
#define ESP_LOGE(tag, ...) ((void)(tag))
static const char *TAG = "idf";

/* bootloader_config.h, without its SoC headers. */
#define SPI_SEC_SIZE 0x1000
#define FLASH_SECTOR_SIZE 0x1000
#define FACTORY_INDEX (-1)
#define INVALID_INDEX (-99)
typedef struct {
    esp_partition_pos_t ota_info;
    esp_partition_pos_t factory;
    esp_partition_pos_t test;
    esp_partition_pos_t ota[16];
    uint32_t app_count;
    uint32_t selected_subtype;
} bootloader_state_t;

/* The flash: the test's file, in RAM (harness.c). */
const void *bootloader_mmap(uint32_t src_addr, uint32_t size);
void bootloader_munmap(const void *mapping);
esp_err_t bootloader_flash_erase_sector(size_t sector);
esp_err_t bootloader_flash_write(size_t dest_addr, void *src, size_t size, bool write_encrypted);
static inline bool esp_efuse_is_flash_encryption_enabled(void) { return false; }

bool bootloader_common_ota_select_invalid(const esp_ota_select_entry_t *s);
bool bootloader_common_ota_select_valid(const esp_ota_select_entry_t *s);
uint32_t bootloader_common_ota_select_crc(const esp_ota_select_entry_t *s);
int bootloader_common_get_active_otadata(esp_ota_select_entry_t *two_otadata);
int bootloader_common_select_otadata(const esp_ota_select_entry_t *two_otadata, bool *valid_two_otadata, bool max);
esp_err_t bootloader_common_read_otadata(const esp_partition_pos_t *ota_info, esp_ota_select_entry_t *two_otadata);
int bootloader_utility_get_selected_boot_partition(const bootloader_state_t *bs);
