/* The per-VM control socket: JSON lines. A bad request gets an error reply and never
 * touches the guest. One thread (main) serves every client with poll(). */
#include "api_priv.h"

#include <errno.h>
#include <sodium.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define SUB "api"

static json_t *api_ok_state(struct vm *vm)
{
	struct vm_info info;

	vm_get_info(vm, &info);
	return json_pack("{s:b,s:s}", "ok", 1, "state", api_state_name(&info));
}

static json_t *vcpu_stats_json(struct vm *vm, unsigned i)
{
	struct vm_vcpu_stats st;

	vm_get_vcpu_stats(vm, i, &st);
	return json_pack("{s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "id", (int)i, "exits",
			 (json_int_t)st.exits, "io_exits", (json_int_t)st.io_exits, "mmio_exits",
			 (json_int_t)st.mmio_exits, "hlt_exits", (json_int_t)st.hlt_exits,
			 "intr_exits", (json_int_t)st.intr_exits, "other_exits",
			 (json_int_t)st.other_exits, "run_ms", (json_int_t)(st.run_ns / 1000000),
			 "cpu_ms", (json_int_t)(st.cpu_ns / 1000000));
}

/* --hugepages, --ksm, --pin-vcpus, --cgroup as the VM runs with them; the VMM's resident
 * memory. */
static json_t *resources_json(const struct vm_info *info, const struct cgroup *cg)
{
	json_t *pin = json_array();
	long size_pages = 0, rss_pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f || fscanf(f, "%ld %ld", &size_pages, &rss_pages) != 2)
		rss_pages = 0;
	if (f)
		fclose(f);
	for (unsigned i = 0; i < info->nr_pin; i++)
		json_array_append_new(pin, json_integer(info->pin[i]));
	return json_pack("{s:b,s:b,s:o,s:I,s:o}", "hugepages", info->hugepages, "ksm", info->ksm,
			 "pinned_cpus", pin, "rss_bytes",
			 (json_int_t)rss_pages * sysconf(_SC_PAGESIZE), "cgroup",
			 cg ? cg_json(cg) : json_null());
}

/* One net device: its tap and MAC, its limits (0: none), and what went through it. */
static json_t *net_json(const struct vm_net_stats *st)
{
	char mac[18];
	json_t *o;

	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", st->mac[0], st->mac[1],
		 st->mac[2], st->mac[3], st->mac[4], st->mac[5]);
	o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "tap", st->tap, "mac", mac, "rate_tx",
		      (json_int_t)st->tx_limit.bytes_per_s, "rate_rx",
		      (json_int_t)st->rx_limit.bytes_per_s, "pps_tx",
		      (json_int_t)st->tx_limit.frames_per_s, "pps_rx",
		      (json_int_t)st->rx_limit.frames_per_s);
	json_object_update_new(
		o, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "rx_frames",
			     (json_int_t)st->rx_frames, "rx_bytes", (json_int_t)st->rx_bytes,
			     "tx_frames", (json_int_t)st->tx_frames, "tx_bytes",
			     (json_int_t)st->tx_bytes, "rx_dropped", (json_int_t)st->rx_dropped,
			     "tx_dropped", (json_int_t)st->tx_dropped, "rx_throttled",
			     (json_int_t)st->rx_throttled, "tx_throttled",
			     (json_int_t)st->tx_throttled));
	return o;
}

static json_t *nets_json(struct vm *vm, const struct vm_info *info)
{
	json_t *a = json_array();
	struct vm_net_stats st;

	for (unsigned i = 0; i < info->nr_nets; i++)
		if (!vm_get_net_stats(vm, i, &st))
			json_array_append_new(a, net_json(&st));
	return a;
}

/* The features the guest sees (its CPU template's), as names. */
static json_t *cpu_features_json(struct vm *vm)
{
	char list[4096];

	return jsonl_names(vm_cpu_features(vm, list, sizeof(list)) < 0 ? "" : list);
}

/* The boot measurement as hex, or null (a state written before measurements). */
static json_t *measurement_json(struct vm *vm)
{
	uint8_t m[MEASURE_BYTES];
	char hex[2 * MEASURE_BYTES + 1];

	if (!vm_get_measurement(vm, m))
		return json_null();
	measure_hex(m, hex);
	return json_string(hex);
}

