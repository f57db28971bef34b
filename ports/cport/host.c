/*
 * The flash driver of the C port on the host: it hands every call to the Go
 * flash.Device of the port (shim.go), through core/flash's power-cut
 * injector when there is one. The C port itself is ota_port.c, a link to
 * ports/c/ota_port.c (so that the go command sees it change), built here
 * without its AliOS HAL (OTA_PORT_NO_HAL: the host drives ota_port_t).
 */
#include "ota_hal_plat.h"
#include "_cgo_export.h"

static int host_erase(void *ctx, uint32_t off, uint32_t len)
{
    return otaportFlashErase(ctx, off, len);
}

static int host_program(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    return otaportFlashProgram(ctx, off, (uint8_t *)buf, len);
}

static int host_read(void *ctx, uint32_t off, uint8_t *buf, uint32_t len)
{
    return otaportFlashRead(ctx, off, buf, len);
}

static int host_check(void *ctx, int slot, ota_image_info_t *info)
{
    return otaportCheckImage(ctx, slot, info);
}

const ota_flash_ops_t otaport_host_ops = {host_erase, host_program, host_read, host_check};
