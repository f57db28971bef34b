/*
 * The C port (ports/c/ota_port.c) built into this package, without its
 * AliOS HAL (OTA_PORT_NO_HAL: the host drives ota_port_t directly), and the
 * flash driver that hands every call to the Go flash.Device of the port
 * (shim.go), through core/flash's power-cut injector when there is one.
 */
#include "../c/ota_port.c"

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