/* null, or the SEV launch: technology, policy, C-bit, and the launch measurement (hex) —
 * not attestable: no guest owner's session was given at LAUNCH_START. */
static json_t *confidential_json(struct vm *vm)
{
	struct vm_confidential c;
	char hex[2 * sizeof(c.measurement) + 1] = "";

	if (!vm || !vm_get_confidential(vm, &c))
		return json_null();
	for (size_t i = 0; i < c.measurement_len; i++)
		snprintf(hex + 2 * i, 3, "%02x", c.measurement[i]);
	return json_pack("{s:s,s:I,s:i,s:b,s:I,s:s,s:b}", "technology", c.technology, "policy",
			 (json_int_t)c.policy, "c_bit", (int)c.c_bit, "launched", c.launched,
			 "encrypted_bytes", (json_int_t)c.encrypted, "launch_measurement", hex,
			 "attestable", 0);
}

/* The VM is confidential: its memory leaves the processor only as ciphertext. */
static bool api_confidential(struct api *api)
{
	return api->vm && vm_get_confidential(api->vm, NULL);
}

static json_t *api_status(struct api *api, json_t *req)
{
	struct vm_info info;
	json_t *vcpus = json_array(), *r;

	(void)req;
	vm_get_info(api->vm, &info);
	for (unsigned i = 0; i < info.nr_vcpus; i++)
		json_array_append_new(vcpus, vcpu_stats_json(api->vm, i));
	r = json_pack("{s:b,s:s,s:s,s:I,s:i,s:I,s:I,s:I,s:o,s:o,s:o,s:o,s:o}", "ok", 1, "name",
		      info.name, "state", api_state_name(&info), "mem_bytes",
		      (json_int_t)info.mem_bytes, "vcpus", (int)info.nr_vcpus, "tsc_khz",
		      (json_int_t)info.tsc_khz, "uptime_ms", (json_int_t)(info.uptime_ns / 1000000),
		      "paused_ms", (json_int_t)(info.paused_ns / 1000000), "vcpu", vcpus, "fence",
		      api_fence_json(api->vm), "resources", resources_json(&info, api->cg),
		      "balloon", api_balloon_json(api->vm), "net", nets_json(api->vm, &info));
	json_object_set_new(r, "cpu_template", json_string(info.cpu_template));
	json_object_set_new(r, "cpu_features", cpu_features_json(api->vm));
	json_object_set_new(r, "measurement", measurement_json(api->vm));
	json_object_set_new(r, "confidential", confidential_json(api->vm));
	json_object_set_new(r, "sandboxed", json_boolean(sandbox_armed()));
	return r;
}

static json_t *api_pause(struct api *api, json_t *req)
{
	json_t *busy = api_migration_busy(api, "pause");

	(void)req;
	if (busy)
		return busy;
	if (vm_pause(api->vm) < 0)
		return api_error("the VM has ended");
	return api_ok_state(api->vm);
}

static json_t *api_resume(struct api *api, json_t *req)
{
	json_t *refused = api_in_doubt_guard(api, req);
	int err;

	if (refused)
		return refused;
	err = vm_resume(api->vm);
	if (err == -EPERM)
		return api_fence_refusal(api->vm, "resume");
	if (err < 0)
		return api_error("the VM has ended");
	return api_ok_state(api->vm);
}

static json_t *api_stop(struct api *api, json_t *req)
{
	(void)req;
	vm_request_stop(api->vm);
	return api_ok_state(api->vm);
}

/* Count and clear dirty pages over all slots. */
static int api_dirty_fetch(struct vm *vm, uint64_t *total)
{
	*total = 0;
	for (unsigned i = 0; i < vm_nr_slots(vm); i++) {
		struct vm_slot s;
		uint64_t n, *bm;
		int err;

		vm_get_slot(vm, i, &s);
		bm = calloc(s.size / VM_PAGE_SIZE / 64, sizeof(uint64_t));
		if (!bm)
			return -ENOMEM;
		err = vm_dirty_log_fetch(vm, i, bm, &n);
		free(bm);
		if (err)
			return err;
		*total += n;
	}
	return 0;
}

