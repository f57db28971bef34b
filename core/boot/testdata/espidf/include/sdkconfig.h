/* The build the test compiles ESP-IDF's otadata code for: app rollback on,
 * anti-rollback and the RTC memory reserve off (docs/porting.md). */
#define CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE 1
