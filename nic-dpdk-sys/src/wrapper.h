/* What px-appliance's DPDK backend uses, and nothing else (build.rs allowlists it). */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_version.h>

/* rte_errno is a per-lcore (thread-local) variable behind a macro: bindgen cannot bind
 * it, so it is read through this function (defined in shim.c). */
int px_rte_errno(void);
