/* mbedtls configuration for the bootloader's key parser: the ASN.1 parser
 * only, as in a Zephyr build with CONFIG_BOOT_ECDSA_TINYCRYPT (the MPI
 * parser, which needs bignum, is not used by tinycrypt's ECDSA). */
#ifndef MBEDTLS_ASN1_CONFIG_H
#define MBEDTLS_ASN1_CONFIG_H
#define MBEDTLS_ASN1_PARSE_C
#endif
