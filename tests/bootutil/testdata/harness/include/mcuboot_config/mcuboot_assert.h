/* MCUboot's asserts are the C library's: a failed one aborts the power-on,
 * which the Go test reports as a crash of the bootloader. */
#include <assert.h>
#define ASSERT(x) assert(x)