static json_t *api_dirty_log(struct api *api, json_t *req)
{
	const char *op = json_string_value(json_object_get(req, "op"));
	uint64_t n, now = now_ns(), since = api->dirty_since_ns;
	int err;

	json_t *busy = api_migration_busy(api, "dirty-log");

	if (busy)
		return busy;
	if (!op)
		return api_error("dirty-log needs \"op\": start, fetch or stop");
	if (!strcmp(op, "start")) {
		err = vm_dirty_log_start(api->vm);
		api->dirty_since_ns = now;
		return err ? api_error("dirty-log start: %s",
				       err == -EALREADY ? "already on" : strerror(-err))
			   : json_pack("{s:b}", "ok", 1);
	}
	if (!strcmp(op, "stop")) {
		err = vm_dirty_log_stop(api->vm);
		return err ? api_error("dirty-log stop: %s",
				       err == -EINVAL ? "logging is off" : strerror(-err))
			   : json_pack("{s:b}", "ok", 1);
	}
	if (strcmp(op, "fetch"))
		return api_error("dirty-log: unknown op \"%s\" (start, fetch, stop)", op);
	err = api_dirty_fetch(api->vm, &n);
	if (err)
		return api_error("dirty-log fetch: %s",
				 err == -EINVAL ? "logging is off" : strerror(-err));
	api->dirty_since_ns = now;
	return json_pack("{s:b,s:I,s:I,s:I}", "ok", 1, "dirty_pages", (json_int_t)n, "dirty_bytes",
			 (json_int_t)(n * VM_PAGE_SIZE), "interval_ms",
			 (json_int_t)((now - since) / 1000000));
}

static json_t *snapshot_reply(const char *path, const struct vm_snapshot_stats *st, bool stop,
			      bool encrypted)
{
	double mib_s = st->ms ? (double)st->bytes / (1 << 20) * 1000.0 / (double)st->ms : 0;

	return json_pack("{s:b,s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:b,s:b}", "ok", 1, "path", path,
			 "bytes", (json_int_t)st->bytes, "pages", (json_int_t)st->pages,
			 "zero_pages", (json_int_t)st->zero_pages, "state_bytes",
			 (json_int_t)st->state_bytes, "ms", (json_int_t)st->ms, "mib_s", mib_s,
			 "stopped", stop, "encrypted", encrypted);
}

/* Pause, write state and memory, then resume (or stop). A failed write resumes the guest
 * as it was: a snapshot never costs the running VM. */
static json_t *api_snapshot(struct api *api, json_t *req)
{
	const char *path = json_string_value(json_object_get(req, "path"));
	const char *key_file = json_string_value(json_object_get(req, "key_file"));
	json_t *stop = json_object_get(req, "stop");
	uint8_t key[VM_SNAPSHOT_KEY_BYTES];
	struct vm_snapshot_stats st;
	struct vm_info info;
	char err[512] = "";
	bool was_running;
	int rc = 0;

	json_t *busy = api_migration_busy(api, "snapshot");

	if (busy)
		return busy;
	if (!api->privileged) /* path and key_file are host files the VMM (root) opens */
		return api_error("snapshot: only root or the VMM's own user may ask it "
				 "(--api-group members may not)");
	if (!path || !*path)
		return api_error("snapshot needs \"path\"");
	if (stop && !json_is_boolean(stop))
		return api_error("snapshot: \"stop\" must be true or false");
	if (json_object_get(req, "key_file") && !key_file)
		return api_error("snapshot: \"key_file\" must be a path");
	if (key_file && key_file_load(key_file, key, err, sizeof(err))) {
		sodium_memzero(key, sizeof(key));
		return api_error("snapshot: %s", err);
	}
	vm_get_info(api->vm, &info);
	was_running = info.state == VM_RUNNING;
	if (vm_pause(api->vm) < 0)
		return api_error("the VM has ended");
	rc = vm_snapshot_write(api->vm, path, key_file ? key : NULL, &st, err, sizeof(err));
	sodium_memzero(key, sizeof(key));
	if (rc < 0) {
		if (was_running && vm_resume(api->vm) < 0)
			log_warn("api", "cannot resume after a failed snapshot");
		if (jail_root())
			return api_error("snapshot: %s (this VMM is jailed in %s: paths are from "
					 "there)",
					 err, jail_root());
		return api_error("snapshot: %s", err);
	}
	if (json_is_true(stop))
		vm_request_stop(api->vm);
	else if (was_running && (rc = vm_resume(api->vm)) == -EPERM)
		return api_fence_refusal(api->vm, "snapshot written; resume");
	else if (was_running && rc < 0)
		return api_error("snapshot written, but the VM ended");
	return snapshot_reply(path, &st, json_is_true(stop), key_file != NULL);
}

