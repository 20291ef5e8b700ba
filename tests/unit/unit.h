/* Each unit test file registers one suite. */
#ifndef CME_UNIT_H
#define CME_UNIT_H

#include <stddef.h>

void suite_common(void);
void suite_args(void);
void suite_pagetables(void);
void suite_sev(void);
void suite_uart(void);
void suite_devices(void);
void suite_runctl(void);
void suite_api(void);
void suite_linux_parse(void);
void suite_tls(void);
void suite_etcd(void);
void suite_etcd_watch(void);
void suite_ha(void);
void suite_fence(void);
void suite_ha_restart(void);

struct ha_cluster;
struct ha_move;
/* test_ha.c: moves as "vm>node" names, in order, for exact comparison (a static buffer). */
const char *moves_str(const struct ha_cluster *c, const struct ha_move *m, size_t n);
void suite_records(void);
void suite_virtq(void);
void suite_ratelimit(void);
void suite_cpu(void);
void suite_fuzz(void);
void suite_stream(void);
void suite_store(void);
#endif
