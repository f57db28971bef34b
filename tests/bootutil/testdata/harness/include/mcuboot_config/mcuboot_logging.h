/* MCUboot's log goes to stderr, one line a message, so that a test failure
 * shows why the bootloader decided what it did; stdout is the harness's
 * report alone. */
#ifndef MCUBOOT_LOGGING_H
#define MCUBOOT_LOGGING_H

#include <stdio.h>

#define MCUBOOT_LOG_MODULE_DECLARE(domain)
#define MCUBOOT_LOG_MODULE_REGISTER(domain)

#define MCUBOOT_LOG_ERR(_fmt, ...) fprintf(stderr, "[ERR] " _fmt "\n", ##__VA_ARGS__)
#define MCUBOOT_LOG_WRN(_fmt, ...) fprintf(stderr, "[WRN] " _fmt "\n", ##__VA_ARGS__)
#define MCUBOOT_LOG_INF(_fmt, ...) fprintf(stderr, "[INF] " _fmt "\n", ##__VA_ARGS__)
#define MCUBOOT_LOG_DBG(...) do { } while (0) /* per TLV and per sector: too much for a test log */
#define MCUBOOT_LOG_SIM(...) do { } while (0)

#endif