/* Test hook (CME_TEST_SANDBOX_PROBE=1 in the VMM's environment): make a system call no
 * sandbox list allows, to show that --jail ends the VMM and names the call. */
static json_t *api_sandbox_probe(struct api *api, json_t *req)
{
	const char *on = getenv("CME_TEST_SANDBOX_PROBE");

	const char *thread = json_string_value(json_object_get(req, "thread"));

	if (!on || strcmp(on, "1"))
		return api_error("unknown command \"sandbox-probe\"");
	if (!api->privileged)
		return api_error("sandbox-probe: only root or the VMM's own user may ask it");
	if (thread && !strcmp(thread, "vcpu")) { /* vCPU 0 makes the call */
		if (!api->vm || vm_sandbox_probe_vcpu(api->vm))
			return api_error("sandbox-probe: the VM has ended");
		return json_pack("{s:b,s:b}", "ok", 1, "sandboxed", sandbox_armed());
	}
	sandbox_probe(); /* under --jail, the VMM ends here */
	return json_pack("{s:b,s:b}", "ok", 1, "sandboxed", sandbox_armed());
}

struct api_cmd {
	const char *name;
	json_t *(*fn)(struct api *api, json_t *req);
	bool reads_ram; /* copies guest memory out: not for a confidential VM */
};

static const struct api_cmd api_cmds[] = {
	{ "status", api_status, false },
	{ "pause", api_pause, false },
	{ "resume", api_resume, false },
	{ "stop", api_stop, false },
	{ "dirty-log", api_dirty_log, true },
	{ "snapshot", api_snapshot, true },
	{ "migrate", api_migrate, true },
	{ "migrate-status", api_migrate_status, false },
	{ "migrate-cancel", api_migrate_cancel, false },
	{ "migrate-commit", api_migrate_commit, false },
	{ "incoming-commit", api_arrived_commit, false },
	{ "incoming-abort", api_arrived_abort, false },
	{ "fence-deadline", api_fence_deadline, false },
	{ "balloon", api_balloon, false },
	{ "backup", api_backup, true },
	{ "backup-status", api_backup_status, false },
	{ "backup-cancel", api_backup_cancel, false },
	{ "sandbox-probe", api_sandbox_probe, false },
};

bool api_known_command(const char *cmd)
{
	for (size_t i = 0; i < ARRAY_SIZE(api_cmds); i++)
		if (!strcmp(cmd, api_cmds[i].name))
			return true;
	return false;
}

json_t *api_dispatch(struct api *api, const char *line)
{
	char err[256];
	const char *cmd;
	json_t *req, *reply = NULL;

	if (api_parse_request(line, &req, &cmd, err, sizeof(err)) < 0)
		return api_error("%s", err);
	for (size_t i = 0; i < ARRAY_SIZE(api_cmds) && !reply; i++)
		if (!strcmp(cmd, api_cmds[i].name))
			reply = api_cmds[i].reads_ram && api_confidential(api)
					? api_error(
						  "%s: the guest's memory is encrypted by this "
						  "host's processor (--confidential): it cannot be "
						  "copied out",
						  cmd)
					: api_cmds[i].fn(api, req);
	if (!reply)
		reply = api_error("unknown command \"%s\"", cmd);
	json_decref(req);
	return reply;
}
