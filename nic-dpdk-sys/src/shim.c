/* Helpers for what DPDK offers only as macros. The static inline functions of the fast
 * path (rx/tx burst, mbuf alloc/free) are wrapped by bindgen's generated file instead. */
#include "wrapper.h"

int px_rte_errno(void) { return rte_errno; }
